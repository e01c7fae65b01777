package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

func fleetPolicy(t *testing.T) string {
	t.Helper()
	p := `tenants:
  fl:
    models: [glm-4-test, glm-4-flash]
    users: {alice: [submitter], olga: [operator], bob: [reviewer]}
    auto_approve_max_requests: 100000
fleet:
  operators: [olga]
`
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(p), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeBatch writes n OpenAI Batch lines for model.
func writeBatch(t *testing.T, prefix, model string, n int) string {
	t.Helper()
	var buf bytes.Buffer
	for i := 1; i <= n; i++ {
		body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": fmt.Sprintf("question %d", i)}}})
		line, _ := json.Marshal(batch.Request{CustomID: fmt.Sprintf("%s-%05d", prefix, i), Method: "POST", URL: batch.ChatCompletionsURL, Body: body})
		buf.Write(append(line, '\n'))
	}
	path := filepath.Join(t.TempDir(), prefix+".jsonl")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkExactlyOnce reads the task's output and checks every line of the
// n is answered once, in order.
func checkExactlyOnce(t *testing.T, ctx context.Context, tc *taskclient.Client, res task.Result, prefix string, n int) {
	t.Helper()
	if res.State != task.Completed || res.Counts != (task.Counts{Total: n, Completed: n}) {
		t.Fatalf("%s: %+v; want COMPLETED with %d answers", prefix, res, n)
	}
	var buf bytes.Buffer
	if err := tc.Download(ctx, res.Output, &buf); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 16<<20)
	i := 0
	for sc.Scan() {
		var l batch.OutputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		i++
		if want := fmt.Sprintf("%s-%05d", prefix, i); l.CustomID != want {
			t.Fatalf("%s: output line %d is %s, want %s (lost or duplicated)", prefix, i, l.CustomID, want)
		}
	}
	if i != n {
		t.Fatalf("%s: %d output lines, want %d", prefix, i, n)
	}
}

// TestThreeNodesServeTheirModelsAndSurviveAKillAndADrain runs three
// worker processes with different models and labels, each with a model
// server of its own (so the requests each node sent can be counted): a
// glm-4-flash batch lands only on the one node serving it; concurrent
// glm-4-test batches spread over the nodes; the node running a batch is
// killed mid-batch and the batch completes on another node with every line
// once; the node running the next batch is drained mid-batch and the batch
// moves and completes the same way.
func TestThreeNodesServeTheirModelsAndSurviveAKillAndADrain(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	t.Setenv("AUTOGLM_POLICY_FILE", fleetPolicy(t))
	servers := map[string]*testmodel.Server{}
	nodes := map[string]*node{}
	env := []string{"AUTOGLM_HEARTBEAT_TIMEOUT=5s", "AUTOGLM_CHECKPOINT_INTERVAL=1s", "AUTOGLM_MAX_PIECES=1", "AUTOGLM_CONCURRENCY=4"}
	for _, spec := range []struct{ short, models, labels string }{
		{"a", "glm-4-test", "gpu=a100,region=eu"},
		{"b", "glm-4-test", "gpu=h100,region=us"},
		{"c", "glm-4-test,glm-4-flash", "gpu=l40,region=us"},
	} {
		m := testmodel.New(testmodel.Options{Models: []string{"glm-4-test", "glm-4-flash"}, Faults: testmodel.Faults{Latency: 40 * time.Millisecond}})
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		n := startNode(t, spec.short, nodeOptions{Models: spec.models, Labels: spec.labels, ModelURL: m.URL(), Env: env})
		servers[n.name], nodes[n.name] = m, n
	}
	var a, b, c string
	for name, n := range nodes {
		switch n.name[:4] {
		case "fl-a":
			a = name
		case "fl-b":
			b = name
		case "fl-c":
			c = name
		}
	}
	counts := func() map[string]int64 {
		out := map[string]int64{}
		for name, m := range servers {
			out[name] = m.Stats().Requests
		}
		return out
	}
	tc := &taskclient.Client{Temporal: suite.Temporal, Store: suite.Store, Signer: suite.Signer}
	submit := func(prefix, model string, n int) string {
		in, err := tc.Submit(ctx, taskclient.SubmitRequest{Tenant: "fl", Submitter: "alice", Model: model, File: writeBatch(t, prefix, model, n)})
		if err != nil {
			t.Fatal(err)
		}
		return in.ID
	}

	// glm-4-flash: only node c serves it.
	before := counts()
	res, err := tc.Wait(ctx, submit("flash", "glm-4-flash", 40))
	if err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, ctx, tc, res, "flash", 40)
	after := counts()
	if after[a] != before[a] || after[b] != before[b] || after[c]-before[c] != 40 {
		t.Fatalf("glm-4-flash requests per node: a %d, b %d, c %d; want all 40 on c", after[a]-before[a], after[b]-before[b], after[c]-before[c])
	}

	// Four glm-4-test batches at once on nodes that run one batch each.
	before = counts()
	var wg sync.WaitGroup
	for i := range 4 {
		id := submit(fmt.Sprintf("spread%d", i), "glm-4-test", 100)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := tc.Wait(ctx, id)
			if err != nil || r.State != task.Completed {
				t.Errorf("spread batch %s: %+v %v", id, r, err)
			}
		}()
	}
	wg.Wait()
	after = counts()
	busy := 0
	for _, name := range []string{a, b, c} {
		if after[name] > before[name] {
			busy++
		}
	}
	t.Logf("work per node for 4 concurrent glm-4-test batches of 100: a %d, b %d, c %d requests", after[a]-before[a], after[b]-before[b], after[c]-before[c])
	if busy < 2 {
		t.Fatalf("four concurrent batches ran on %d node(s); want them spread", busy)
	}

	// Kill the node running a batch, mid-batch.
	running := func(before map[string]int64, among ...string) string {
		var who string
		eventually(t, ctx, "a node to be 50 requests into the batch", func() (bool, error) {
			now := counts()
			for _, name := range among {
				if now[name]-before[name] >= 50 {
					who = name
					return true, nil
				}
			}
			return false, nil
		})
		return who
	}
	before = counts()
	id := submit("kill", "glm-4-test", 400)
	victim := running(before, a, b, c)
	nodes[victim].Kill()
	t.Logf("killed node %s mid-batch (%d requests in)", victim, counts()[victim]-before[victim])
	res, err = tc.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, ctx, tc, res, "kill", 400)
	if st, err := tc.Status(ctx, id); err != nil || st.Node == victim || !strings.HasPrefix(st.Node, "fl-") {
		t.Fatalf("the killed batch's status names node %q (%v); want the survivor that finished it", st.Node, err)
	}
	var survivors []string
	for _, name := range []string{a, b, c} {
		if name != victim {
			survivors = append(survivors, name)
		}
	}
	after = counts()
	moved := after[survivors[0]] - before[survivors[0]] + after[survivors[1]] - before[survivors[1]]
	if moved == 0 {
		t.Fatalf("the batch completed but no surviving node sent a request")
	}
	t.Logf("kill: 400 lines, 0 lost, 0 duplicated; %d requests by %s before it died, %d by the survivors", after[victim]-before[victim], victim, moved)

	// Drain the node running the next batch, mid-batch.
	before = counts()
	id = submit("drain", "glm-4-test", 400)
	drained := running(before, survivors...)
	if _, code := runCLI(t, ctx, "nodes", "drain", "--as", "olga", drained); code != 0 {
		t.Fatalf("nodes drain %s: exit %d", drained, code)
	}
	res, err = tc.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, ctx, tc, res, "drain", 400)
	other := survivors[0]
	if other == drained {
		other = survivors[1]
	}
	after = counts()
	if after[other] == before[other] {
		t.Fatalf("the drained batch completed without node %s sending a request", other)
	}
	t.Logf("drain: 400 lines, 0 lost, 0 duplicated; %d requests on %s before and after the drain, %d on %s", after[drained]-before[drained], drained, after[other]-before[other], other)
	out, code := runCLI(t, ctx, "nodes", "--json", "--as", "olga")
	var views []struct {
		Name    string
		Drained bool
	}
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil {
		t.Fatalf("nodes --json: exit %d %q", code, out)
	}
	for _, v := range views {
		if (v.Name == drained) != v.Drained && (v.Name == a || v.Name == b || v.Name == c) {
			t.Fatalf("autoglm nodes: %+v; want only %s drained", views, drained)
		}
	}
	text, _ := runCLI(t, ctx, "nodes", "--as", "olga")
	t.Logf("autoglm nodes:\n%s", text)
}
