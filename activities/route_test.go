package activities

import (
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestRouteUsesTheModelQueueUnlessSomeNodesHoldTheModelCached(t *testing.T) {
	now := time.Now()
	nodes := []Node{
		{Name: "a", Queue: task.NodeQueue("a"), Models: []string{"m"}, Running: 2, LastSeen: now},
		{Name: "b", Queue: task.NodeQueue("b"), Models: []string{"m"}, Running: 0, LastSeen: now},
		{Name: "c", Queue: task.NodeQueue("c"), Models: []string{"m"}, Drained: true, Cached: []string{"m@main"}, LastSeen: now},
	}
	in := DispatchInput{Model: "m"}
	if r := route(nodes, nodes[1], in, now); r.Queue != task.ModelQueue("m") {
		t.Fatalf("no node holds m cached: routed to %+v, want the model's queue", r)
	}
	nodes[0].Cached = []string{"m@main"}
	if r := route(nodes, nodes[1], in, now); r.Node != "a" || r.Queue != task.NodeQueue("a") {
		t.Fatalf("only a (live, not drained) holds m cached: routed to %+v, want a", r)
	}
	nodes[1].Cached = []string{"m@main"}
	if r := route(nodes, nodes[1], in, now); r.Queue != task.ModelQueue("m") {
		t.Fatalf("every serving node holds m: routed to %+v, want the model's queue", r)
	}
	in.Avoid = []string{modelNode("m")}
	if r := route(nodes, nodes[1], in, now); r.Node != "b" {
		t.Fatalf("the model's queue did not start the piece: routed to %+v, want the picked node b", r)
	}
}

// A fine-tuned model goes only to a node that announced it (it loaded the
// adapter), never to one that serves its base or every model.
func TestPickSendsAFineTunedModelOnlyToNodesThatLoadedIt(t *testing.T) {
	now := time.Now()
	ft := task.FineTunedName("m", "demo", "x", "t1")
	nodes := []Node{
		{Name: "base", Models: []string{"m"}, LastSeen: now},
		{Name: "wild", Models: []string{"*"}, LastSeen: now},
	}
	if n, err := pick(nodes, ft, nil, now); err == nil {
		t.Fatalf("picked %s for %s; no node loaded it", n.Name, ft)
	}
	nodes = append(nodes, Node{Name: "lora", Models: []string{"m", ft}, Running: 9, LastSeen: now})
	if n, err := pick(nodes, ft, nil, now); err != nil || n.Name != "lora" {
		t.Fatalf("picked %s, %v; want lora, the only node that loaded %s", n.Name, err, ft)
	}
	if n, err := pick(nodes, "m", nil, now); err != nil || n.Name == "lora" {
		t.Fatalf("the base model went to %s, %v; want a less busy node", n.Name, err)
	}
}
