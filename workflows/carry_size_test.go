package workflows_test

import (
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestContinueAsNewCarriesAConstantState: a task waiting for approval is
// continued as new 20 times, each run taking one signed update (an audit
// transition and a nonce). What one run hands the next (the carry in the
// new run's input) stays the same size: the audit trail goes to the
// bucket and the carry keeps its reference and count; the nonces of runs
// past their expiry are dropped. The whole trail still reads back in
// order.
func TestContinueAsNewCarriesAConstantState(t *testing.T) {
	const runs = 20
	h := newHarness(t)
	h.rules.Quorum = 2
	h.suggestAt(awaiting)
	h.run()
	var sizes []int
	for i := range runs {
		h = h.continued()
		sizes = append(sizes, len(h.in.Carry))
		prio := 1 + i%2
		var set *outcome
		h.at(time.Minute, func() {
			set = h.update(task.UpdateSetPriority, task.DecisionRequest{Actor: "olga", Priority: prio}, nil)
		})
		// Past the assertion's expiry and leeway: its nonce cannot verify
		// any more, so the next carry need not remember it.
		h.suggestAt(5 * time.Minute)
		h.run()
		wantAccepted(t, set)
	}
	h = h.continued()
	sizes = append(sizes, len(h.in.Carry))
	h.at(time.Minute, func() { h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil) })
	h.at(2*time.Minute, func() { h.update(task.UpdateApprove, task.DecisionRequest{Actor: "rita"}, nil) })
	h.run()
	t.Logf("carried state, bytes, run by run: %v", sizes)

	// The first carry holds the first run's state before any trail was
	// kept; from the second on each holds one run's transition at most.
	// Times vary in length by a few bytes (trailing zeros of
	// nanoseconds); one transition is ~150.
	base := sizes[1]
	for i, n := range sizes[1:] {
		if n > base+32 || n < base-32 {
			t.Errorf("run %d carried %d bytes, run 2 carried %d: the carried state changes with the runs", i+2, n, base)
		}
	}
	if res := h.result(); res.State != task.Completed {
		t.Fatalf("result %+v", res)
	}
	var want []step
	want = append(want, untilAwaiting...)
	for range runs {
		want = append(want, step{task.AwaitingApproval, "olga"})
	}
	want = append(want, step{task.AwaitingApproval, "bob"}, step{task.Approved, "rita"})
	want = append(want, fromDispatch...)
	h.wantAudit(h.status(), want...)
	if raw := h.rawStatus(); raw.EarlierAudit == nil || raw.EarlierAudit.Transitions != len(untilAwaiting)+runs {
		t.Errorf("the last run's status points at %+v, want the %d transitions of the earlier runs", raw.EarlierAudit, len(untilAwaiting)+runs)
	}
}

// TestContinueAsNewCarriesTheTrailWholeWhenTheBucketFails: the bucket does
// not take the audit trail when the run continues as new; the run carries
// the trail whole that once, and the task goes on and completes with it.
func TestContinueAsNewCarriesTheTrailWholeWhenTheBucketFails(t *testing.T) {
	h := newHarness(t)
	h.trail.down = true
	h.suggestAt(awaiting)
	h.run()
	h2 := h.continued()
	h2.at(time.Minute, func() { h2.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob"}, nil) })
	h2.run()
	raw := h2.rawStatus()
	if raw.EarlierAudit != nil {
		t.Errorf("the status points at a trail in the bucket: %+v", raw.EarlierAudit)
	}
	if res := h2.result(); res.State != task.Completed {
		t.Fatalf("result %+v", res)
	}
	h2.wantAudit(raw, append(append(untilAwaiting, step{task.Approved, "bob"}), fromDispatch...)...)
}
