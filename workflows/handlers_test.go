package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A task in a final state refuses what no longer applies. The workflow
// writes its report (Archive) after the final transition, so a test that
// holds Archive sends updates to a finished task whose workflow is still
// open and whose validators still answer. Once the workflow has closed,
// Temporal itself refuses every update (the client sees the workflow
// completed, which taskclient reports as WrongState); no workflow code
// runs then, so there is nothing of ours to test.
func TestFinishedTaskRefuses(t *testing.T) {
	t.Run("approve after the deadline", func(t *testing.T) {
		h := newHarness(t)
		open := h.gateArchive()
		var o *outcome
		h.onStart["Archive"] = func(int32) {
			o = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, func(*outcome) { open() })
		}
		h.run()
		if o.before.State != task.Expired {
			t.Fatalf("sent in state %s, want EXPIRED", o.before.State)
		}
		wantRefused(t, o, task.WrongState)
		if res := h.result(); res.State != task.Expired {
			t.Errorf("state %s", res.State)
		}
	})
	t.Run("a second reject", func(t *testing.T) {
		h := newHarness(t)
		open := h.gateArchive()
		var o *outcome
		h.at(awaiting, func() {
			h.update(task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: "customer data"}, nil)
		})
		h.onStart["Archive"] = func(int32) {
			o = h.update(task.UpdateReject, task.DecisionRequest{Actor: "rita", Reason: "also no"}, func(*outcome) { open() })
		}
		h.run()
		wantRefused(t, o, task.WrongState)
		if st := h.status(); st.State != task.Rejected || last(st).Actor != "bob" || last(st).Reason != "customer data" {
			t.Errorf("state %s, last %+v: the first rejection stands", st.State, last(st))
		}
	})
	t.Run("cancel of a completed task", func(t *testing.T) {
		h := newHarness(t)
		h.screening.AutoApprove = true
		open := h.gateArchive()
		var byAdmin, byOwner *outcome
		h.onStart["Archive"] = func(int32) {
			byAdmin = h.update(task.UpdateCancel, task.DecisionRequest{Actor: "carol"}, nil)
			byOwner = h.update(task.UpdateCancel, task.DecisionRequest{Actor: submitter}, func(*outcome) { open() })
		}
		h.run()
		if byAdmin.before.State != task.Completed {
			t.Fatalf("sent in state %s, want COMPLETED", byAdmin.before.State)
		}
		wantRefused(t, byAdmin, task.WrongState)
		wantRefused(t, byOwner, task.WrongState)
		if res := h.result(); res.State != task.Completed {
			t.Errorf("state %s", res.State)
		}
	})
}

// TestWrongStateOrInput covers the validators' other refusals.
func TestWrongStateOrInput(t *testing.T) {
	t.Run("approve while running", func(t *testing.T) {
		h := newHarness(t)
		h.screening.AutoApprove = true
		var o *outcome
		h.whenInferStarts(func() { o = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil) })
		h.run()
		wantRefused(t, o, task.WrongState)
	})
	t.Run("pause or resume while awaiting approval", func(t *testing.T) {
		h := newHarness(t)
		var pause, resume *outcome
		h.at(awaiting, func() {
			pause = h.update(task.UpdatePause, task.DecisionRequest{Actor: "carol"}, nil)
			resume = h.update(task.UpdateResume, task.DecisionRequest{Actor: "carol"}, nil)
		})
		h.run()
		wantRefused(t, pause, task.WrongState)
		wantRefused(t, resume, task.WrongState)
	})
	t.Run("reject without a reason", func(t *testing.T) {
		h := newHarness(t)
		var o *outcome
		h.at(awaiting, func() { o = h.update(task.UpdateReject, task.DecisionRequest{Actor: "bob"}, nil) })
		h.run()
		wantRefused(t, o, task.InvalidInput)
	})
	t.Run("priority out of range", func(t *testing.T) {
		h := newHarness(t)
		var zero, six *outcome
		h.at(awaiting, func() {
			zero = h.update(task.UpdateSetPriority, task.DecisionRequest{Actor: "carol", Priority: 0}, nil)
			six = h.update(task.UpdateSetPriority, task.DecisionRequest{Actor: "carol", Priority: 6}, nil)
		})
		h.run()
		wantRefused(t, zero, task.InvalidInput)
		wantRefused(t, six, task.InvalidInput)
	})
	t.Run("set-priority before authorization", func(t *testing.T) {
		// Before the task has its grant, nobody but the submitter (to
		// cancel) can be checked: "not now", not "not allowed".
		h := newHarness(t)
		var o *outcome
		h.onStart["Authorize"] = func(int32) {
			o = h.update(task.UpdateSetPriority, task.DecisionRequest{Actor: "carol", Priority: 1}, nil)
		}
		h.run()
		wantRefused(t, o, task.WrongState)
	})
}

