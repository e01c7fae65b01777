package taskclient

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// inferActivity is the activity type whose heartbeats carry progress.
const inferActivity = "Infer"

// addProgress adds what the running inference attempts have answered to
// the counts of the finished ones, which the status query holds. Progress
// travels in heartbeat details so that a long batch adds no events to the
// workflow's history; Temporal keeps the details of the last heartbeat of
// each pending activity, across retries.
func (c *Client) addProgress(ctx context.Context, st *task.Status) error {
	if st.State != task.Running && st.State != task.Paused && st.State != task.Dispatched {
		return nil
	}
	d, err := c.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(st.ID), "")
	if err != nil {
		return notFound(st.ID, err)
	}
	p := &st.Progress
	pieces := append([]task.Counts(nil), p.Pieces...)
	var waiting, storeWaiting time.Time
	nodes := map[int]string{}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityType().GetName() == trainActivity {
			trainProgress(st, pa.GetHeartbeatDetails().GetPayloads(), pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_SCHEDULED)
			st.Attempts = max(st.Attempts, int(pa.GetAttempt()))
			continue
		}
		if pa.GetActivityType().GetName() != inferActivity {
			continue
		}
		st.Attempts = max(st.Attempts, int(pa.GetAttempt()))
		var m batch.Mark
		pl := pa.GetHeartbeatDetails().GetPayloads()
		if len(pl) == 0 || converter.GetDefaultDataConverter().FromPayload(pl[0], &m) != nil || m.Piece < 0 || m.Piece > 1<<16 {
			continue
		}
		// The attempts a piece's head counts include hand-backs, which
		// start a new activity at attempt 1.
		st.Attempts = max(st.Attempts, m.Attempts)
		if m.Node != "" {
			nodes[m.Piece] = m.Node
		}
		if !m.StoreWaitingSince.IsZero() && (storeWaiting.IsZero() || m.StoreWaitingSince.Before(storeWaiting)) {
			storeWaiting = m.StoreWaitingSince
		}
		for len(pieces) <= m.Piece {
			pieces = append(pieces, task.Counts{})
		}
		// A piece's heartbeat counts from its checkpoint, so it supersedes
		// what the workflow heard from that piece's earlier attempt.
		if m.Counts.Done() > pieces[m.Piece].Done() {
			pieces[m.Piece] = m.Counts
		}
		if !m.WaitingSince.IsZero() && (waiting.IsZero() || m.WaitingSince.Before(waiting)) {
			waiting = m.WaitingSince
		}
	}
	var done task.Counts
	for _, c := range pieces {
		done.Completed += c.Completed
		done.Failed += c.Failed
	}
	if done.Done() > p.Done() {
		p.Completed, p.Failed = done.Completed, done.Failed
	}
	p.WaitingSince, p.StoreWaitingSince = waiting, storeWaiting
	st.Node = runningNodes(st.Node, nodes)
	if since := st.EnteredAt(task.Running); !since.IsZero() && p.Done() > 0 {
		if el := time.Since(since).Seconds(); el > 0 {
			p.RatePerSecond = float64(p.Done()) / el
			p.ETASeconds = float64(p.Total-p.Done()) / p.RatePerSecond
		}
	}
	return nil
}

// runningNodes names the nodes that run the pieces, as their heartbeats
// say, in piece order, before the nodes the workflow names. The workflow
// names the node each attempt reported when it ended, and a node queue's
// node; a piece sent to a model's queue runs on whichever node took it,
// which only its running attempt's heartbeat says (the workflow learns it
// at no cost in history events that way). Tasks from builds before the
// workflow named nodes show the queue as "any:<model>", left out here.
func runningNodes(dispatched string, running map[int]string) string {
	if len(running) == 0 {
		return dispatched
	}
	var names []string
	for _, piece := range slices.Sorted(maps.Keys(running)) {
		if !slices.Contains(names, running[piece]) {
			names = append(names, running[piece])
		}
	}
	for _, n := range strings.Split(dispatched, ", ") {
		if n != "" && !strings.HasPrefix(n, "any:") && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}
