package fleetclient

import (
	"context"
	"time"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// NodeView is one node as `autoglm nodes` shows it.
type NodeView struct {
	activities.Node
	// Alive: a worker of the node polled its queue within the last 90 s.
	Alive bool `json:"alive"`
}

// Nodes lists the fleet's nodes (fleet operators): each node's
// record, with its last sign of life from the Temporal server.
func (c *Client) Nodes(ctx context.Context, user, namespace string) ([]NodeView, error) {
	if err := c.checkFleet(user); err != nil {
		return nil, err
	}
	acts := &activities.Activities{Store: c.Store, Temporal: c.Temporal, Namespace: namespace}
	nodes, err := acts.LiveNodes(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	views := make([]NodeView, len(nodes))
	for i, n := range nodes {
		views[i] = NodeView{Node: n, Alive: n.Alive(now)}
	}
	return views, nil
}

// Drain stops one node taking new work, or lets it take work again: a
// fleet command on that node alone, in the audit trail like any other.
func (c *Client) Drain(ctx context.Context, user, node string, drain bool) (task.FleetResult, error) {
	action := task.ActionUndrain
	if drain {
		action = task.ActionDrain
	}
	return c.Exec(ctx, user, task.FleetCommand{Action: action, Selector: task.Selector{"node": node}})
}
