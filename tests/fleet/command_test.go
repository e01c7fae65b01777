package fleet

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/model/testhub"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// recordFleet, when set, saves the history of the health command for
// workflows/replay tests:
//
//	go test ./tests/fleet -run TestFleetCommand -record-fleet $PWD/workflows/testdata/fleet_partial.json
var recordFleet = flag.String("record-fleet", "", "save the history of a partial fleet command to this JSON file")

// deadURL is a model server address nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d/v1", port)
}

// fleetExec runs `autoglm fleet exec --json` and decodes its result.
func fleetExec(t *testing.T, ctx context.Context, as string, args ...string) (task.FleetResult, int) {
	t.Helper()
	out, code := runCLI(t, ctx, append([]string{"fleet", "exec", "--json", "--as", as}, args...)...)
	var res task.FleetResult
	if code == 0 || code == 6 {
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("fleet exec --json printed %q: %v", out, err)
		}
	}
	return res, code
}

func byNode(res task.FleetResult) map[string]task.NodeOutcome {
	m := map[string]task.NodeOutcome{}
	for _, n := range res.Nodes {
		m[n.Node] = n
	}
	return m
}

// TestFleetCommandAcrossThreeNodes runs fleet commands on three worker
// processes picked by a label (a fourth, unlabelled, is left out): health
// with one node whose model server is down is 2 ok and 1 failed with its
// reason, in the CLI's output and in the workflow's result; a killed node
// times out; ensure-model brings a mirrored model into one node's cache and,
// after a byte of it is flipped on disk, detects it and fetches it again.
func TestFleetCommandAcrossThreeNodes(t *testing.T) {
	ctx := testCtx(t, 8*time.Minute)
	hub := testhub.New("")
	defer hub.Close()
	hubEnv := []string{"AUTOGLM_HF_ENDPOINT=" + hub.URL()}
	group := "grp" + randHex(3)
	a := startNode(t, "a", nodeOptions{Labels: "pool=" + group + ",region=eu", Env: hubEnv})
	b := startNode(t, "b", nodeOptions{Labels: "pool=" + group + ",region=us", Env: hubEnv})
	c := startNode(t, "c", nodeOptions{Labels: "pool=" + group + ",region=us", ModelURL: deadURL(t), Env: hubEnv})
	other := startNode(t, "d", nodeOptions{Labels: "pool=other", Env: hubEnv})

	if _, code := fleetExec(t, ctx, "alice", "--selector", "pool="+group, "health"); code != 3 {
		t.Fatalf("a submitter ran a fleet command: exit %d, want 3 (PermissionDenied)", code)
	}

	res, code := fleetExec(t, ctx, "olga", "--selector", "pool="+group, "health")
	nodes := byNode(res)
	if code != 6 || len(res.Nodes) != 3 || res.OK != 2 || res.Failed != 1 || !res.Partial {
		t.Fatalf("health: exit %d, result %+v; want exit 6 and 2 ok, 1 failed", code, res)
	}
	if nodes[a.name].Status != task.NodeOK || nodes[b.name].Status != task.NodeOK || nodes[c.name].Status != task.NodeFailed {
		t.Fatalf("health per node: %+v", res.Nodes)
	}
	if _, ok := nodes[other.name]; ok {
		t.Fatalf("node %s outside the selector ran the command", other.name)
	}
	if r := nodes[c.name].Reason; !strings.Contains(r, "model server") {
		t.Fatalf("node c failed with %q; want the reason to name its model server", r)
	}
	var wfRes task.FleetResult
	if err := suite.Temporal.GetWorkflow(ctx, task.FleetWorkflowID(res.ID), "").Get(ctx, &wfRes); err != nil {
		t.Fatal(err)
	}
	if wfRes.OK != 2 || wfRes.Failed != 1 || wfRes.Actor != "olga" || byNode(wfRes)[c.name].Reason != nodes[c.name].Reason {
		t.Fatalf("the workflow's result %+v differs from what the CLI printed", wfRes)
	}
	saveHistory(t, history(t, task.FleetWorkflowID(res.ID), ""), *recordFleet)
	var audit task.FleetResult
	if r, _, err := suite.Store.Get(ctx, res.Audit.Key); err != nil {
		t.Fatalf("audit record %s: %v", res.Audit.Key, err)
	} else {
		err = json.NewDecoder(r).Decode(&audit)
		r.Close()
		if err != nil || audit.Actor != "olga" || audit.Action != task.ActionHealth || audit.Failed != 1 {
			t.Fatalf("audit record %+v (%v)", audit, err)
		}
	}
	text, _ := runCLI(t, ctx, "fleet", "exec", "--as", "olga", "--selector", "pool="+group, "health")
	if !strings.Contains(text, "2 ok, 1 failed") || !strings.Contains(text, c.name) {
		t.Fatalf("the text output does not say 2 ok, 1 failed with node c:\n%s", text)
	}
	t.Logf("health across 3 nodes:\n%s", text)

	// collect-logs puts node a's recent log in the bucket.
	res, code = fleetExec(t, ctx, "olga", "--selector", "pool="+group+",region=eu", "collect-logs")
	if code != 0 || res.OK != 1 || !strings.Contains(res.Nodes[0].Detail, "s3://") {
		t.Fatalf("collect-logs: exit %d, %+v", code, res)
	}
	logKey := res.Nodes[0].Detail[strings.Index(res.Nodes[0].Detail, "s3://")+len("s3://"+bucket+"/"):]
	if r, _, err := suite.Store.Get(ctx, logKey); err != nil {
		t.Fatalf("collected log %s: %v", logKey, err)
	} else {
		b, _ := io.ReadAll(r)
		r.Close()
		if !strings.Contains(string(b), "worker running") || !strings.Contains(string(b), a.name) {
			t.Fatalf("the collected log of node a does not hold its start:\n%s", b)
		}
	}

	// Mirror a model, bring it into node a's cache, corrupt it, ensure again.
	// Named as the model the nodes serve, so that dispatch can prefer the
	// node holding it; the revision is the test's own.
	in := task.MirrorInput{Name: "glm-4-test", Repo: "acme/tiny", Revision: "rev-" + group}
	hub.Add("acme/tiny", in.Revision, "model.safetensors", testhub.Fixture(7, 3<<20))
	hub.Add("acme/tiny", in.Revision, "config.json", []byte(`{"model_type":"glm"}`))
	if _, code := runCLI(t, ctx, "models", "mirror", "--as", "alice", in.Name, "--repo", in.Repo, "--revision", in.Revision); code != 3 {
		t.Fatalf("a submitter mirrored a model: exit %d, want 3", code)
	}
	out, code := runCLI(t, ctx, "models", "mirror", "--json", "--as", "olga", in.Name, "--repo", in.Repo, "--revision", in.Revision)
	var mres task.MirrorResult
	if code != 0 || json.Unmarshal([]byte(out), &mres) != nil || mres.Files != 2 {
		t.Fatalf("models mirror on the worker processes: exit %d, %q", code, out)
	}
	ensure := []string{"--selector", "pool=" + group + ",region=eu", "--arg", "model=" + in.Name + "@" + in.Revision, "ensure-model"}
	if res, code = fleetExec(t, ctx, "olga", ensure...); code != 0 || res.OK != 1 || !strings.Contains(res.Nodes[0].Detail, "fetched 2, corrupted 0") {
		t.Fatalf("ensure-model: exit %d, %+v", code, res)
	}
	cached := filepath.Join(a.cache, in.Name, in.Revision, "model.safetensors")
	blob, err := os.ReadFile(cached)
	if err != nil {
		t.Fatal(err)
	}
	blob[12345] ^= 0x01
	if err := os.WriteFile(cached, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, code = fleetExec(t, ctx, "olga", ensure...); code != 0 || !strings.Contains(res.Nodes[0].Detail, "fetched 1, corrupted 1") {
		t.Fatalf("ensure-model after corrupting a cached file: exit %d, %+v", code, res)
	}
	if got, _ := os.ReadFile(cached); string(got) != string(testhub.Fixture(7, 3<<20)) {
		t.Fatal("the corrupted cache file was not replaced by the good one")
	}

	// A node that died answers nothing: its part times out in its queue.
	// Only node a holds the model in its cache: dispatch pins the task there
	// (once a's record says so) rather than leave it to the model's queue.
	eventually(t, ctx, "node a's record to list its cached model", func() (bool, error) {
		rec, err := nodeRecord(ctx, a.name)
		return err == nil && slices.Contains(rec.Cached, in.Name+"@"+in.Revision), err
	})
	tc := &taskclient.Client{Temporal: suite.Temporal, Store: suite.Store, Signer: suite.Signer}
	sub, err := tc.Submit(ctx, taskclient.SubmitRequest{Tenant: "demo", Submitter: "alice", Model: "glm-4-test", Prompt: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := tc.Wait(ctx, sub.ID); err != nil || r.State != task.Completed {
		t.Fatalf("task on the cached model: %+v %v", r, err)
	}
	if st, err := tc.Status(ctx, sub.ID); err != nil || st.Node != a.name {
		t.Fatalf("the task ran on %q (%v); want node %s, the one holding the model cached", st.Node, err, a.name)
	}

	b.Kill()
	res, code = fleetExec(t, ctx, "olga", "--selector", "pool="+group, "--timeout", "5s", "health")
	nodes = byNode(res)
	if code != 6 || nodes[a.name].Status != task.NodeOK || nodes[b.name].Status != task.NodeTimedOut || nodes[c.name].Status != task.NodeFailed {
		t.Fatalf("health with node b killed: exit %d, %+v; want a ok, b timed out, c failed", code, res.Nodes)
	}
}
