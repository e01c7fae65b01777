package workflows_test

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The audit trail every task starts with, up to the approval wait.
var (
	untilAwaiting = []step{
		{task.Submitted, submitter}, {task.Authorized, "policy"}, {task.Screened, "screening"},
		{task.AwaitingApproval, "screening"},
	}
	fromDispatch = []step{
		{task.Dispatched, "dispatch"}, {task.Running, "dispatch"}, {task.Archiving, "autoglm"}, {task.Completed, "autoglm"},
	}
)

func TestApprovedByReviewer(t *testing.T) {
	h := newHarness(t)
	h.at(awaiting, func() {
		h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob", Reason: "looks fine"}, nil)
	})
	h.run()

	res := h.result()
	if res.State != task.Completed || res.Counts != (task.Counts{Total: 20, Completed: 19, Failed: 1}) {
		t.Errorf("result: %+v", res)
	}
	if res.Output != ref("output.jsonl") || res.Errors != ref("errors.jsonl") || res.Report != ref("report.json") {
		t.Errorf("result objects: %+v", res)
	}
	wantAccepted(t, h.outcomes[0])
	st := h.status()
	h.wantAudit(st, append(append(untilAwaiting, step{task.Approved, "bob"}), fromDispatch...)...)
	if tr := st.Audit[4]; tr.Reason != "looks fine" {
		t.Errorf("approval reason %q", tr.Reason)
	}
	if len(st.Approvals) != 1 || st.Approvals[0].Actor != "bob" || st.Quorum != 1 {
		t.Errorf("approvals %+v of quorum %d", st.Approvals, st.Quorum)
	}
	if st.Node != node || st.Progress.Counts != res.Counts {
		t.Errorf("node %q, progress %+v", st.Node, st.Progress)
	}
	for name, want := range map[string]int{"Authorize": 1, "Screen": 1, "Dispatch": 1, "Infer": 1, "Collect": 0, "Archive": 1} {
		if got := h.called(name); got != want {
			t.Errorf("%s called %d times, want %d", name, got, want)
		}
	}
}

func TestAutoApprovedByPolicy(t *testing.T) {
	h := newHarness(t)
	h.screening = task.Screening{Requests: 3, Bytes: 300, AutoApprove: true, Reasons: []string{"3 request(s), nothing flagged: approved by policy"}}
	h.run()

	if res := h.result(); res.State != task.Completed {
		t.Fatalf("state %s", res.State)
	}
	st := h.status()
	h.wantAudit(st, append([]step{
		{task.Submitted, submitter}, {task.Authorized, "policy"}, {task.Screened, "screening"}, {task.Approved, "policy"},
	}, fromDispatch...)...)
	if got := st.Audit[3].Reason; got != "3 request(s), nothing flagged: approved by policy" {
		t.Errorf("auto-approval reason %q", got)
	}
	if len(st.Approvals) != 0 {
		t.Errorf("approvals %+v: policy is no reviewer", st.Approvals)
	}
}

func TestRejectedWithReason(t *testing.T) {
	h := newHarness(t)
	const why = "the batch asks for customer data"
	h.at(awaiting, func() {
		h.update(task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: why}, nil)
	})
	h.run()

	res := h.result()
	if res.State != task.Rejected || res.Reason != why {
		t.Errorf("result %+v", res)
	}
	st := h.status()
	h.wantAudit(st, append(untilAwaiting, step{task.Rejected, "bob"})...)
	if last(st).Reason != why {
		t.Errorf("audit reason %q, want %q", last(st).Reason, why)
	}
	if h.called("Dispatch")+h.called("Infer")+h.called("Collect") != 0 || h.called("Archive") != 1 {
		t.Errorf("a rejected task dispatched or ran: %d dispatch, %d infer, %d collect, %d archive",
			h.called("Dispatch"), h.called("Infer"), h.called("Collect"), h.called("Archive"))
	}
}

func TestPermissionDeniedAtAuthorize(t *testing.T) {
	h := newHarness(t)
	const msg = "mallory has no role in tenant demo"
	h.in.Submitter = "mallory"
	h.authorize = func(context.Context, activities.AuthorizeInput) (activities.AuthorizeResult, error) {
		return activities.AuthorizeResult{}, temporal.NewNonRetryableApplicationError(msg, string(task.PermissionDenied), nil)
	}
	h.run()

	err := h.env.GetWorkflowError()
	if got := errType(err); got != string(task.PermissionDenied) {
		t.Fatalf("workflow error %v (type %q), want PermissionDenied", err, got)
	}
	if h.called("Authorize") != 1 || h.called("Screen") != 0 {
		t.Errorf("authorize called %d times, screen %d: a denial is not retried", h.called("Authorize"), h.called("Screen"))
	}
	st := h.status()
	h.wantAudit(st, step{task.Submitted, "mallory"}, step{task.Failed, "autoglm"})
	if st.LastError != msg || last(st).Reason != msg {
		t.Errorf("last error %q, reason %q; want %q", st.LastError, last(st).Reason, msg)
	}
	if h.called("Archive") != 1 {
		t.Errorf("the report of a failed task is written too; archive called %d times", h.called("Archive"))
	}
}