func TestCancelWhileAwaitingApproval(t *testing.T) {
	h := newHarness(t)
	var o *outcome
	h.at(awaiting, func() {
		o = h.update(task.UpdateCancel, task.DecisionRequest{Actor: "olga", Reason: "wrong model"}, nil)
	})
	h.run()

	wantAccepted(t, o)
	res := h.result()
	if res.State != task.Cancelled || res.Reason != "wrong model" {
		t.Errorf("result %+v", res)
	}
	h.wantAudit(h.status(), append(untilAwaiting, step{task.Cancelled, "olga"})...)
	if h.called("Dispatch")+h.called("Infer")+h.called("Collect") != 0 {
		t.Errorf("a task cancelled before dispatch ran: dispatch %d, infer %d, collect %d", h.called("Dispatch"), h.called("Infer"), h.called("Collect"))
	}
}

func TestCancelDuringAuthorizeBySubmitter(t *testing.T) {
	h := newHarness(t)
	var o *outcome
	h.onStart["Authorize"] = func(int32) {
		o = h.update(task.UpdateCancel, task.DecisionRequest{Actor: submitter}, nil)
	}
	h.run()

	wantAccepted(t, o)
	st := h.status()
	h.wantAudit(st, step{task.Submitted, submitter}, step{task.Cancelled, submitter})
	if last(st).Reason != "cancelled by alice" || h.called("Screen") != 0 {
		t.Errorf("last %+v, screen called %d times", last(st), h.called("Screen"))
	}
}

func TestCancelWhileRunning(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	b := h.blockFirstInfer()
	var o *outcome
	h.whenInferStarts(func() {
		o = h.update(task.UpdateCancel, task.DecisionRequest{Actor: "olga", Reason: "node maintenance"}, nil)
	})
	h.run()

	wantAccepted(t, o)
	if o.before.State != task.Running {
		t.Errorf("sent in state %s, want RUNNING", o.before.State)
	}
	res := h.result()
	if res.State != task.Cancelled || res.Reason != "node maintenance" {
		t.Errorf("result %+v", res)
	}
	// The partial output is collected into the task's output.
	if h.called("Collect") != 1 || res.Counts.Completed != 7 || res.Output != ref("output.jsonl") {
		t.Errorf("collect called %d times; result counts %+v, output %+v", h.called("Collect"), res.Counts, res.Output)
	}
	st := h.status()
	if last(st).To != task.Cancelled || last(st).Actor != "olga" || len(byActor(st, "olga")) != 1 {
		t.Errorf("audit %v", steps(st.Audit))
	}
	// The inference activity itself saw the cancel through its context,
	// which is where the engine records its checkpoint.
	select {
	case err := <-b.returned:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the running inference returned %v, want its context cancelled", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the running inference was never cancelled")
	}
}

func TestPauseThenResume(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	b := h.blockFirstInfer()
	var pause, resume *outcome
	h.whenInferStarts(func() {
		pause = h.update(task.UpdatePause, task.DecisionRequest{Actor: "olga"}, nil)
	})
	h.onCancel["Infer"] = func() {
		resume = h.update(task.UpdateResume, task.DecisionRequest{Actor: "olga"}, nil)
	}
	h.run()

	wantAccepted(t, pause)
	wantAccepted(t, resume)
	if pause.after.State != task.Paused || resume.before.State != task.Paused {
		t.Errorf("after pause %s, before resume %s; want PAUSED", pause.after.State, resume.before.State)
	}
	if res := h.result(); res.State != task.Completed || res.Counts.Completed != 19 {
		t.Errorf("result %+v", res)
	}
	if n := h.called("Infer"); n != 2 {
		t.Errorf("infer called %d times, want 2: the paused run and the resumed one", n)
	}
	if h.called("Dispatch") != 1 || h.called("Collect") != 0 {
		t.Errorf("dispatch %d, collect %d: a resumed task keeps its node and merges nothing partial", h.called("Dispatch"), h.called("Collect"))
	}
	h.wantAudit(h.status(),
		step{task.Submitted, submitter}, step{task.Authorized, "policy"}, step{task.Screened, "screening"}, step{task.Approved, "policy"},
		step{task.Dispatched, "dispatch"}, step{task.Running, "dispatch"},
		step{task.Paused, "olga"}, step{task.Running, "olga"},
		step{task.Dispatched, "dispatch"}, step{task.Running, "dispatch"},
		step{task.Archiving, "autoglm"}, step{task.Completed, "autoglm"},
	)
	select {
	case err := <-b.returned:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the paused inference returned %v, want its context cancelled", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the paused inference was never cancelled")
	}
}

