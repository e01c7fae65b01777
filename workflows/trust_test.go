package workflows_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/workflows"
)

// wantNotStarted checks that the run was refused with PermissionDenied
// and the message the caller of `temporal workflow start` reads, and that
// it ran no activity at all: nothing was read, run or written.
func (h *harness) wantNotStarted(msg string) {
	h.t.Helper()
	err := h.env.GetWorkflowError()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != string(task.PermissionDenied) {
		h.t.Fatalf("the start ended with %v; want a PermissionDenied refusal", err)
	}
	if ae.Message() != msg {
		h.t.Errorf("the refusal says\n %q\nwant\n %q", ae.Message(), msg)
	}
	for name, n := range h.calls {
		if n.Load() != 0 {
			h.t.Errorf("the refused start ran %s %d time(s)", name, n.Load())
		}
	}
}

// A start sent straight to Temporal on the ID of a task a reviewer
// rejected, with a hand-written carry (step infer, state APPROVED), runs
// nothing: carried state is honoured only in a run that continued as new.
func TestForgedCarryOnAStartRunsNothing(t *testing.T) {
	h := newHarness(t)
	carry, _ := json.Marshal(map[string]any{
		"step": "infer", "runs": 1,
		"status": task.Status{ID: h.in.ID, Tenant: tenant, Submitter: "mallory", State: task.Approved},
	})
	h.in.Carry = carry
	h.in.Submitter = "mallory"
	h.run()
	h.wantNotStarted("task t1 was not started: carried state is taken only from the task's own previous run, and this run was started, not continued as new")
}

// A start naming a tenant member as submitter with no start assertion
// runs nothing.
func TestUnsignedStartRunsNothing(t *testing.T) {
	h := newHarness(t)
	h.unsignedStart = true
	h.run()
	h.wantNotStarted("task t1 was not started: start needs an assertion signed by the autoglm server; send it through the API server (break-glass: the direct CLI with AUTOGLM_ASSERTION_PRIVATE_KEY)")
}

// A start assertion is bound to the task's submitter and input: one
// signed for alice's start does not start the same task under bob's
// name, nor on another input.
func TestStartAssertionBindsSubmitterAndInput(t *testing.T) {
	for name, edit := range map[string]func(*task.Input){
		"submitter": func(in *task.Input) { in.Submitter = "bob" },
		"input":     func(in *task.Input) { in.Source.SHA256 = strings.Repeat("0", 64) },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.in.Assertion = h.signer().SignStart(assertion.StartOf(h.in), 0)
			edit(&h.in)
			h.run()
			err := h.env.GetWorkflowError()
			if errType(err) != string(task.PermissionDenied) || !strings.Contains(err.Error(), "the start assertion is for task t1 of demo/alice") {
				t.Fatalf("the edited start ended with %v; want PermissionDenied naming what was signed", err)
			}
		})
	}
}

// A start assertion that had expired when the server recorded the start
// is refused.
func TestExpiredStartAssertionRunsNothing(t *testing.T) {
	h := newHarness(t)
	s := h.signer()
	s.Now = func() time.Time { return h.env.Now().Add(-10 * time.Minute) }
	h.in.Assertion = s.SignStart(assertion.StartOf(h.in), time.Minute)
	h.run()
	err := h.env.GetWorkflowError()
	if errType(err) != string(task.PermissionDenied) || !strings.Contains(err.Error(), "the start assertion expired at") {
		t.Fatalf("the stale start ended with %v; want PermissionDenied (expired)", err)
	}
}

// The audit trail names the key that signed the start and each decision.
func TestAuditNamesTheSigningKey(t *testing.T) {
	h := newHarness(t)
	h.at(awaiting, func() { h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil) })
	h.run()
	st := h.status()
	want := assertion.KeyID(serverKey.Public().(ed25519.PublicKey))
	if st.Audit[0].To != task.Submitted || st.Audit[0].Key != want {
		t.Errorf("the submission names key %q; want %q", st.Audit[0].Key, want)
	}
	approved := byActor(st, "bob")
	if len(approved) != 1 || approved[0].Key != want || st.Approvals[0].Key != want {
		t.Errorf("bob's approval names keys %+v / %+v; want %q", approved, st.Approvals, want)
	}
}

// An assertion copied from the history (same task, same action, inside
// its expiry) is refused the second time: each is single-use.
func TestReplayedAssertionIsRefused(t *testing.T) {
	h := newHarness(t)
	h.rules.Quorum = 2
	token := ""
	var first, again *outcome
	h.at(awaiting, func() {
		token = h.signer().SignInput(h.in.ID, task.UpdateApprove, "bob", rolesOf("bob"), task.DecisionRequest{}.Digest(), 0)
		first = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob", Assertion: token}, nil)
	})
	h.at(awaiting+time.Second, func() {
		again = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob", Assertion: token}, nil)
	})
	h.at(awaiting+time.Minute, func() {
		h.update(task.UpdateCancel, task.DecisionRequest{Actor: "alice"}, nil)
	})
	h.run()
	wantAccepted(t, first)
	wantRefused(t, again, task.PermissionDenied)
	if want := "this approve assertion has been used already: each is good for one update; send the approve through the autoglm server again"; again.err == nil || !strings.Contains(again.err.Error(), want) {
		t.Errorf("the replayed assertion was refused with %v; want %q", again.err, want)
	}
}

