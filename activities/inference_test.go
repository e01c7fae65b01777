package activities

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
)

// What ended an inference's context decides how it is reported: a
// request to cancel (a pause, a cancel, an activity paused) is a
// cancellation; a heartbeat the server refused (the attempt timed out and
// was replaced) or the attempt's own deadline is a fenced stop.
func TestRefusedHeartbeatIsFencedNotCanceled(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cause  error
		fenced bool
	}{
		{"cancel requested", temporal.NewCanceledError(), false},
		{"activity paused", activity.ErrActivityPaused, false},
		{"heartbeat refused: not found", serviceerror.NewNotFound("invalid activityID or activity already timed out or invoking workflow is completed"), true},
		{"deadline", context.DeadlineExceeded, true},
	} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(tc.cause)
		r := &reporter{ctx: ctx}
		err := r.live()
		if got := errors.Is(err, batch.ErrFenced); got != tc.fenced {
			t.Errorf("%s: live() = %v; want fenced %v", tc.name, err, tc.fenced)
		}
	}
	if err := (&reporter{ctx: context.Background()}).live(); err != nil {
		t.Errorf("a live attempt is told %v", err)
	}
}

// A gap between two heartbeats longer than the heartbeat timeout (the
// process was frozen) fences the attempt for good, even once heartbeats
// go out again, before the server says anything.
func TestHeartbeatLapseFencesTheAttempt(t *testing.T) {
	r := &reporter{ctx: context.Background(), timeout: 4 * time.Second}
	r.beat = time.Now().Add(-5 * time.Second)
	if err := r.live(); !errors.Is(err, batch.ErrFenced) {
		t.Fatalf("after 5s without a heartbeat (timeout 4s): %v; want Fenced", err)
	}
	r.mu.Lock()
	r.touch()
	r.mu.Unlock()
	if err := r.live(); !errors.Is(err, batch.ErrFenced) {
		t.Errorf("a heartbeat after the lapse made the attempt live again: %v", err)
	}
	fresh := &reporter{ctx: context.Background(), timeout: 4 * time.Second}
	fresh.beat = time.Now()
	if err := fresh.live(); err != nil {
		t.Errorf("an attempt that heartbeated just now is told %v", err)
	}
}