func TestSetPriority(t *testing.T) {
	h := newHarness(t)
	var prios []int
	h.at(awaiting, func() {
		h.update(task.UpdateSetPriority, task.DecisionRequest{Actor: "olga", Priority: 1}, nil)
	})
	h.at(awaiting+time.Minute, func() {
		h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil)
	})
	h.onStart["Dispatch"] = func(int32) { prios = append(prios, h.status().Priority) }
	h.run()

	o := h.outcomes[0]
	wantAccepted(t, o)
	if o.after.Priority != 1 || o.after.State != task.AwaitingApproval {
		t.Errorf("after set-priority: priority %d, state %s", o.after.Priority, o.after.State)
	}
	if tr := last(o.after); tr.Actor != "olga" || tr.Reason != "priority 1 (was 3)" || tr.To != task.AwaitingApproval {
		t.Errorf("audit entry %+v", tr)
	}
	if len(prios) != 1 || prios[0] != 1 {
		t.Errorf("priority when dispatching: %v, want [1]", prios)
	}
	if res := h.result(); res.State != task.Completed {
		t.Errorf("state %s", res.State)
	}
}

// TestAssertions: the actor of an update is what the API server signed,
// not what the caller says. An update without an assertion, with one for
// another actor, task or action, with an expired one, or signed by a key
// the worker does not trust, is refused as PermissionDenied and leaves no
// trace; the same reviewer with the server's assertion approves.
func TestAssertions(t *testing.T) {
	h := newHarness(t)
	h.unsigned = true
	_, rogue, _ := assertion.GenerateKey()
	var refused []*outcome
	var good *outcome
	h.at(awaiting, func() {
		s := h.signer()
		forged := assertion.NewSigner(rogue)
		forged.Now = h.env.Now
		for _, req := range []task.DecisionRequest{
			{Actor: "bob"},
			{Actor: "bob", Assertion: s.Sign(h.in.ID, task.UpdateApprove, "rita", rolesOf("bob"), 0)},
			{Actor: "bob", Assertion: s.Sign("other-task", task.UpdateApprove, "bob", rolesOf("bob"), 0)},
			{Actor: "bob", Assertion: s.Sign(h.in.ID, task.UpdateCancel, "bob", rolesOf("bob"), 0)},
			{Actor: "bob", Assertion: forged.Sign(h.in.ID, task.UpdateApprove, "bob", rolesOf("bob"), 0)},
		} {
			refused = append(refused, h.update(task.UpdateApprove, req, nil))
		}
	})
	h.at(awaiting+time.Minute, func() {
		expired := h.signer()
		expired.Now = func() time.Time { return h.env.Now().Add(-time.Hour) }
		refused = append(refused, h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob", Assertion: expired.Sign(h.in.ID, task.UpdateApprove, "bob", rolesOf("bob"), time.Minute)}, nil))
	})
	h.at(awaiting+2*time.Minute, func() {
		good = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob", Reason: "signed", Assertion: h.signer().SignInput(h.in.ID, task.UpdateApprove, "bob", rolesOf("bob"), task.DecisionRequest{Reason: "signed"}.Digest(), 0)}, nil)
	})
	h.run()
	for i, o := range refused {
		wantRefused(t, o, task.PermissionDenied)
		if len(o.after.Audit) != len(o.before.Audit) || len(o.after.Approvals) != 0 {
			t.Errorf("refused update %d changed the task: audit %v", i, steps(o.after.Audit))
		}
	}
	wantAccepted(t, good)
	if res := h.result(); res.State != task.Completed {
		t.Errorf("state %s", res.State)
	}
}

// TestPauseWhileRedispatching: a node that does not start the inference
// in time is replaced, and the task is DISPATCHED while a new node is
// picked. A pause then stops the dispatch, and resume picks a node again.
func TestPauseWhileRedispatching(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	next := h.infer
	h.infer = func(ctx context.Context, in activities.InferInput) (activities.InferResult, error) {
		if h.called("Infer") == 1 {
			return activities.InferResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
		}
		return next(ctx, in)
	}
	var pause, resume *outcome
	h.onStart["Dispatch"] = func(int32) {
		if pause == nil && h.status().State == task.Dispatched {
			pause = h.update(task.UpdatePause, task.DecisionRequest{Actor: "olga"}, nil)
		}
	}
	h.onCancel["Dispatch"] = func() {
		resume = h.update(task.UpdateResume, task.DecisionRequest{Actor: "olga"}, nil)
	}
	h.run()

	wantAccepted(t, pause)
	wantAccepted(t, resume)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatalf("a pause while re-dispatching failed the task: %v", err)
	}
	if res := h.result(); res.State != task.Completed {
		t.Errorf("state %s", res.State)
	}
	if d, i := h.called("Dispatch"), h.called("Infer"); d != 3 || i != 2 {
		t.Errorf("dispatch %d, infer %d; want 3 and 2: the stalled node, the paused re-dispatch, the one after resume", d, i)
	}
}

