package workflows_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestHandBackDispatchesAgainAvoidingTheNode: the node's model server
// stays down, and its inference ends with a HandBack error after its
// checkpoint. The task is dispatched again avoiding that node, the status
// keeps the answers up to the checkpoint, the audit trail says why, and
// the task completes on the other node.
func TestHandBackDispatchesAgainAvoidingTheNode(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	down := time.Date(2026, 11, 23, 22, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var avoided [][]string
	var handBack []bool
	h.dispatch = func(_ context.Context, in activities.DispatchInput) (activities.DispatchResult, error) {
		mu.Lock()
		defer mu.Unlock()
		avoided = append(avoided, in.Avoid)
		if slices.Contains(in.Avoid, node) {
			return activities.DispatchResult{Node: "node-b", Queue: task.NodeQueue("node-b")}, nil
		}
		return activities.DispatchResult{Node: node, Queue: task.NodeQueue(node)}, nil
	}
	h.infer = func(ctx context.Context, in activities.InferInput) (activities.InferResult, error) {
		mu.Lock()
		handBack = append(handBack, in.HandBack)
		mu.Unlock()
		if h.isFirstAttempt(ctx) {
			return activities.InferResult{}, temporal.NewNonRetryableApplicationError("node-a hands the work back", string(task.HandBack), nil,
				activities.HandBackDetails{Node: node, Since: down, Counts: task.Counts{Completed: 7}})
		}
		return activities.InferResult{Counts: task.Counts{Total: 20, Completed: 20}, Output: ref("output.jsonl"), Errors: ref("errors.jsonl"), Node: "node-b"}, nil
	}
	h.run()

	res := h.result()
	if res.State != task.Completed || res.Counts.Completed != 20 {
		t.Fatalf("result %+v; want COMPLETED with 20 answered", res)
	}
	if d, i := h.called("Dispatch"), h.called("Infer"); d != 2 || i != 2 {
		t.Errorf("dispatch %d, infer %d; want 2 and 2 (the hand-back is not retried on its node)", d, i)
	}
	if len(avoided) != 2 || len(avoided[0]) != 0 || !slices.Equal(avoided[1], []string{node}) {
		t.Errorf("dispatches avoided %v; want none, then %s", avoided, node)
	}
	if !slices.Equal(handBack, []bool{true, true}) {
		t.Errorf("the inference inputs allowed a hand-back %v; want every time", handBack)
	}
	st := h.status()
	if st.Node != "node-b" {
		t.Errorf("the status shows node %q; want node-b", st.Node)
	}
	var why string
	for _, tr := range st.Audit {
		if tr.To == task.Dispatched && strings.Contains(tr.Reason, "down since") {
			why = tr.Reason
		}
	}
	if !strings.Contains(why, node) || !strings.Contains(why, "2026-11-23T22:00:00Z") {
		t.Errorf("no transition says %s handed the work back because its model server was down:\n%+v", node, st.Audit)
	}
}
