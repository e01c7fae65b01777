package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A rejected task closes as a failed execution whose type is the state
// and whose details are the result, so the Web UI lists it apart from a
// completed one and clients still read the result.
func TestRejectedTaskClosesFailedWithItsResult(t *testing.T) {
	h := newHarness(t)
	h.at(awaiting, func() {
		h.update(task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: "no"}, nil)
	})
	h.run()
	var res task.Result
	err := h.env.GetWorkflowResult(&res)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != string(task.Rejected) || !ae.NonRetryable() {
		t.Fatalf("workflow error %v; want a non-retryable application error of type REJECTED", err)
	}
	out, ok := task.Outcome(err)
	if !ok || out.State != task.Rejected || out.Reason != "no" || out.ID != "t1" {
		t.Errorf("task.Outcome = %+v, %v; want the REJECTED result", out, ok)
	}
}

// The approval deadline's timer is cancelled when a decision ends the
// wait, and fires (uncancelled) only when nobody decides. (The test
// environment reports a rejected task's timer as fired when the workflow
// closes in the same task; TestRecordedHistoriesCloseEveryTimer checks
// the rejected and cancelled ones on the real server's histories.)
func TestApprovalTimerIsCancelledWhenTheWaitEnds(t *testing.T) {
	for _, tc := range []struct {
		name            string
		decide          string
		cancelled, fire int
	}{
		{"approved", task.UpdateApprove, 1, 0},
		{"nobody decides", "", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var cancelled, fired int
			h.env.SetOnTimerCanceledListener(func(string) { cancelled++ })
			h.env.SetOnTimerFiredListener(func(string) { fired++ })
			if tc.decide != "" {
				h.at(awaiting, func() { h.update(tc.decide, task.DecisionRequest{Actor: "bob"}, nil) })
			}
			h.run()
			if cancelled != tc.cancelled || fired < tc.fire || (tc.fire == 0 && fired != 0) {
				t.Errorf("timers cancelled %d, fired %d; want %d cancelled and %d fired", cancelled, fired, tc.cancelled, tc.fire)
			}
			if tc.decide == "" && h.result().State != task.Expired {
				t.Errorf("state %s; want EXPIRED", h.result().State)
			}
		})
	}
}

func TestCancelledAndExpiredAlsoCloseFailed(t *testing.T) {
	h := newHarness(t)
	h.run() // nobody decides: the deadline expires the task
	if _, ok := task.Outcome(h.env.GetWorkflowError()); !ok {
		t.Errorf("expired task closed with %v; want an EXPIRED outcome error", h.env.GetWorkflowError())
	}
	h = newHarness(t)
	h.at(awaiting, func() { h.update(task.UpdateCancel, task.DecisionRequest{Actor: "olga", Reason: "r"}, nil) })
	h.run()
	if out, ok := task.Outcome(h.env.GetWorkflowError()); !ok || out.State != task.Cancelled {
		t.Errorf("cancelled task closed with %v; want a CANCELLED outcome error", h.env.GetWorkflowError())
	}
}

// Every timer of a task recorded on the real stack
// ends fired or cancelled: the Web UI shows no finished task with a timer
// still "Started".
func TestRecordedHistoriesCloseEveryTimer(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "task_*.json"))
	if len(files) == 0 {
		t.Fatal("no task_*.json histories in testdata")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var h struct {
			Events []struct {
				EventType string `json:"eventType"`
			} `json:"events"`
		}
		if err := json.Unmarshal(b, &h); err != nil {
			t.Fatal(err)
		}
		open := 0
		for _, e := range h.Events {
			switch e.EventType {
			case "EVENT_TYPE_TIMER_STARTED":
				open++
			case "EVENT_TYPE_TIMER_FIRED", "EVENT_TYPE_TIMER_CANCELED":
				open--
			}
		}
		if open != 0 || len(h.Events) == 0 {
			t.Errorf("%s: %d timer(s) left open in %d events", f, open, len(h.Events))
		}
	}
}

// The Screen activity's input, which the Web UI shows, carries the limits
// screening needs and not the tenant's members and roles.
func TestScreenInputCarriesNoPolicy(t *testing.T) {
	h := newHarness(t)
	var in activities.ScreenInput
	seen := false
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		if info.ActivityType.Name == "Screen" {
			seen = args.Get(&in) == nil
		}
	})
	// A small input is screened in a local activity.
	h.env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, args []any) {
		if info.ActivityType.Name == "Screen" && len(args) == 1 {
			in, seen = args[0].(activities.ScreenInput)
		}
	})
	h.run()
	if !seen {
		t.Fatal("Screen did not run")
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	p := authz.Default()
	for user := range p.Tenants[tenant].Users {
		if user != submitter && strings.Contains(string(b), `"`+user+`"`) {
			t.Errorf("Screen's input names %s, a member who did not act: %s", user, b)
		}
	}
	for _, w := range p.Screening.SensitiveWords {
		if strings.Contains(string(b), w) {
			t.Errorf("Screen's input carries the screening word %q: %s", w, b)
		}
	}
	if in.Rules.HeartbeatTimeout != time.Second {
		t.Errorf("Screen's input lost the limits: %+v", in.Rules)
	}
}
