package activities

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A fine-tuning job goes to its base model's training queue only once a
// live, undrained node serving the model has training slots; nodes
// without slots, drained, dead or serving other models do not count, and
// none counting is a retryable NoNode naming each node's slots.
func TestPickTrainingNeedsANodeWithTrainingSlots(t *testing.T) {
	now := time.Now()
	nodes := []Node{
		{Name: "inference-only", Models: []string{"m"}, LastSeen: now},
		{Name: "drained", Models: []string{"m"}, TrainingSlots: 2, Drained: true, LastSeen: now},
		{Name: "dead", Models: []string{"m"}, TrainingSlots: 1, LastSeen: now.Add(-time.Hour)},
		{Name: "other-model", Models: []string{"n"}, TrainingSlots: 1, LastSeen: now},
	}
	_, err := pickTraining(nodes, "m", now)
	if !errors.Is(err, errNoNode) || !strings.Contains(err.Error(), "no live node that serves m has a training slot") || !strings.Contains(err.Error(), "inference-only (0 training slot(s))") {
		t.Fatalf("no node with a free slot: %v; want NoNode naming the nodes' slots", err)
	}
	nodes = append(nodes, Node{Name: "trainer", Models: []string{"m"}, TrainingSlots: 1, Training: 1, LastSeen: now})
	r, err := pickTraining(nodes, "m", now)
	if err != nil || r.Queue != task.TrainingQueue("m") || r.Node != modelNode("m") {
		t.Fatalf("a node with a slot (taken: the job waits in the queue): %+v, %v; want the model's training queue", r, err)
	}
}
