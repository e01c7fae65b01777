package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// suggestAt makes the server suggest continue-as-new once the workflow's
// clock reaches d after the start.
func (h *harness) suggestAt(d time.Duration) {
	h.at(d, func() { h.env.SetContinueAsNewSuggested(true) })
}

// continued checks that the run ended by continuing as new and returns a
// harness for the next run: the same task, its input carrying the state,
// its clock where the last run's stopped.
func (h *harness) continued() *harness {
	h.t.Helper()
	var can *workflow.ContinueAsNewError
	if err := h.env.GetWorkflowError(); !errors.As(err, &can) {
		h.t.Fatalf("the run ended with %v, want continue-as-new", err)
	}
	if can.WorkflowType.Name != task.WorkflowType {
		h.t.Errorf("continued as %q", can.WorkflowType.Name)
	}
	var in task.Input
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &in); err != nil {
		h.t.Fatalf("the new run's input: %v", err)
	}
	if in.ID != h.in.ID || in.Tenant != h.in.Tenant || in.Source != h.in.Source || len(in.Carry) == 0 {
		h.t.Fatalf("the new run's input: %+v", in)
	}
	next := newHarness(h.t)
	next.in = in
	next.trail = h.trail
	next.env.SetStartTime(h.env.Now())
	next.env.SetContinuedExecutionRunID("the-run-that-continued")
	return next
}

// TestContinueAsNewWhileAwaitingApproval: the server suggests
// continue-as-new while a task waits for the second of two approvals. The
// new run keeps the audit trail and the first approval, takes the second
// and completes without authorizing or screening again.
func TestContinueAsNewWhileAwaitingApproval(t *testing.T) {
	h := newHarness(t)
	h.rules.Quorum = 2
	var first, again, second *outcome
	h.at(awaiting, func() {
		first = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil)
	})
	h.suggestAt(awaiting + time.Minute)
	h.run()
	wantAccepted(t, first)

	h2 := h.continued()
	h2.at(time.Minute, func() {
		again = h2.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil)
	})
	h2.at(2*time.Minute, func() {
		second = h2.update(task.UpdateApprove, task.DecisionRequest{Actor: "rita"}, nil)
	})
	h2.run()

	// bob's approval came over: he cannot make the quorum alone.
	wantRefused(t, again, task.InvalidInput)
	wantAccepted(t, second)
	res := h2.result()
	if res.State != task.Completed || res.Counts != (task.Counts{Total: 20, Completed: 19, Failed: 1}) {
		t.Errorf("result %+v", res)
	}
	st := h2.status()
	if st.Quorum != 2 || len(st.Approvals) != 2 || st.Priority != 3 || st.Progress.Counts != res.Counts {
		t.Errorf("quorum %d, approvals %+v, priority %d, progress %+v", st.Quorum, st.Approvals, st.Priority, st.Progress)
	}
	h2.wantAudit(st, append(append(untilAwaiting, step{task.AwaitingApproval, "bob"}, step{task.Approved, "rita"}), fromDispatch...)...)
	for name, want := range map[string]int{"Authorize": 0, "Screen": 0, "Dispatch": 1, "Infer": 1, "Archive": 1} {
		if got := h2.called(name); got != want {
			t.Errorf("new run: %s called %d times, want %d", name, got, want)
		}
	}
}

// TestContinueAsNewKeepsTheApprovalDeadline: the new run expires the
// task at the deadline the first run set, not a fresh one.
func TestContinueAsNewKeepsTheApprovalDeadline(t *testing.T) {
	h := newHarness(t)
	h.suggestAt(awaiting)
	h.run()
	started := h.startedAt

	h2 := h.continued()
	h2.run()
	st := h2.status()
	if st.State != task.Expired {
		t.Fatalf("state %s, want EXPIRED", st.State)
	}
	h2.wantAudit(st, append(untilAwaiting, step{task.Expired, "timer"})...)
	deadline := demoRules().ApprovalDeadline
	if got := st.Audit[4].Time.Sub(started); got < deadline || got > deadline+time.Minute {
		t.Errorf("expired %s after the start, want the deadline %s", got, deadline)
	}
}

// TestContinueAsNewWhilePaused: the suggestion comes while the task is
// paused; the new run waits for the resume, keeps its node, and runs the
// inference again from the checkpoint.
func TestContinueAsNewWhilePaused(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	h.blockFirstInfer()
	var pause, resume *outcome
	h.whenInferStarts(func() {
		pause = h.update(task.UpdatePause, task.DecisionRequest{Actor: "olga"}, nil)
	})
	// The clock moves only once the paused inference has stopped.
	h.suggestAt(awaiting)
	h.run()
	wantAccepted(t, pause)
	if st := h.status(); st.State != task.Paused {
		t.Fatalf("continued as new in %s, want PAUSED", st.State)
	}

	h2 := h.continued()
	h2.at(time.Minute, func() {
		resume = h2.update(task.UpdateResume, task.DecisionRequest{Actor: "olga"}, nil)
	})
	h2.run()
	wantAccepted(t, resume)
	if res := h2.result(); res.State != task.Completed || res.Counts.Completed != 19 || res.Counts.Failed != 1 {
		t.Errorf("result %+v", res)
	}
	if d, i := h2.called("Dispatch"), h2.called("Infer"); d != 0 || i != 1 {
		t.Errorf("new run: dispatch %d, infer %d; want 0 and 1 (the node is kept)", d, i)
	}
	h2.wantAudit(h2.status(),
		step{task.Submitted, submitter}, step{task.Authorized, "policy"}, step{task.Screened, "screening"}, step{task.Approved, "policy"},
		step{task.Dispatched, "dispatch"}, step{task.Running, "dispatch"},
		step{task.Paused, "olga"}, step{task.Running, "olga"},
		step{task.Dispatched, "dispatch"}, step{task.Running, "dispatch"},
		step{task.Archiving, "autoglm"}, step{task.Completed, "autoglm"},
	)
}

// TestContinueAsNewWhileRedispatching: a node does not start the work in
// time, and the server suggests continue-as-new; the new run dispatches
// again and completes.
func TestContinueAsNewWhileRedispatching(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	h.infer = func(context.Context, activities.InferInput) (activities.InferResult, error) {
		return activities.InferResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
	}
	h.whenInferStarts(func() { h.env.SetContinueAsNewSuggested(true) })
	h.run()
	if h.called("Infer") != 1 {
		t.Errorf("first run: infer %d", h.called("Infer"))
	}

	h2 := h.continued()
	h2.run()
	res := h2.result()
	if res.State != task.Completed || res.Counts != (task.Counts{Total: 20, Completed: 19, Failed: 1}) {
		t.Errorf("result %+v", res)
	}
	if d, i := h2.called("Dispatch"), h2.called("Infer"); d != 1 || i != 1 {
		t.Errorf("new run: dispatch %d, infer %d; want 1 and 1", d, i)
	}
	h2.wantAudit(h2.status(),
		step{task.Submitted, submitter}, step{task.Authorized, "policy"}, step{task.Screened, "screening"}, step{task.Approved, "policy"},
		step{task.Dispatched, "dispatch"}, step{task.Running, "dispatch"}, step{task.Dispatched, "dispatch"},
		step{task.Dispatched, "dispatch"}, step{task.Running, "dispatch"},
		step{task.Archiving, "autoglm"}, step{task.Completed, "autoglm"},
	)
}
