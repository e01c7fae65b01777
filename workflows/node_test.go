package workflows_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestStatusNamesTheNodeThatRanThePiece: dispatch sends the batch to its
// model's queue (any node serving it); node-a takes it and hands it back,
// node-b finishes it. The status names the node each attempt reported,
// never the queue's "any:" name, and counts the hand-back as an attempt;
// the audit trail says where the work was sent in words.
func TestStatusNamesTheNodeThatRanThePiece(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	h.dispatch = func(context.Context, activities.DispatchInput) (activities.DispatchResult, error) {
		return activities.DispatchResult{Node: "any:glm-4-test", Queue: task.ModelQueue("glm-4-test")}, nil
	}
	h.infer = func(ctx context.Context, in activities.InferInput) (activities.InferResult, error) {
		if h.isFirstAttempt(ctx) {
			return activities.InferResult{}, temporal.NewNonRetryableApplicationError("node-a hands the work back", string(task.HandBack), nil,
				activities.HandBackDetails{Node: "node-a", Since: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC), Counts: task.Counts{Completed: 7}, Attempts: 1})
		}
		return activities.InferResult{Counts: task.Counts{Total: 20, Completed: 20}, Output: ref("output.jsonl"), Errors: ref("errors.jsonl"), Node: "node-b", Attempt: 2}, nil
	}
	var handedBack task.Status
	h.onStart["Dispatch"] = func(int32) {
		if h.called("Dispatch") == 2 {
			handedBack = h.status()
		}
	}
	h.run()

	if res := h.result(); res.State != task.Completed {
		t.Fatalf("result %+v", res)
	}
	if handedBack.Node != "node-a" || handedBack.Attempts != 1 {
		t.Errorf("after the hand-back the status shows node %q, %d attempt(s); want node-a, 1", handedBack.Node, handedBack.Attempts)
	}
	st := h.status()
	if st.Node != "node-b" || st.Attempts != 2 {
		t.Errorf("the status shows node %q, %d attempt(s); want node-b, 2 (the hand-back counts)", st.Node, st.Attempts)
	}
	var dispatched []string
	for _, tr := range st.Audit {
		if strings.Contains(tr.Reason, "any:") {
			t.Errorf("the audit line %q names the queue's internal name", tr.Reason)
		}
		if tr.To == task.Dispatched && strings.HasPrefix(tr.Reason, "1 piece(s)") {
			dispatched = append(dispatched, tr.Reason)
		}
	}
	if len(dispatched) != 2 || dispatched[0] != "1 piece(s) on any node serving glm-4-test" {
		t.Errorf("dispatch lines %q; want two, \"1 piece(s) on any node serving glm-4-test\"", dispatched)
	}
}
