package workflows_test

import (
	"context"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/activities"
)

// gateArchive holds the Archive stub until the returned function is
// called, so a test can act on a task in its final state while the
// workflow is still open.
func (h *harness) gateArchive() (open func()) {
	gate := make(chan struct{})
	next := h.archive
	h.archive = func(ctx context.Context, in activities.ArchiveInput) (activities.ArchiveResult, error) {
		select {
		case <-gate:
		case <-time.After(5 * time.Second):
			return activities.ArchiveResult{}, temporal.NewNonRetryableApplicationError("the test never opened the archive gate", "TestBug", nil)
		}
		return next(ctx, in)
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			close(gate)
		}
	}
}

// blocker is an inference attempt that runs until its context is
// cancelled (the SDK cancels it when a heartbeat finds the activity
// cancelled) or the test releases it.
type blocker struct {
	release  chan struct{}
	returned chan error // what the blocked attempt returned
	freed    atomic.Bool
}

func (b *blocker) free() {
	if b.freed.CompareAndSwap(false, true) {
		close(b.release)
	}
}

// blockFirstInfer makes the first attempt of the first inference
// activity the workflow starts block; every other attempt answers as
// before.
//
// The blocked attempt is chosen by its ActivityID, not by being the first
// call of the stub: after a pause and a resume the workflow starts a second
// inference activity while the goroutine of the first may not yet have
// reached the stub (the test environment runs each activity on its own
// goroutine). Counting calls then blocked the resumed activity, which
// nothing ever cancels or frees, and the workflow waited on it until the
// hang guard fired.
func (h *harness) blockFirstInfer() *blocker {
	b := &blocker{release: make(chan struct{}), returned: make(chan error, 1)}
	h.t.Cleanup(b.free)
	answer := h.infer
	h.infer = func(ctx context.Context, in activities.InferInput) (activities.InferResult, error) {
		if !h.isFirstAttempt(ctx) {
			return answer(ctx, in)
		}
		for {
			activity.RecordHeartbeat(ctx, "checkpoint")
			select {
			case <-ctx.Done():
				b.returned <- ctx.Err()
				// As activities.Infer does, end a cancelled attempt with
				// a CanceledError. The test environment cancels the
				// context through a failed heartbeat, so a bare ctx.Err()
				// would be reported as a retryable failure and the
				// cancelled activity run again after its backoff.
				return activities.InferResult{}, temporal.NewCanceledError()
			case <-b.release:
				b.returned <- nil
				return answer(ctx, in)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return b
}

// whenInferStarts runs f in the main loop when the first inference
// attempt has started and the task is RUNNING.
func (h *harness) whenInferStarts(f func()) {
	var once atomic.Bool
	h.onStart["Infer"] = func(int32) {
		if once.CompareAndSwap(false, true) {
			f()
		}
	}
}
