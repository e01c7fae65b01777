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
func NotifyWorkflow(ctx workflow.Context, in task.Event) (task.NotifyResult, error) {
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