func TestInferenceRetriedThenCompleted(t *testing.T) {
	h := newHarness(t)
	h.screening.AutoApprove = true
	next := h.infer
	h.infer = func(ctx context.Context, in activities.InferInput) (activities.InferResult, error) {
		if h.called("Infer") <= 2 {
			return activities.InferResult{}, temporal.NewApplicationError("429 Too Many Requests", string(task.RateLimited))
		}
		return next(ctx, in)
	}
	h.run()

	if res := h.result(); res.State != task.Completed {
		t.Errorf("state %s", res.State)
	}
	if n := h.called("Infer"); n != 3 {
		t.Errorf("infer called %d times, want 3 (two rate-limited attempts, then success)", n)
	}
	if h.status().LastError != "" {
		t.Errorf("a retried error is not the task's error: %q", h.status().LastError)
	}
}

func TestInferenceNonRetryableFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"marked non-retryable", temporal.NewNonRetryableApplicationError("the prompt is 40000 tokens, over the 32768 the model takes", string(task.ContextLengthExceeded), nil)},
		// An activity that forgets to mark it is stopped by the
		// workflow's retry policy, which lists the type.
		{"listed as non-retryable", temporal.NewApplicationError("the prompt is 40000 tokens, over the 32768 the model takes", string(task.ContextLengthExceeded))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.screening.AutoApprove = true
			h.infer = func(context.Context, activities.InferInput) (activities.InferResult, error) {
				return activities.InferResult{}, tc.err
			}
			h.run()

			err := h.env.GetWorkflowError()
			if got := errType(err); got != string(task.ContextLengthExceeded) {
				t.Fatalf("workflow error %v (type %q), want ContextLengthExceeded", err, got)
			}
			if n := h.called("Infer"); n != 1 {
				t.Errorf("infer called %d times, want 1", n)
			}
			st := h.status()
			if st.State != task.Failed || last(st).Actor != "autoglm" || st.LastError == "" {
				t.Errorf("state %s, last %+v, last error %q", st.State, last(st), st.LastError)
			}
			// What was answered before the failure is kept.
			if h.called("Collect") != 1 || st.Progress.Counts.Completed != 7 {
				t.Errorf("collect called %d times, progress %+v", h.called("Collect"), st.Progress.Counts)
			}
		})
	}
}

func TestApprovalDeadlineExpires(t *testing.T) {
	h := newHarness(t)
	h.run()

	res := h.result()
	if res.State != task.Expired {
		t.Fatalf("state %s, want EXPIRED", res.State)
	}
	if waited := h.env.Now().Sub(h.startedAt); waited < 24*time.Hour {
		t.Errorf("expired after %s, before the 24h deadline", waited)
	}
	st := h.status()
	h.wantAudit(st, append(untilAwaiting, step{task.Expired, "timer"})...)
	if h.called("Dispatch") != 0 || h.called("Archive") != 1 {
		t.Errorf("dispatch %d, archive %d", h.called("Dispatch"), h.called("Archive"))
	}
}

func TestQuorumOfTwo(t *testing.T) {
	h := newHarness(t)
	h.rules.Quorum = 2
	var first, again, second *outcome
	h.at(awaiting, func() {
		first = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil)
	})
	h.at(awaiting+time.Minute, func() {
		again = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil)
	})
	h.at(awaiting+2*time.Minute, func() {
		second = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "rita"}, nil)
	})
	h.run()

	wantAccepted(t, first)
	if st := first.after; st.State != task.AwaitingApproval || len(st.Approvals) != 1 || last(st).Actor != "bob" || last(st).Reason != "approved (1 of 2)" {
		t.Errorf("after one of two approvals: %s, approvals %+v, last %+v", st.State, st.Approvals, last(st))
	}
	// The same reviewer twice does not make a quorum.
	wantRefused(t, again, task.InvalidInput)
	wantAccepted(t, second)
	if st := second.after; st.State != task.Approved || last(st).Actor != "rita" || last(st).Reason != "approved (2 of 2)" {
		t.Errorf("after two approvals: %s, last %+v", st.State, last(st))
	}
	if res := h.result(); res.State != task.Completed {
		t.Errorf("state %s", res.State)
	}
	st := h.status()
	if st.Quorum != 2 || len(st.Approvals) != 2 {
		t.Errorf("quorum %d, approvals %+v", st.Quorum, st.Approvals)
	}
	h.wantAudit(st, append(append(untilAwaiting, step{task.AwaitingApproval, "bob"}, step{task.Approved, "rita"}), fromDispatch...)...)
}
