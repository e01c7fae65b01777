package workflows_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// actions are the updates that check the caller's role, with the action of
// the role table each one asks for.
var actions = []struct {
	update string
	action authz.Action
}{
	{task.UpdateApprove, authz.Approve},
	{task.UpdateReject, authz.Reject},
	{task.UpdateCancel, authz.Cancel},
	{task.UpdatePause, authz.Pause},
	{task.UpdateResume, authz.Resume},
	{task.UpdateSetPriority, authz.SetPriority},
}

// callers are one user of each role of the default policy, the task's own
// submitter, and a user with no role.
var callers = []struct{ user, is string }{
	{"carol", "admin"},
	{"bob", "reviewer"},
	{"olga", "operator"},
	{"dave", "submitter, not of this task"},
	{"aldo", "auditor"},
	{submitter, "the task's submitter"},
	{"mallory", "no role"},
}

// pinned are expectations written out by hand, so that a wrong change to
// authz's table fails here even though the matrix follows that table.
var pinned = map[string]bool{
	"bob " + task.UpdateApprove:          true,  // a reviewer may approve
	"bob " + task.UpdateCancel:           false, // but not cancel
	"olga " + task.UpdateApprove:         false, // an operator may not approve
	"olga " + task.UpdatePause:           true,  // but may pause
	"carol " + task.UpdateSetPriority:    true,  // an admin may do anything
	"dave " + task.UpdateCancel:          false, // a submitter may not cancel another's task
	submitter + " " + task.UpdateCancel:  true,  // but may cancel their own
	submitter + " " + task.UpdateApprove: false, // and nobody approves their own task
	submitter + " " + task.UpdateReject:  false,
	"mallory " + task.UpdateCancel:       false,
}

func init() {
	// An auditor may view, and do nothing else.
	for _, a := range actions {
		pinned["aldo "+a.update] = false
	}
}

// TestRoleMatrix sends each update from each caller, at a moment when the
// update is valid in the task's state, and checks it is accepted or refused
// with PermissionDenied exactly as the role table says. A refusal must
// leave no trace.
func TestRoleMatrix(t *testing.T) {
	got := map[string]bool{}
	for _, a := range actions {
		for _, c := range callers {
			t.Run(fmt.Sprintf("%s/%s (%s)", a.update, c.user, c.is), func(t *testing.T) {
				want := authz.Allowed(tenant, c.user, rolesOf(c.user), a.action, submitter) == nil
				o := matrixCell(t, a.update, c.user)
				if want {
					wantAccepted(t, o)
				} else {
					wantRefused(t, o, task.PermissionDenied)
				}
				got[c.user+" "+a.update] = o.accepted
			})
		}
	}
	for cell, want := range pinned {
		if g, ok := got[cell]; !ok {
			t.Errorf("%s: not in the matrix", cell)
		} else if g != want {
			t.Errorf("%s: accepted %v, want %v", cell, g, want)
		}
	}
}

// matrixCell runs one task, sends update from user when the task is in a
// state that update applies to, then drives the task to an end, and
// returns what became of the update.
func matrixCell(t *testing.T, update, user string) *outcome {
	h := newHarness(t)
	req := task.DecisionRequest{Actor: user, Reason: "matrix", Priority: 1}
	admin := task.DecisionRequest{Actor: "carol", Reason: "end of the test"}
	var o *outcome
	switch update {
	case task.UpdatePause:
		h.screening.AutoApprove = true
		b := h.blockFirstInfer()
		h.whenInferStarts(func() {
			o = h.update(update, req, func(o *outcome) {
				b.free()
				if o.accepted {
					h.update(task.UpdateCancel, admin, nil)
				}
			})
		})
	case task.UpdateResume:
		h.screening.AutoApprove = true
		h.blockFirstInfer()
		h.whenInferStarts(func() { h.update(task.UpdatePause, admin, nil) })
		// The paused inference was cancelled: the task is PAUSED now.
		h.onCancel["Infer"] = func() {
			o = h.update(update, req, func(o *outcome) {
				if !o.accepted {
					h.update(task.UpdateCancel, admin, nil)
				}
			})
		}
	default:
		// Approve, reject, cancel and set-priority all apply to a task
		// waiting for approval; one that stays waiting expires.
		h.at(awaiting, func() { o = h.update(update, req, nil) })
	}
	h.run()
	if o == nil {
		t.Fatalf("%s by %s was never sent", update, user)
	}
	if o.refused() {
		if tr := byActor(h.status(), user); user != submitter && len(tr) > 0 {
			t.Errorf("refused %s by %s is in the audit trail: %+v", update, user, tr)
		}
		return o
	}
	// An accepted update did what it says.
	want := map[string]task.State{
		task.UpdateApprove: task.Completed, task.UpdateReject: task.Rejected, task.UpdateCancel: task.Cancelled,
		task.UpdatePause: task.Cancelled, task.UpdateResume: task.Completed, task.UpdateSetPriority: task.Expired,
	}[update]
	st := h.status()
	if st.State != want {
		t.Errorf("after %s by %s the task ended %s, want %s", update, user, st.State, want)
	}
	if update == task.UpdateSetPriority && st.Priority != 1 {
		t.Errorf("priority %d after set-priority 1", st.Priority)
	}
	if update == task.UpdatePause && o.after.State != task.Paused {
		t.Errorf("state %s right after pause, want PAUSED", o.after.State)
	}
	return o
}

// TestNobodyDecidesOwnTask: even a role that may approve and reject does
// not let its holder decide on a task they submitted. alice cannot show
// this, having no such role; carol, an admin, submits here.
func TestNobodyDecidesOwnTask(t *testing.T) {
	h := newHarness(t)
	h.in.Submitter = "carol"
	var approve, reject, other *outcome
	h.at(awaiting, func() {
		approve = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "carol"}, nil)
		reject = h.update(task.UpdateReject, task.DecisionRequest{Actor: "carol", Reason: "changed my mind"}, nil)
	})
	h.at(awaiting+time.Minute, func() {
		other = h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil)
	})
	h.run()

	wantRefused(t, approve, task.PermissionDenied)
	wantRefused(t, reject, task.PermissionDenied)
	wantAccepted(t, other)
	if res := h.result(); res.State != task.Completed {
		t.Errorf("state %s", res.State)
	}
}
