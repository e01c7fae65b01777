package workflows_test

import (
	"testing"

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
