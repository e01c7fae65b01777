package activities

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// nodesPrefix is where each node keeps its record in the bucket; dispatch
// reads them. A bucket is the one thing every worker already shares, so the
// fleet needs no registry service of its own.
const nodesPrefix = "fleet/nodes/"

// NodeStaleAfter is how long a node's record counts as a sign of life.
const NodeStaleAfter = 45 * time.Second

// Node is a node's record: what it serves and how busy it is.
type Node struct {
	Name    string   `json:"name"`
	Queue   string   `json:"queue"`
	Models  []string `json:"models"`
	Labels  []string `json:"labels,omitempty"`
	Running int64    `json:"running"`
	// Capacity is how many pieces a queue of the node runs at once.
	Capacity int `json:"capacity,omitempty"`
	// TrainingSlots is how many fine-tuning jobs it trains at once, apart
	// from Capacity; Training how many it trains now.
	TrainingSlots int   `json:"training_slots,omitempty"`
	Training      int64 `json:"training,omitempty"`
	// Drained nodes take no new work (`autoglm nodes drain`).
	Drained bool `json:"drained,omitempty"`
	// Cached are the model revisions in the node's cache, name@revision.
	Cached []string `json:"cached,omitempty"`
	// LastSeen is when the record was written; Liveness replaces it with
	// when the node last polled its queue.
	LastSeen time.Time `json:"last_seen"`
}

// running counts the pieces this worker runs, for its node record;
// training the fine-tuning jobs it trains.
var running, training atomic.Int64

// Announce writes this node's record when what it says changed (models,
// labels, running pieces, drain, cache) and at start, not on a clock: in
// a versioned bucket a record rewritten every 10 s kept 8,640 versions a
// day. Liveness comes from the node queue's pollers (see Liveness).
func (a *Activities) Announce(ctx context.Context) error {
	n := Node{Name: a.Node, Queue: task.NodeQueue(a.Node), Models: a.Models, Labels: a.Labels, Running: running.Load(), Capacity: a.Capacity, Drained: drained.Load(),
		TrainingSlots: a.TrainingSlots, Training: training.Load()}
	if a.FineTuned != nil {
		n.Models = append(slices.Clip(n.Models), a.FineTuned()...)
	}
	if a.Cached != nil {
		n.Cached = a.Cached()
	}
	announced.Lock()
	defer announced.Unlock()
	if last, ok := announced.last[a.Node]; ok && reflect.DeepEqual(last, n) {
		return nil
	}
	written := n
	n.LastSeen = time.Now().UTC()
	if _, err := a.putJSON(ctx, nodesPrefix+a.Node+".json", storage.Data, n); err != nil {
		return err
	}
	if announced.last == nil {
		announced.last = map[string]Node{}
	}
	announced.last[a.Node] = written
	return nil
}

// AnnounceStart writes the node record whatever this process wrote
// before, so that a worker's start shows in its record's LastSeen (a
// worker restarted in the same process announces itself again).
func (a *Activities) AnnounceStart(ctx context.Context) error {
	announced.Lock()
	delete(announced.last, a.Node)
	announced.Unlock()
	return a.Announce(ctx)
}

// announced is the record this process last wrote, by node.
var announced struct {
	sync.Mutex
	last map[string]Node
}

// Nodes lists the node records in the bucket, fresh or not, by name.
func (a *Activities) Nodes(ctx context.Context) ([]Node, error) {
	infos, err := a.Store.List(ctx, nodesPrefix)
	if err != nil {
		return nil, err
	}
	var nodes []Node
	for _, in := range infos {
		var n Node
		if err := a.getJSON(ctx, in.Key, &n); err != nil {
			continue // a node rewriting its record; it will be read next time
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes, nil
}

// DispatchInput names what the task needs of a node.
type DispatchInput struct {
	TaskID string `json:"task_id"`
	Model  string `json:"model"`
	// Avoid are nodes chosen only if no other node serves the model: one
	// that just failed the task, or those already running its other pieces.
	Avoid []string `json:"avoid,omitempty"`
	// Approved, if set, is the autoglm.task.approved event of a task
	// reviewers approved, for its first dispatch to emit.
	Approved *task.EventInput `json:"approved,omitempty"`
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

// Serves tells whether the node serves the model. A fine-tuned model is
// served only by a node that has loaded it into its model server and says
// so in its record, never by one that merely serves its base model or
// every model ("*").
func (n Node) Serves(model string) bool {
	return slices.Contains(n.Models, model) || !task.IsFineTuned(model) && slices.Contains(n.Models, "*")
}

// errNoNode is retryable on purpose: a node may come up.
var errNoNode = fmt.Errorf("%s", task.NoNode)
