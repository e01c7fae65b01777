package client

import (
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestWatchShowsNoStateWithoutItsAuditLine: the server's changes of a task
// that ended while no worker answered its status query at once: the final
// state first without audit lines, then (in the end) ARCHIVING and
// COMPLETED with their actors. Watch shows each transition once, each
// with its actor and reason, and no bare COMPLETED ahead of ARCHIVING.
func TestWatchShowsNoStateWithoutItsAuditLine(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	early := []task.Transition{
		{Time: at, To: task.Submitted, Actor: "alice", Reason: "submitted"},
		{Time: at, To: task.Running, Actor: "dispatch", Reason: "inference on node n1"},
	}
	late := []task.Transition{
		{Time: at, To: task.Archiving, Actor: "autoglm", Reason: "archiving outputs and report"},
		{Time: at, To: task.Completed, Actor: "autoglm", Reason: "1 completed, 0 failed"},
	}
	changes := []server.Change{
		{State: task.Running, Transitions: early},
		{State: task.Completed},
		{State: task.Completed, Result: &task.Result{State: task.Completed}, AuditFrom: 2, Transitions: late},
		// A watcher that joined again sees the whole trail once more.
		{State: task.Completed, Transitions: append(append([]task.Transition(nil), early...), late...)},
	}
	var got []task.Transition
	audit := 0
	for _, e := range changes {
		audit = transitions(e, audit, func(u Change) { got = append(got, *u.Transition) })
	}
	want := append(append([]task.Transition(nil), early...), late...)
	if len(got) != len(want) {
		t.Fatalf("watch showed %d lines, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i+1, got[i], want[i])
		}
	}
}
