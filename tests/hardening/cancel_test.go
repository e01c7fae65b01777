package hardening

import (
	"fmt"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// A task cancelled while it runs keeps its input's total in its status
// and result: "3 of 10 done", not "3 of 3".
func TestCancelledTaskKeepsItsInputsTotal(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	// A node of its own serving glm-4-slow, one request at a time, that
	// answers two and holds the rest, so the batch is still running when
	// the cancel comes.
	const slowModel = "glm-4-slow"
	slow := testmodel.New(testmodel.Options{Models: []string{slowModel}})
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	t.Cleanup(slow.HoldAfter(2))
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node, cfg.LLM.BaseURL, cfg.Models = "slow", slow.URL(), []string{slowModel}
	cfg.Concurrency, cfg.LLM.MaxIdleConnsPerHost = 1, 1
	stop, err := startWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	var lines []byte
	for i := range autoApprove {
		lines = append(lines, requestLineFor(slowModel, fmt.Sprintf("slow-%d", i), "take your time")+"\n"...)
	}
	in := submit(t, ctx, taskclient.SubmitRequest{Tenant: "acme", Submitter: "alice", File: writeFile(t, "slow.jsonl", lines)})
	waitState(t, ctx, in.ID, task.Running)
	for slow.Stats().OK < 2 {
		select {
		case <-ctx.Done():
			t.Fatal("the slow batch never answered two requests")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := suite.tasks.Decide(ctx, in.ID, task.UpdateCancel, task.DecisionRequest{Actor: "alice", Reason: "enough"}); err != nil {
		t.Fatalf("alice cancels her task: %v", err)
	}
	res, err := suite.tasks.Wait(ctx, in.ID)
	if err != nil || res.State != task.Cancelled {
		t.Fatalf("result %+v, %v; want CANCELLED", res, err)
	}
	if res.Counts.Total != autoApprove || res.Counts.Done() != 2 {
		t.Errorf("result counts %+v; want a total of %d with the 2 answered done", res.Counts, autoApprove)
	}
	if st, err := suite.tasks.Status(ctx, in.ID); err != nil || st.Progress.Total != autoApprove {
		t.Errorf("status progress %+v, %v; want a total of %d", st.Progress, err, autoApprove)
	}
	record(t, in.ID, "task_cancelled_running")
}
