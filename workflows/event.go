package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// emitEnd emits the event of the task's final state, if it has one. A
// failure to emit is logged, never the task's failure.
func (w *taskRun) emitEnd(ctx workflow.Context) {
	typ := task.EventOf(w.in.Kind, w.status.State)
	if typ == "" {
		return
	}
	ev := task.Event{
		Tenant: w.in.Tenant, ID: "evt_" + w.in.ID + "_" + string(w.status.State), Type: typ,
		CreatedAt: workflow.Now(ctx).UTC(), Data: map[string]string{"id": w.in.ID, "state": string(w.status.State)},
	}
	if w.in.Kind == task.KindFineTune {
		// OpenAI's fine_tuning.job.* events name the job.
		ev.Data["id"] = task.FineTuneJobPrefix + w.in.ID
	}
	// The task may be ending because it was cancelled: emit on a context
	// that is not.
	ectx, _ := workflow.NewDisconnectedContext(ctx)
	ectx = workflow.WithActivityOptions(ectx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             "event " + typ,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: 20, NonRetryableErrorTypes: nonRetryable,
		},
	})
	// Short (a policy look-up, at most one workflow start): local, in the
	// closing workflow task, not one more round trip.
	opts := workflow.GetActivityOptions(ectx)
	ectx = workflow.WithLocalActivityOptions(ectx, workflow.LocalActivityOptions{
		StartToCloseTimeout: opts.StartToCloseTimeout, RetryPolicy: opts.RetryPolicy, Summary: opts.Summary,
	})
	if err := workflow.ExecuteLocalActivity(ectx, a.EmitEvent, ev).Get(ectx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("task end event not emitted to webhooks", "event", ev.ID, "error", err)
	}
}
