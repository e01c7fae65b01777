package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

var agent *activities.NodeAgent

// FleetCommandWorkflow runs one action on every live node the selector
// picks: one activity per node, on that node's own queue, at most
// Concurrency at once, each bounded by NodeTimeout from when it is sent
// (a dead node's part times out in its queue). Each node ends ok, failed
// or timed out with its reason; the result, with who ran it, is also kept
// in the bucket. Some nodes failing is a partial result, not a failed
// workflow.
func FleetCommandWorkflow(ctx workflow.Context, cmd task.FleetCommand) (task.FleetResult, error) {
	// Selector.String ranges over a map but sorts the keys first.
	res := task.FleetResult{ID: cmd.ID, Actor: cmd.Actor, Action: cmd.Action, Selector: cmd.Selector.String()} //workflowcheck:ignore
	if cmd.Concurrency <= 0 {
		cmd.Concurrency = task.DefaultFleetConcurrency
	}
	if cmd.NodeTimeout <= 0 {
		cmd.NodeTimeout = task.DefaultNodeTimeout
	}
	ctlCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: 5, NonRetryableErrorTypes: nonRetryable,
		},
	})
	var sel activities.SelectNodesResult
	if err := workflow.ExecuteActivity(ctlCtx, a.SelectNodes, cmd.Selector).Get(ctx, &sel); err != nil {
		return res, err
	}
	res.Nodes = make([]task.NodeOutcome, len(sel.Nodes))
	pending := workflow.NewSelector(ctx)
	inFlight := 0
	for i, node := range sel.Nodes {
		if inFlight == cmd.Concurrency {
			pending.Select(ctx)
			inFlight--
		}
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			TaskQueue:              task.NodeQueue(node),
			ScheduleToCloseTimeout: cmd.NodeTimeout,
			HeartbeatTimeout:       min(cmd.NodeTimeout, time.Minute),
			Summary:                fmt.Sprintf("%s on node %s", cmd.Action, node),
			// A node command is not retried blindly: the operator reads
			// the reason and runs it again if it makes sense.
			RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
		})
		f := workflow.ExecuteActivity(actx, agent.RunNodeCommand, activities.NodeCommandInput{Action: cmd.Action, Args: cmd.Args})
		inFlight++
		pending.AddFuture(f, func(f workflow.Future) {
			var r activities.NodeCommandResult
			res.Nodes[i] = outcome(node, f.Get(ctx, &r), r.Detail)
		})
	}
	for ; inFlight > 0; inFlight-- {
		pending.Select(ctx)
	}
	for _, n := range res.Nodes {
		switch n.Status {
		case task.NodeOK:
			res.OK++
		case task.NodeTimedOut:
			res.TimedOut++
		default:
			res.Failed++
		}
	}
	res.Partial = res.OK > 0 && res.OK < len(res.Nodes)
	workflow.SetCurrentDetails(ctx, res.Summary())
	err := workflow.ExecuteActivity(ctlCtx, a.RecordFleetAudit, res).Get(ctx, &res.Audit)
	return res, err
}

func outcome(node string, err error, detail string) task.NodeOutcome {
	var te *temporal.TimeoutError
	switch {
	case err == nil:
		return task.NodeOutcome{Node: node, Status: task.NodeOK, Detail: detail}
	case errors.As(err, &te):
		return task.NodeOutcome{Node: node, Status: task.NodeTimedOut, Reason: fmt.Sprintf("no answer within the node timeout (%s)", te.TimeoutType())}
	}
	return task.NodeOutcome{Node: node, Status: task.NodeFailed, Reason: message(err)}
}
