package workflows_test

import (
	"context"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A task cancelled mid-run keeps the total of its input: 7 of 20 done is
// not "7 of 7".
func TestCancelledTaskKeepsTheInputsTotal(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	h.blockFirstInfer()
	h.whenInferStarts(func() {
		h.update(task.UpdateCancel, task.DecisionRequest{Actor: "olga", Reason: "node maintenance"}, nil)
	})
	h.run()

	want := task.Counts{Total: h.screening.Requests, Completed: 7}
	if res := h.result(); res.State != task.Cancelled || res.Counts != want {
		t.Errorf("result %s %+v, want CANCELLED %+v", res.State, res.Counts, want)
	}
	if st := h.status(); st.Progress.Counts != want {
		t.Errorf("status counts %+v, want %+v", st.Progress.Counts, want)
	}
}

// A failed task's status carries the type of its failure, for clients that
// watch the status rather than wait for the result.
func TestFailedTaskStatusCarriesTheErrorType(t *testing.T) {
	h := newHarness(t)
	h.authorize = func(context.Context, activities.AuthorizeInput) (activities.AuthorizeResult, error) {
		return activities.AuthorizeResult{}, temporal.NewNonRetryableApplicationError("mallory may not submit", string(task.PermissionDenied), nil)
	}
	h.run()
	if st := h.status(); st.State != task.Failed || st.LastErrorType != task.PermissionDenied {
		t.Errorf("status %s with error type %q; want FAILED, PermissionDenied", st.State, st.LastErrorType)
	}
}
