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
