package integration

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// TestHigherPriorityStartsFirstOnABusyNode builds a backlog on a node that
// runs one batch at a time, then checks the backlog drains in priority
// order, not in the order of submission.
func TestHigherPriorityStartsFirstOnABusyNode(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	m := testmodel.New(testmodel.Options{Faults: testmodel.Faults{Latency: 300 * time.Millisecond}})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	startWorker(t, workerOptions{Model: m, Concurrency: 1, MaxPieces: 1})

	// The blocker holds the node's only slot until the backlog has
	// formed: the model answers nothing before then.
	release := m.Hold()
	t.Cleanup(release)
	blocker := newID("prio-blocker")
	submit(t, ctx, taskclient.SubmitRequest{ID: blocker, Tenant: tenant, Submitter: "alice", File: writeBatch(t, "blocker", 10).path})
	waitState(t, ctx, blocker, task.Running)

	// Submitted lowest first, so that order of arrival and order of
	// priority disagree.
	priorities := []int{5, 5, 4, 1}
	ids := make([]string, len(priorities))
	for i, p := range priorities {
		ids[i] = newID(fmt.Sprintf("prio-%d", p))
		submit(t, ctx, taskclient.SubmitRequest{ID: ids[i], Tenant: tenant, Submitter: "alice", Model: "glm-4-test", Prompt: "which comes first?", Priority: p})
	}
	for _, id := range ids {
		waitState(t, ctx, id, task.Running)
	}
	if st := status(t, ctx, blocker); st.State.Final() {
		t.Fatalf("the blocker ended before the backlog formed (%s): the test shows nothing", st.State)
	}
	release()

	// The node runs one batch at a time, so the order in which the tasks
	// finished inference is the order in which they started.
	type done struct {
		id       string
		priority int
		at       time.Time
	}
	var order []done
	for i, id := range ids {
		wait(t, ctx, id)
		order = append(order, done{id, priorities[i], status(t, ctx, id).EnteredAt(task.Archiving)})
	}
	sort.Slice(order, func(i, j int) bool { return order[i].at.Before(order[j].at) })
	var got []int
	for _, d := range order {
		got = append(got, d.priority)
	}
	t.Logf("backlog drained in priority order %v (submitted as %v)", got, priorities)
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("priority %d started after priority %d: order %v", got[i], got[i-1], got)
		}
	}
}
