package ops

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/setup"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// run runs the autoglm binary with env on top of this process's, and
// returns its combined output and exit code.
func run(t *testing.T, ctx context.Context, env []string, args ...string) (string, int) {
	t.Helper()
	r := suite.RunCLI(t, ctx, testenv.CLIOptions{Env: append(os.Environ(), env...)}, args...)
	return r.Output, r.Code
}

// A dev server started the way a real cluster comes (no search
// attributes): the worker refuses to start and says why; `autoglm setup`
// adds the attributes, the bucket and its rules, and is idempotent; then
// a worker starts and a task completes.
func TestSetupMakesAFreshClusterWork(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	fresh, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(suite.Dir, "fresh"), BinDir: suite.Bin, NoSearchAttributes: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Stop() })
	env := append(fresh.Env(bucket), "AUTOGLM_NODE=ops-fresh-"+randHex(2), "AUTOGLM_MODELS="+model)

	out, code := run(t, ctx, env, "worker")
	if code == 0 || !strings.Contains(out, "lacks the search attributes") || !strings.Contains(out, "autoglm setup") {
		t.Fatalf("worker on a namespace without search attributes: exit %d\n%s\nwant a refusal that names `autoglm setup`", code, out)
	}
	t.Logf("the worker's refusal: %s", lastLine(out))

	dyn := filepath.Join(suite.Root, "docker", "temporal-dynamicconfig.yaml")
	out, code = run(t, ctx, env, "setup", "--json", "--dynamic-config", dyn)
	var rep setup.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("setup: exit %d, %v\n%s", code, err, out)
	}
	var want []string
	for name := range setup.SearchAttributes() {
		want = append(want, name)
	}
	slices.Sort(want)
	if !slices.Equal(rep.Added, want) || len(rep.Missing()) != 0 {
		t.Fatalf("setup added %v, missing %+v; want %v added and nothing missing", rep.Added, rep.Missing(), want)
	}
	// Setup returns once a task could start: its attributes are mapped
	// by the frontend, not only registered.
	probe, err := client.DialContext(ctx, client.Options{HostPort: fresh.TemporalAddress, Namespace: fresh.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if err := testenv.StartWithTaskAttributes(ctx, probe, fresh.Namespace); err != nil {
		t.Errorf("right after setup: %v", err)
	}
	out, code = run(t, ctx, env, "setup")
	if code != 0 || !strings.Contains(out, "all present") || !strings.Contains(out, "are ready") {
		t.Fatalf("second setup: exit %d\n%s\nwant nothing added and ready", code, out)
	}

	// The store now has versioning and the lifecycle rules.
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.Open(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	// Every rule but abort-multipart, which the pinned MinIO refuses and
	// setup reports as a warning.
	rules, err := storage.LifecycleRules(ctx, store)
	ids := map[string]bool{}
	for _, r := range rules {
		ids[r.ID] = true
	}
	for _, want := range storage.DefaultRetention().Rules() {
		if !ids[want.ID] && want.AbortMultipartDays == 0 {
			t.Errorf("lifecycle rule %s missing after setup: %+v, %v", want.ID, rules, err)
		}
	}
	if !ids["autoglm-fleet-nodes"] || !slices.ContainsFunc(rep.Checks, func(c setup.Check) bool { return c.Warning && strings.Contains(c.What, "abort-multipart") }) {
		t.Errorf("setup: want the node-record rule kept and abort-multipart reported as a warning on MinIO; rules %+v, report %+v", rules, rep.Checks)
	}

	w := startWorker(t)
	opts, err := config.TemporalOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tasks := &taskclient.Client{Temporal: tc, Store: store, Signer: suite.Signer}
	id := "ops-fresh-" + randHex(4)
	if _, err := tasks.Submit(ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", Model: model, Prompt: "hello from a fresh cluster"}); err != nil {
		t.Fatal(err)
	}
	res, err := tasks.Wait(ctx, id)
	if err != nil || res.State != task.Completed {
		t.Fatalf("task on the set-up cluster (worker %s): %+v, %v; want COMPLETED", w.node, res, err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
