package cluster

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"

	"github.com/autoglm-flow/autoglm-flow/internal/cluster"
	"github.com/autoglm-flow/autoglm-flow/internal/setup"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// setupJSON runs `autoglm setup --json` on the cluster with env on top.
func setupJSON(t *testing.T, ctx context.Context, env []string, args ...string) (setup.Report, testenv.CLIRun) {
	t.Helper()
	r := suite.RunCLI(t, ctx, testenv.CLIOptions{Env: append(os.Environ(), env...)}, append([]string{"setup", "--json"}, args...)...)
	var rep setup.Report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("setup --json: exit %d, %v\n%s", r.Code, err, r.Output)
	}
	return rep, r
}

func check(rep setup.Report, what string) (setup.Check, bool) {
	for _, c := range rep.Checks {
		if c.What == what {
			return c, true
		}
	}
	return setup.Check{}, false
}

// `autoglm setup` on the real cluster: the cluster's own start ran it on a
// fresh namespace; again it changes nothing; it registers a namespace
// that does not exist, and workers and the API server refuse one until it
// has; it says what a cluster lacks (dynamic config, SQL columns) and
// exits 1.
func TestSetupOnTheCluster(t *testing.T) {
	ctx := testenv.Context(t, 5*time.Minute)
	dyn := filepath.Join(suite.Root, cluster.DynamicConfigFile)

	first, err := os.ReadFile(filepath.Join(suite.cl.LogDir, "setup.log"))
	if err != nil || !strings.Contains(string(first), "namespace default: registered, retention 30d") || !strings.Contains(string(first), "added ") {
		t.Errorf("the cluster's first setup did not register the namespace and the attributes: %v\n%s", err, first)
	}
	rep, r := setupJSON(t, ctx, nil, "--dynamic-config", dyn)
	cols, _ := check(rep, "search attribute columns (SQL visibility)")
	ns, _ := check(rep, "namespace default")
	if r.Code != 0 || len(rep.Added) != 0 || len(rep.Missing()) != 0 || ns.Detail != "exists, retention 30d" || cols.Detail != "Keyword 5 of 10, Int 1 of 3" {
		t.Fatalf("setup again: exit %d, added %v, missing %+v, namespace %q, columns %q; want nothing to do", r.Code, rep.Added, rep.Missing(), ns.Detail, cols.Detail)
	}
	t.Logf("setup again: %s; %s: %s", ns.Detail, cols.What, cols.Detail)

	// A namespace nobody set up: the worker and the API server refuse it
	// and name the command; setup registers it; then they would start.
	fresh := "fresh-" + testenv.RandHex(3)
	env := []string{"TEMPORAL_NAMESPACE=" + fresh, "AUTOGLM_NODE=" + fresh, "AUTOGLM_MODELS=" + model}
	for _, verb := range [][]string{{"worker"}, {"server", "--addr", "127.0.0.1:0"}} {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		r := suite.RunCLI(t, cctx, testenv.CLIOptions{Env: append(os.Environ(), append(env, "AUTOGLM_ASSERTION_PRIVATE_KEY_FILE="+suite.cl.AssertionKeyFile())...)}, verb...)
		cancel()
		if r.Code == 0 || !strings.Contains(r.Output, "namespace "+fresh+" does not exist") || !strings.Contains(r.Output, "run `autoglm setup`") {
			t.Errorf("autoglm %s on namespace %s that does not exist: exit %d\n%s\nwant a refusal naming `autoglm setup`", verb[0], fresh, r.Code, r.Output)
		}
	}
	rep, r = setupJSON(t, ctx, env, "--namespace-retention", "72h")
	ns, _ = check(rep, "namespace "+fresh)
	if r.Code != 0 || ns.Detail != "registered, retention 3d" || len(rep.Added) != len(setup.SearchAttributes()) {
		t.Fatalf("setup of namespace %s: exit %d, %+v, added %v\n%s", fresh, r.Code, ns, rep.Added, r.Output)
	}
	if err := setup.Ready(ctx, suite.Temporal, fresh); err != nil {
		t.Errorf("namespace %s after setup: %v", fresh, err)
	}
	// Setup returns once a task could start: its attributes are mapped
	// by the frontend, not only registered.
	if err := testenv.StartWithTaskAttributes(ctx, suite.Temporal, fresh); err != nil {
		t.Errorf("right after setup: %v", err)
	}

	// A dynamic config without fairness: setup names the key and exits 1.
	bad := filepath.Join(t.TempDir(), "dc.yaml")
	os.WriteFile(bad, []byte("matching.useNewMatcher:\n  - value: true\n"), 0o644)
	rep, r = setupJSON(t, ctx, nil, "--dynamic-config", bad)
	if m := rep.Missing(); r.Code != 1 || len(m) != 1 || m[0].What != "dynamic config matching.enableFairness" {
		t.Errorf("setup with a dynamic config lacking fairness: exit %d, missing %+v; want exit 1 naming matching.enableFairness", r.Code, m)
	}

	// A namespace whose Keyword columns others took: the task's five do
	// not fit beside six more, and setup says so instead of half-adding.
	crowded := "crowded-" + testenv.RandHex(3)
	if c := setup.EnsureNamespace(ctx, suite.Temporal, crowded, 24*time.Hour); !c.OK {
		t.Fatal(c.Detail)
	}
	others := map[string]enumspb.IndexedValueType{}
	for _, n := range []string{"Team", "Project", "Region", "Cost", "Owner", "Ticket"} {
		others["Other"+n] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	if _, err := suite.Temporal.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: crowded, SearchAttributes: others}); err != nil {
		t.Fatal(err)
	}
	rep, r = setupJSON(t, ctx, []string{"TEMPORAL_NAMESPACE=" + crowded})
	cols, _ = check(rep, "search attribute columns (SQL visibility)")
	if r.Code != 1 || cols.OK || !strings.Contains(cols.Detail, "11 Keyword attributes") || len(rep.Added) != 0 {
		t.Errorf("setup on a namespace with 6 other Keyword attributes: exit %d, columns %+v, added %v; want exit 1, 11 of 10 named, nothing added", r.Code, cols, rep.Added)
	}
	missing, _ := setup.Missing(ctx, suite.Temporal, crowded)
	if !slices.Equal(missing, []string{"Model", "Submitter", "TaskKind", "TaskPriority", "TaskState", "Tenant"}) {
		t.Errorf("namespace %s lacks %v after the refused setup; want all six still missing", crowded, missing)
	}
	t.Logf("refused: %s", cols.Detail)
}
