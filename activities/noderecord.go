package activities

import (
	"context"
	"reflect"
	"slices"
	"sort"
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

// Serves tells whether the node serves the model. A fine-tuned model is
// served only by a node that has loaded it into its model server and says
// so in its record, never by one that merely serves its base model or
// every model ("*").
func (n Node) Serves(model string) bool {
	return slices.Contains(n.Models, model) || !task.IsFineTuned(model) && slices.Contains(n.Models, "*")
}
