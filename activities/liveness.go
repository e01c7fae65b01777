package activities

import (
	"context"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// pollerFreshFor is how recently a node must have polled its queue to
// count as alive: a live worker's long poll lasts about a minute before
// it polls again.
const pollerFreshFor = 90 * time.Second

// Liveness sets each node's LastSeen to when a worker of it last polled
// its node queue, as the Temporal server saw (DescribeTaskQueue), so that
// liveness needs no periodic writes. Without a Temporal client the
// records' own times stand.
func (a *Activities) Liveness(ctx context.Context, nodes []Node) ([]Node, error) {
	if a.Temporal == nil {
		return nodes, nil
	}
	for i, n := range nodes {
		resp, err := a.Temporal.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace:     namespaceOf(a),
			TaskQueue:     &taskqueuepb.TaskQueue{Name: task.NodeQueue(n.Name), Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: enumspb.TASK_QUEUE_TYPE_ACTIVITY,
		})
		if err != nil {
			return nil, err
		}
		var last time.Time
		for _, p := range resp.GetPollers() {
			if t := p.GetLastAccessTime().AsTime(); t.After(last) {
				last = t
			}
		}
		// The poller times are the truth; a record written a moment ago
		// (a node that just started) also counts until its first poll shows.
		if last.IsZero() && time.Since(nodes[i].LastSeen) < pollerFreshFor {
			continue
		}
		nodes[i].LastSeen = last
	}
	return nodes, nil
}

// LiveNodes is Nodes with each LastSeen from Liveness: what any check of
// "does a live node serve this" must read, since records are no longer
// rewritten on a clock.
func (a *Activities) LiveNodes(ctx context.Context) ([]Node, error) {
	nodes, err := a.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	return a.Liveness(ctx, nodes)
}

// Alive tells whether the node polled its queue recently.
func (n Node) Alive(now time.Time) bool { return now.Sub(n.LastSeen) < pollerFreshFor }

func namespaceOf(a *Activities) string {
	if a.Namespace != "" {
		return a.Namespace
	}
	return "default"
}

// modelNode is the Node a piece sent to a model's queue is dispatched to:
// any node serving the model.
func modelNode(model string) string { return anyNodePrefix + model }

const anyNodePrefix = "any:"

// AnyNode reports whether d sends the work to its model's queue, where
// whichever node serving the model takes it first: which one, only the
// attempt that runs knows.
func (d DispatchResult) AnyNode() bool { return strings.HasPrefix(d.Node, anyNodePrefix) }

// Where is d as a person reads it: "node n1", or "any node serving m".
func (d DispatchResult) Where() string {
	if d.AnyNode() {
		return "any node serving " + strings.TrimPrefix(d.Node, anyNodePrefix)
	}
	return "node " + d.Node
}

// route chooses where the piece runs once pick found a node for it: the
// model's own queue, where every node serving it polls and Temporal
// balances the work and hands a retried piece to whichever node is alive;
// or one node's queue, when some (not all) live nodes hold the model in
// their cache (they start sooner), or when the piece must avoid nodes: the
// other pieces of its task (pinned pieces spread over the nodes) or a
// queue that did not start it in time.
func route(nodes []Node, best Node, in DispatchInput, now time.Time) DispatchResult {
	var serving, cached []Node
	for _, n := range nodes {
		if !n.Alive(now) || n.Drained || !slices.Contains(n.Models, in.Model) {
			continue
		}
		serving = append(serving, n)
		if slices.ContainsFunc(n.Cached, func(c string) bool { return strings.HasPrefix(c, in.Model+"@") }) {
			cached = append(cached, n)
		}
	}
	switch {
	case len(cached) > 0 && len(cached) < len(serving):
		slices.SortStableFunc(cached, func(x, y Node) int { return int(x.Running - y.Running) })
		return DispatchResult{Node: cached[0].Name, Queue: cached[0].Queue}
	case len(serving) == 0 || len(in.Avoid) > 0:
		return DispatchResult{Node: best.Name, Queue: best.Queue}
	}
	return DispatchResult{Node: modelNode(in.Model), Queue: task.ModelQueue(in.Model)}
}