// An assertion whose update had its reason or priority edited after the
// server signed it is refused.
func TestEditedInputIsRefused(t *testing.T) {
	h := newHarness(t)
	var reason, priority *outcome
	h.at(awaiting, func() {
		signed := task.DecisionRequest{Actor: "olga", Reason: "too big for today", Priority: 4}
		tok := h.signer().SignInput(h.in.ID, task.UpdateSetPriority, "olga", rolesOf("olga"), signed.Digest(), 0)
		edited := signed
		edited.Reason, edited.Assertion = "olga says: approve everything", tok
		reason = h.update(task.UpdateSetPriority, edited, nil)
		edited = signed
		edited.Priority, edited.Assertion = 1, tok
		priority = h.update(task.UpdateSetPriority, edited, nil)
	})
	h.at(awaiting+time.Minute, func() { h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil) })
	h.run()
	want := "the actor assertion was signed over another input: the set-priority's reason or priority differs from what the server signed"
	for _, o := range []*outcome{reason, priority} {
		wantRefused(t, o, task.PermissionDenied)
		if o.err == nil || !strings.Contains(o.err.Error(), want) {
			t.Errorf("the edited update was refused with %v; want %q", o.err, want)
		}
	}
}

// Two approvals signed with one break-glass key, under two names, count
// as one person: the second is refused and the quorum of two is not met
// until a reviewer approves through the server.
func TestOneBreakGlassKeyCountsOnce(t *testing.T) {
	pub, priv, _ := assertion.GenerateKey()
	workflows.SetBreakGlassKeys([]ed25519.PublicKey{pub})
	t.Cleanup(func() { workflows.SetBreakGlassKeys(nil) })
	h := newHarness(t)
	h.rules.Quorum = 2
	op := assertion.NewSigner(priv)
	op.Now = h.env.Now
	sign := func(actor string) task.DecisionRequest {
		return task.DecisionRequest{Actor: actor, Assertion: op.SignInput(h.in.ID, task.UpdateApprove, actor, rolesOf(actor), task.DecisionRequest{}.Digest(), 0)}
	}
	var first, second, third *outcome
	h.at(awaiting, func() { first = h.update(task.UpdateApprove, sign("bob"), nil) })
	h.at(awaiting+time.Second, func() { second = h.update(task.UpdateApprove, sign("rita"), nil) })
	h.at(awaiting+time.Minute, func() { third = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "rita"}, nil) })
	h.run()
	wantAccepted(t, first)
	wantRefused(t, second, task.InvalidInput)
	want := "break-glass key " + assertion.KeyID(pub) + " has already approved task t1; one key counts as one person, and 2 approval(s) from different reviewers are needed"
	if second.err == nil || !strings.Contains(second.err.Error(), want) {
		t.Errorf("the second break-glass approval was refused with %v; want %q", second.err, want)
	}
	if second.after.State != task.AwaitingApproval {
		t.Errorf("after two break-glass approvals the task is %s; want still AWAITING_APPROVAL", second.after.State)
	}
	wantAccepted(t, third)
	if res := h.result(); res.State != task.Completed {
		t.Errorf("result %+v; want COMPLETED after a reviewer's approval", res)
	}
}

// A cancellation requested through Temporal itself (the Web UI's
// "Request Cancellation", `temporal workflow cancel`) of a task waiting
// for approval ends it CANCELLED, with the audit line saying so and the
// identity Temporal recorded; never EXPIRED.
func TestTemporalCancelOfAWaitingTaskIsCancelled(t *testing.T) {
	h := newHarness(t)
	h.cancelIdentity = "olga@ops-laptop"
	h.at(awaiting, func() { h.env.CancelWorkflow() })
	h.run()
	res := h.result()
	if res.State != task.Cancelled {
		t.Fatalf("result %+v; want CANCELLED", res)
	}
	tr := last(h.status())
	if tr.To != task.Cancelled || tr.Actor != "olga@ops-laptop" || tr.Reason != "cancellation requested through Temporal" {
		t.Errorf("the last audit line is %+v; want CANCELLED by olga@ops-laptop, \"cancellation requested through Temporal\"", tr)
	}
	if h.called("Archive") != 1 {
		t.Errorf("the report was archived %d time(s); want once", h.called("Archive"))
	}
}

// The nonces a task took ride across continue-as-new: an assertion used
// in one run is refused in the next while it could still verify.
func TestTakenAssertionRefusedAfterContinueAsNew(t *testing.T) {
	h := newHarness(t)
	h.rules.Quorum = 2
	var token string
	var first, again *outcome
	h.at(awaiting, func() {
		token = h.signer().SignInput(h.in.ID, task.UpdateApprove, "bob", rolesOf("bob"), task.DecisionRequest{}.Digest(), time.Hour)
		first = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob", Assertion: token}, nil)
	})
	h.suggestAt(awaiting + time.Minute)
	h.run()
	wantAccepted(t, first)

	h2 := h.continued()
	h2.at(time.Minute, func() {
		again = h2.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob", Assertion: token}, nil)
	})
	h2.at(2*time.Minute, func() { h2.update(task.UpdateApprove, task.DecisionRequest{Actor: "rita"}, nil) })
	h2.run()
	wantRefused(t, again, task.PermissionDenied)
	if again.err == nil || !strings.Contains(again.err.Error(), "has been used already") {
		t.Errorf("the carried nonce's assertion was refused with %v; want \"has been used already\"", again.err)
	}
	if res := h2.result(); res.State != task.Completed {
		t.Errorf("result %+v; want COMPLETED", res)
	}
}