// TestPauseWhileMerging: once every piece has answered, the task only
// joins their outputs; a pause then has nothing to stop, and must not
// fail the task by cancelling the merge.
func TestPauseWhileMerging(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	h.cut = []activities.Piece{
		{Index: 0, FirstLine: 1, LastLine: 10, Requests: 10},
		{Index: 1, FirstLine: 11, Offset: 2000, Requests: 10},
	}
	var o *outcome
	// The merge waits until the pause's outcome is known, so the status
	// after it is read while the task is still merging.
	settled := make(chan struct{})
	h.onStart["MergePieces"] = func(int32) {
		o = h.update(task.UpdatePause, task.DecisionRequest{Actor: "olga"}, func(*outcome) { close(settled) })
	}
	merge := h.merge
	h.merge = func(ctx context.Context, in activities.MergeInput) (activities.InferResult, error) {
		select {
		case <-settled:
		case <-time.After(30 * time.Second):
			return activities.InferResult{}, temporal.NewNonRetryableApplicationError("the pause never settled", "TestBug", nil)
		}
		return merge(ctx, in)
	}
	h.run()

	wantRefused(t, o, task.WrongState)
	if err := h.env.GetWorkflowError(); err != nil {
		t.Fatalf("a pause while merging failed the task: %v", err)
	}
	res := h.result()
	if res.State != task.Completed || res.Counts.Completed != 38 {
		t.Errorf("result %+v", res)
	}
	if h.called("Infer") != 2 || h.called("MergePieces") != 1 {
		t.Errorf("infer %d, merge %d", h.called("Infer"), h.called("MergePieces"))
	}
}

// TestValidatorsCheckSignedRoles: the validators hold no copy of the
// policy; they check the action against the roles the server signed into
// the assertion. aldo, an auditor, signed as one, may not approve; alice
// may not approve her own task even signed as a reviewer; bob signed
// after his role was taken away (no roles) may not approve; the same
// signature over bob with the reviewer role is accepted.
func TestValidatorsCheckSignedRoles(t *testing.T) {
	h := newHarness(t)
	h.unsigned = true
	var refused []*outcome
	var good *outcome
	h.at(awaiting, func() {
		s := h.signer()
		for _, c := range []struct {
			actor string
			roles []authz.Role
		}{
			{"aldo", rolesOf("aldo")},
			{submitter, []authz.Role{authz.Reviewer}},
			{"bob", nil},
		} {
			refused = append(refused, h.update(task.UpdateApprove, task.DecisionRequest{
				Actor: c.actor, Assertion: s.Sign(h.in.ID, task.UpdateApprove, c.actor, c.roles, 0),
			}, nil))
		}
	})
	h.at(awaiting+time.Minute, func() {
		good = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob", Reason: "reviewed", Assertion: h.signer().SignInput(h.in.ID, task.UpdateApprove, "bob", []authz.Role{authz.Reviewer}, task.DecisionRequest{Reason: "reviewed"}.Digest(), 0)}, nil)
	})
	h.run()
	for _, o := range refused {
		wantRefused(t, o, task.PermissionDenied)
	}
	wantAccepted(t, good)
	if res := h.result(); res.State != task.Completed {
		t.Errorf("state %s, want COMPLETED after bob's approval", res.State)
	}
}
