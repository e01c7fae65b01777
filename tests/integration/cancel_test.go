package integration

import (
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// An operator cancels a batch while it runs: the inference stops before
// the batch is through, the task ends CANCELLED with the operator in its
// audit trail, and what was answered is kept in output.jsonl. Someone
// without the right may not cancel, and a finished task cannot be.
func TestOperatorCancelsARunningBatch(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	// One request at a time, and every one after the third held until
	// the cancel: a cancel that did not reach the running inference
	// would leave the batch waiting on it.
	slow := testmodel.New(testmodel.Options{})
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	t.Cleanup(slow.HoldAfter(3))
	startWorker(t, workerOptions{Model: slow, Concurrency: 1})

	const total = autoApproveMax // auto-approved, so it runs at once
	in := writeBatch(t, "cancel", total)
	id := newID("cancel")
	submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "dave", File: in.path})
	waitState(t, ctx, id, task.Running)
	eventually(t, ctx, "the batch to answer its first requests and wait on the next", 100*time.Millisecond, func() (bool, error) {
		return slow.Stats().OK == 3 && slow.Stats().Requests == 4, nil
	})

	_, err := suite.tasks.Decide(ctx, id, task.UpdateCancel, task.DecisionRequest{Actor: "aldo", Reason: "auditors only look"})
	wantErrType(t, err, task.PermissionDenied)

	reason := "the GPUs are needed for an incident"
	st, err := suite.tasks.Decide(ctx, id, task.UpdateCancel, task.DecisionRequest{Actor: "olga", Reason: reason})
	if err != nil {
		t.Fatalf("olga's cancel: %v", err)
	}
	t.Logf("cancel accepted in state %s after %d answers", st.State, slow.Stats().OK)
	res := wait(t, ctx, id)
	if res.State != task.Cancelled {
		t.Fatalf("result state %s; want CANCELLED", res.State)
	}
	served := slow.Stats().Requests
	if served != 4 {
		t.Errorf("the model server was sent %d requests, want 4 (3 answered, 1 held): the cancel did not stop the running batch", served)
	}
	st = status(t, ctx, id)
	if !hasTransition(st.Audit, task.Cancelled, "olga", reason) {
		t.Errorf("audit trail %+v; want CANCELLED by olga with her reason", st.Audit)
	}

	// What was answered before the cancel is kept, in output.jsonl.
	out := outputLines(t, download(t, ctx, res.Output))
	if len(out) != 3 || res.Counts.Completed != 3 {
		t.Errorf("output.jsonl of the cancelled task has %d lines, its result counts %+v; want the 3 answers given before the cancel", len(out), res.Counts)
	}
	exactlyOnce(t, in.ids[:len(out)], customIDCounts(out))
	checkAnswers(t, out, in.bodies)
	t.Logf("cancelled after %d of %d requests were sent; %d answers kept in output.jsonl", served, total, len(out))

	_, err = suite.tasks.Decide(ctx, id, task.UpdateCancel, task.DecisionRequest{Actor: "olga"})
	wantErrType(t, err, task.WrongState)
}
