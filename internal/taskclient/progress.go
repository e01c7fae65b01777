package taskclient

import (
	"context"
	"time"

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
	var waiting time.Time
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityType().GetName() != inferActivity {
			continue
		}
		st.Attempts = max(st.Attempts, int(pa.GetAttempt()))
		var m batch.Mark
		pl := pa.GetHeartbeatDetails().GetPayloads()
		if len(pl) == 0 || converter.GetDefaultDataConverter().FromPayload(pl[0], &m) != nil || m.Piece < 0 || m.Piece > 1<<16 {
			continue
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
	p.WaitingSince = waiting
	if since := st.EnteredAt(task.Running); !since.IsZero() && p.Done() > 0 {
		if el := time.Since(since).Seconds(); el > 0 {
			p.RatePerSecond = float64(p.Done()) / el
			p.ETASeconds = float64(p.Total-p.Done()) / p.RatePerSecond
		}
	}
	return nil
}
