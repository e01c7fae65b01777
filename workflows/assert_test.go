package workflows_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// errType is the Temporal application error type in err's chain.
func errType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return ""
}

// step is an audit entry as the tests compare them: times vary.
type step struct {
	To    task.State
	Actor string
}

func steps(audit []task.Transition) []step {
	var out []step
	for _, tr := range audit {
		out = append(out, step{tr.To, tr.Actor})
	}
	return out
}

// last is the newest audit entry.
func last(st task.Status) task.Transition {
	if len(st.Audit) == 0 {
		return task.Transition{}
	}
	return st.Audit[len(st.Audit)-1]
}

// byActor lists the audit entries actor made.
func byActor(st task.Status, actor string) []task.Transition {
	var out []task.Transition
	for _, tr := range st.Audit {
		if tr.Actor == actor {
			out = append(out, tr)
		}
	}
	return out
}

func (h *harness) wantAudit(st task.Status, want ...step) {
	h.t.Helper()
	if got := steps(st.Audit); !slices.Equal(got, want) {
		h.t.Errorf("audit trail:\n got  %v\n want %v", got, want)
	}
}

// wantRefused checks that o was refused with the error type want and left
// no trace: the same state, audit trail, approvals and priority as before.
func wantRefused(t *testing.T, o *outcome, want task.ErrorType) {
	t.Helper()
	if o == nil {
		t.Fatalf("the update that should be refused with %s was never sent", want)
	}
	if !o.refused() {
		t.Fatalf("%s by %s was accepted; want it refused with %s", o.name, o.req.Actor, want)
	}
	if got := errType(o.err); got != string(want) {
		t.Errorf("%s by %s refused with %q (%v); want %s", o.name, o.req.Actor, got, o.err, want)
	}
	// The task may move on by itself between the refusal and the status
	// read after it: what it must not show is a step, an approval or a
	// priority of the refused caller's.
	b, a := o.before, o.after
	grew := len(a.Audit) >= len(b.Audit) && slices.Equal(steps(a.Audit[:len(b.Audit)]), steps(b.Audit))
	traced := !grew || len(byActorIn(a.Audit[min(len(b.Audit), len(a.Audit)):], o.req.Actor)) > 0 ||
		len(a.Approvals) != len(b.Approvals) || (o.name == task.UpdateSetPriority && a.Priority != b.Priority)
	if traced {
		t.Errorf("refused %s by %s left a trace:\n before %s %v\n after  %s %v", o.name, o.req.Actor, b.State, steps(b.Audit), a.State, steps(a.Audit))
	}
}

func wantAccepted(t *testing.T, o *outcome) {
	t.Helper()
	if o == nil {
		t.Fatal("the update that should be accepted was never sent")
	}
	if !o.accepted || o.err != nil {
		t.Fatalf("%s by %s: accepted %v, error %v; want it accepted", o.name, o.req.Actor, o.accepted, o.err)
	}
}

func (s step) String() string { return fmt.Sprintf("%s/%s", s.To, s.Actor) }

func byActorIn(audit []task.Transition, actor string) []task.Transition {
	var out []task.Transition
	for _, tr := range audit {
		if tr.Actor == actor {
			out = append(out, tr)
		}
	}
	return out
}
