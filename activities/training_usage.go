package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// trainingUsageEvery is how often a training attempt brings its seconds
// in the usage ledger up to date: a node that dies loses at most this
// much of the tenant's GPU time from the count.
const trainingUsageEvery = time.Minute

// meterTraining records in the usage ledger how long this training
// attempt has held the node's training slot (the tenant's GPU time,
// which its max_training_seconds_per_day bounds), now and then while it
// runs; the returned func records the end. The record is the attempt's
// own (its key names the attempt), on the day the attempt started.
func (a *Activities) meterTraining(ctx context.Context, in TrainInput, attempt string) (end func()) {
	start := time.Now()
	rec := usage.Record{Task: in.TaskID, Tenant: in.Tenant, Model: in.Model, Day: usage.Day(start), Attempt: attempt}
	write := func(ctx context.Context) {
		rec.TrainingSeconds = time.Since(start).Seconds()
		if err := usage.Write(ctx, a.Store, rec); err != nil {
			activity.GetLogger(ctx).Warn("training seconds not recorded in the usage ledger", "error", err)
		}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(trainingUsageEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				write(ctx)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		// The attempt's end counts whatever ended it (a stop, a cancel).
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		write(wctx)
	}
}
