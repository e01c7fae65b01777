package workflows_test

import (
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A reason over the limit is refused before it reaches the history; one
// at the limit is kept whole.
func TestDecisionReasonIsCapped(t *testing.T) {
	h := newHarness(t)
	var long, atLimit *outcome
	h.at(awaiting, func() {
		long = h.update(task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: strings.Repeat("x", task.MaxReasonBytes+1)}, func(*outcome) {
			atLimit = h.update(task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: strings.Repeat("y", task.MaxReasonBytes)}, nil)
		})
	})
	h.run()
	if long == nil || !long.refused() || task.TypeOf(long.err) != task.InvalidInput && !strings.Contains(long.err.Error(), "byte limit") {
		t.Fatalf("a %d-byte reason: %+v; want refused as InvalidInput", task.MaxReasonBytes+1, long)
	}
	if atLimit == nil || atLimit.refused() {
		t.Fatalf("a reason at the limit was refused: %+v", atLimit)
	}
	if res := h.result(); res.State != task.Rejected || len(res.Reason) != task.MaxReasonBytes {
		t.Fatalf("result %s with a %d-byte reason; want REJECTED with the whole reason", res.State, len(res.Reason))
	}
}
