package cluster

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// faultItems is the size of each fault's batch: several thousand, at a
// latency that keeps it running well past the fault.
const faultItems = 4000

// duringBatch runs a batch of faultItems, injects the fault once a fifth
// of it is answered, and checks the task completes with every line once.
func duringBatch(t *testing.T, prefix string, fault func(ctx context.Context)) {
	ctx := testenv.Context(t, 8*time.Minute)
	suite.cl.Model.SetFaults(testmodel.Faults{Latency: 100 * time.Millisecond})
	t.Cleanup(func() { suite.cl.Model.SetFaults(testmodel.Faults{Latency: 20 * time.Millisecond}) })
	in := writeBatch(t, prefix, faultItems)
	id := submitApproved(t, ctx, prefix, in)
	// alice follows it with `autoglm watch` through the API server, as a
	// user would; the watch must ride through the fault.
	watched := make(chan testenv.CLIRun, 1)
	go func() {
		watched <- suite.RunCLI(t, ctx, testenv.CLIOptions{Env: append(os.Environ(), "AUTOGLM_SERVER="+suite.cl.ServerURL, "AUTOGLM_API_KEY_FILE="+suite.cl.KeyFile("alice"))}, "watch", id)
	}()
	st := waitDone(t, ctx, id, faultItems/5)
	t.Logf("task %s is %s on node %s with %d of %d answered: the fault now", id, st.State, st.Node, st.Progress.Done(), faultItems)
	at := time.Now()
	fault(ctx)
	lines, unique := exact(t, ctx, id, in)
	t.Logf("task %s COMPLETED %.1f s after the fault: output.jsonl %d lines, %d unique custom_ids of %d", id, time.Since(at).Seconds(), lines, unique, faultItems)
	if r := <-watched; r.Code != 0 || !strings.Contains(r.Stdout, "COMPLETED") {
		t.Errorf("alice's `autoglm watch %s` through the API server: exit %d\n%s\nwant it to follow the task through the fault to COMPLETED", id, r.Code, r.Output)
	}
}

// One history process dies; the other takes over its shards: the batch
// goes on, and one-prompt tasks started while it is down (16 workflow IDs
// spread over the 8 shards, so some on the dead process's) complete. The
// process is started again afterwards.
func TestKillHistory(t *testing.T) {
	duringBatch(t, "kill-history", func(ctx context.Context) {
		if err := suite.cl.Kill("history-1"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := suite.cl.StartService(context.Background(), "history-1"); err != nil {
				t.Errorf("starting history-1 again: %v", err)
			}
		})
		at := time.Now()
		var ids []string
		for i := range 16 {
			id := fmt.Sprintf("history-down-%d-%s", i, testenv.RandHex(3))
			if _, err := suite.tasks.Submit(ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", Model: model, Prompt: "hello while a history process is down"}); err != nil {
				t.Fatalf("submitting %s with history-1 down: %v", id, err)
			}
			ids = append(ids, id)
		}
		for _, id := range ids {
			if res, err := suite.tasks.Wait(ctx, id); err != nil || res.State != task.Completed {
				t.Fatalf("task %s started with history-1 down: %+v, %v; want COMPLETED", id, res.State, err)
			}
		}
		t.Logf("16 one-prompt tasks started with history-1 down COMPLETED within %.1f s", time.Since(at).Seconds())
	})
}

// The frontend dies and comes back on its port: workers, the API server
// and this test's client reconnect by themselves.
func TestKillFrontend(t *testing.T) {
	duringBatch(t, "kill-frontend", func(ctx context.Context) {
		if err := suite.cl.Kill("frontend"); err != nil {
			t.Fatal(err)
		}
		if err := suite.cl.StartService(ctx, "frontend"); err != nil {
			t.Fatal(err)
		}
	})
}

// PostgreSQL stops (fast shutdown, as a failover or an upgrade) and
// starts again: every Temporal service loses its connections at once.
func TestRestartPostgres(t *testing.T) {
	duringBatch(t, "restart-postgres", func(ctx context.Context) {
		if err := suite.cl.RestartPostgres(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// The matching service dies and is started again: polls and task
// dispatch stop meanwhile, nothing is lost.
func TestKillMatching(t *testing.T) {
	duringBatch(t, "kill-matching", func(ctx context.Context) {
		if err := suite.cl.Kill("matching"); err != nil {
			t.Fatal(err)
		}
		if err := suite.cl.StartService(ctx, "matching"); err != nil {
			t.Fatal(err)
		}
	})
}
