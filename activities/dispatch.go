package activities

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// DispatchInput names what the task needs of a node.
type DispatchInput struct {
	TaskID string `json:"task_id"`
	Model  string `json:"model"`
	// Avoid are nodes chosen only if no other node serves the model: one
	// that just failed the task, or those already running its other pieces.
	Avoid []string `json:"avoid,omitempty"`
	// Approved, if set, is the autoglm.task.approved event of a task
	// reviewers approved, for its first dispatch to emit.
	Approved *task.Event `json:"approved,omitempty"`
	// Training asks for the model's training queue, which only nodes
	// with training slots poll, each while it has one free.
	Training bool `json:"training,omitempty"`
}

// DispatchResult is the chosen node and its task queue.
type DispatchResult struct {
	Node  string `json:"node"`
	Queue string `json:"queue"`
}

// Dispatch picks a live node that serves the model, the least busy first.
// No such node is a retryable NoNode error: one may start.
func (a *Activities) Dispatch(ctx context.Context, in DispatchInput) (DispatchResult, error) {
	if in.Approved != nil {
		a.emit(ctx, *in.Approved)
	}
	nodes, err := a.LiveNodes(ctx)
	if err != nil {
		return DispatchResult{}, err
	}
	now := time.Now()
	if in.Training {
		return pickTraining(nodes, in.Model, now)
	}
	n, err := pick(nodes, in.Model, in.Avoid, now)
	if err != nil {
		return DispatchResult{}, err
	}
	return route(nodes, n, in, now), nil
}

// pickTraining sends a fine-tuning job to its base model's training
// queue (task.TrainingQueue) once a live node that serves the model has
// training slots. Each such node polls that queue only while it has a
// slot free, so the job starts on one with a free slot, and waits in the
// queue (the job "queued") while every slot is taken: a full fleet makes
// it wait, not fail. No node with slots at all is a retryable NoNode.
func pickTraining(nodes []Node, model string, now time.Time) (DispatchResult, error) {
	var names []string
	for _, n := range nodes {
		if n.Alive(now) && !n.Drained && n.TrainingSlots > 0 && slices.Contains(n.Models, model) {
			return DispatchResult{Node: modelNode(model), Queue: task.TrainingQueue(model)}, nil
		}
		names = append(names, fmt.Sprintf("%s (%d training slot(s))", n.Name, n.TrainingSlots))
	}
	return DispatchResult{}, fmt.Errorf("%w: no live node that serves %s has a training slot (nodes known: %s)", errNoNode, model, strings.Join(names, ", "))
}

func pick(nodes []Node, model string, avoid []string, now time.Time) (Node, error) {
	var live []Node
	for _, n := range nodes {
		if n.Alive(now) && !n.Drained && n.Serves(model) {
			live = append(live, n)
		}
	}
	if len(live) == 0 {
		var names []string
		for _, n := range nodes {
			names = append(names, n.Name)
		}
		return Node{}, fmt.Errorf("%w: no live node serves %s (nodes known: %s)", errNoNode, model, strings.Join(names, ", "))
	}
	sort.SliceStable(live, func(i, j int) bool {
		ai, aj := slices.Contains(avoid, live[i].Name), slices.Contains(avoid, live[j].Name)
		if ai != aj {
			return aj
		}
		return live[i].Running < live[j].Running
	})
	return live[0], nil
}

// errNoNode is retryable on purpose: a node may come up.
var errNoNode = fmt.Errorf("%s", task.NoNode)
