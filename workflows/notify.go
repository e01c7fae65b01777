package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Delivery of one event to one subscriber is retried with backoff for up
// to webhookPatience, as OpenAI retries its own webhooks for 72 hours.
const (
	webhookPatience    = 72 * time.Hour
	webhookMaxInterval = 30 * time.Second
)

// NotifyWorkflow delivers one event to each of the tenant's subscribers
// to its type, all at once, each retried until it is delivered or the
// patience runs out; a receiver that is down loses nothing. The result is
// the audit trail of the deliveries.
func NotifyWorkflow(ctx workflow.Context, in task.EventInput) (task.NotifyResult, error) {
	res := task.NotifyResult{Event: in.ID, Type: in.Type}
	listCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 10, NonRetryableErrorTypes: nonRetryable},
	})
	var subs activities.ListSubscribersResult
	if err := workflow.ExecuteActivity(listCtx, a.ListSubscribers, in).Get(ctx, &subs); err != nil {
		return res, err
	}
	sendCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: webhookPatience,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: webhookMaxInterval,
			NonRetryableErrorTypes: nonRetryable,
		},
	})
	futures := make([]workflow.Future, len(subs.Names))
	for i, name := range subs.Names {
		opts := workflow.GetActivityOptions(sendCtx)
		opts.Summary = in.Type + " to " + name
		futures[i] = workflow.ExecuteActivity(workflow.WithActivityOptions(sendCtx, opts), a.DeliverWebhook, activities.DeliverInput{Event: in, Subscriber: name})
	}
	for i, f := range futures {
		var d task.Delivery
		if err := f.Get(ctx, &d); err != nil {
			d = task.Delivery{Subscriber: subs.Names[i], Time: workflow.Now(ctx).UTC(), Error: message(err)}
		}
		res.Deliveries = append(res.Deliveries, d)
	}
	return res, nil
}

// notifyChange is the workflow.GetVersion change ID of announcing a task's
// end to webhooks: tasks that started before it replay without it.
const notifyChange = "fleet-webhooks"

// announce emits the event of the task's final state, if it has one. A
// failure to emit is logged, never the task's failure.
func (w *taskRun) announce(ctx workflow.Context) {
	if workflow.GetVersion(ctx, notifyChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	if typ := task.EventOf(w.status.State); typ != "" {
		w.emit(ctx, typ)
	}
}

// approvalEventsChange makes the approval stage emit its events
// (awaiting_approval, approved); histories from before replay without.
const approvalEventsChange = "approval-events"

// announceApproval emits an event of the approval stage, so reviewers can
// be told a task waits for them, and submitters that it was approved.
func (w *taskRun) announceApproval(ctx workflow.Context, typ string) {
	if workflow.GetVersion(ctx, approvalEventsChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	w.emit(ctx, typ)
}

// emit sends event typ of the task, once: its ID is the task's and the
// state's, however often the workflow gets here.
func (w *taskRun) emit(ctx workflow.Context, typ string) {
	ev := task.EventInput{
		Tenant: w.in.Tenant, ID: "evt_" + w.in.ID + "_" + string(w.status.State), Type: typ,
		CreatedAt: workflow.Now(ctx).UTC(), Data: map[string]string{"id": w.in.ID, "state": string(w.status.State)},
	}
	// The task may be ending because it was cancelled: emit on a context
	// that is not.
	ectx, _ := workflow.NewDisconnectedContext(ctx)
	ectx = workflow.WithActivityOptions(ectx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             "announce " + typ,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: 20, NonRetryableErrorTypes: nonRetryable,
		},
	})
	f := workflow.ExecuteActivity
	if w.speed >= 2 {
		// Short (a policy look-up, at most one workflow start): local,
		// in the same workflow task, not one more round trip.
		opts := workflow.GetActivityOptions(ectx)
		ectx = workflow.WithLocalActivityOptions(ectx, workflow.LocalActivityOptions{
			StartToCloseTimeout: opts.StartToCloseTimeout, RetryPolicy: opts.RetryPolicy, Summary: opts.Summary,
		})
		f = workflow.ExecuteLocalActivity
	}
	if err := f(ectx, a.EmitEvent, ev).Get(ectx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("event not announced to webhooks", "event", ev.ID, "error", err)
	}
}
