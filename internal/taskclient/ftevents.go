package taskclient

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// The types of a fine-tuning event, as OpenAI's fine_tuning.job.event.
const (
	FineTuneMessage = "message"
	FineTuneMetrics = "metrics"
)

// FineTuneEvent is one event of a fine-tuning task: a transition of its
// audit trail (a message), or one point of its loss curve (metrics), read
// from the committed checkpoints in the bucket. Neither comes from a
// signal or any event of the workflow's history of its own: the curve
// costs the history nothing however long the run.
type FineTuneEvent struct {
	// ID is stable: ftevent-<task>-a<audit index> for a message,
	// ftevent-<task>-s<step> for metrics.
	ID      string           `json:"id"`
	Time    time.Time        `json:"time"`
	Type    string           `json:"type"`
	Level   string           `json:"level"`
	Message string           `json:"message"`
	Metrics *TrainingMetrics `json:"metrics,omitempty"`
}

// TrainingMetrics is one point of the loss curve: the trainer's logged
// loss at a step.
type TrainingMetrics struct {
	Step      int     `json:"step"`
	Epoch     float64 `json:"epoch"`
	TrainLoss float64 `json:"train_loss"`
}

// FineTuneCheckpoint is a committed checkpoint of a fine-tuning task (or
// its final model), from its record in the bucket.
type FineTuneCheckpoint struct {
	// ID is ftckpt-<task>-<seq>.
	ID    string    `json:"id"`
	Seq   int       `json:"seq"`
	Time  time.Time `json:"time"`
	Step  int       `json:"step"`
	Epoch float64   `json:"epoch"`
	Loss  float64   `json:"loss"`
	Final bool      `json:"final,omitempty"`
	// Kept is whether its files are still in the bucket: the newest
	// max_keep checkpoints and the final model are.
	Kept     bool           `json:"kept"`
	Manifest task.ObjectRef `json:"manifest"`
}

// FineTuneCheckpoints are the committed checkpoints of fine-tuning task
// id of tenant, oldest first.
func (c *Client) FineTuneCheckpoints(ctx context.Context, tenant, id string) ([]FineTuneCheckpoint, error) {
	h, err := trainer.ReadHistory(ctx, c.Store, tenant, id)
	if err != nil {
		return nil, fmt.Errorf("reading the checkpoints of %s: %w", id, err)
	}
	out := []FineTuneCheckpoint{}
	for _, r := range h.Records {
		out = append(out, FineTuneCheckpoint{
			ID: fmt.Sprintf("ftckpt-%s-%d", id, r.Seq), Seq: r.Seq, Time: r.Time, Step: r.Step, Epoch: r.Epoch,
			Loss: r.Loss, Final: r.Final, Kept: h.Kept[r.Seq], Manifest: r.Manifest,
		})
	}
	return out, nil
}

// FineTuneEvents are the events of a fine-tuning task whose status is st,
// oldest first: its audit trail as messages, and its loss curve as
// metrics, one per step the trainer logged a loss at (the log_history of
// the newest kept checkpoint), with any step only a record names. A
// point's time is when the checkpoint that carried it was committed.
func (c *Client) FineTuneEvents(ctx context.Context, st task.Status) ([]FineTuneEvent, error) {
	h, err := trainer.ReadHistory(ctx, c.Store, st.Tenant, st.ID)
	if err != nil {
		return nil, fmt.Errorf("reading the loss curve of %s: %w", st.ID, err)
	}
	out := []FineTuneEvent{}
	for i, tr := range st.Audit {
		out = append(out, FineTuneEvent{
			ID: fmt.Sprintf("ftevent-%s-a%d", st.ID, i), Time: tr.Time, Type: FineTuneMessage,
			Level: levelOf(tr.To), Message: transitionMessage(tr),
		})
	}
	points := map[int]FineTuneEvent{}
	point := func(step int, epoch, loss float64, at time.Time) {
		points[step] = FineTuneEvent{
			ID: fmt.Sprintf("ftevent-%s-s%d", st.ID, step), Time: at, Type: FineTuneMetrics, Level: "info",
			Message: fmt.Sprintf("step %d: training loss %.4f", step, loss),
			Metrics: &TrainingMetrics{Step: step, Epoch: epoch, TrainLoss: loss},
		}
	}
	for _, e := range h.Log {
		// The commit that carried the point: the first record at or past
		// its step.
		if i := slices.IndexFunc(h.Records, func(r trainer.Record) bool { return r.Step >= e.Step }); i >= 0 {
			point(e.Step, e.Epoch, *e.Loss, h.Records[i].Time)
		}
	}
	// A record's loss is the newest logged at its step: a point of its
	// own only where the log (of a checkpoint no longer kept) has none.
	for _, r := range h.Records {
		if _, ok := points[r.Step]; !ok {
			point(r.Step, r.Epoch, r.Loss, r.Time)
		}
	}
	metrics := make([]FineTuneEvent, 0, len(points))
	for _, p := range points {
		metrics = append(metrics, p)
	}
	slices.SortFunc(metrics, func(a, b FineTuneEvent) int { return cmp.Compare(a.Metrics.Step, b.Metrics.Step) })
	out = append(out, metrics...)
	// Stable, so a message and the points of one commit keep their own
	// orders.
	slices.SortStableFunc(out, func(a, b FineTuneEvent) int { return a.Time.Compare(b.Time) })
	return out, nil
}

func levelOf(s task.State) string {
	switch s {
	case task.Failed, task.Rejected, task.Expired:
		return "error"
	case task.Cancelled, task.Paused:
		return "warn"
	}
	return "info"
}

func transitionMessage(tr task.Transition) string {
	msg := string(tr.To)
	if tr.Actor != "" {
		msg += " (" + tr.Actor + ")"
	}
	if tr.Reason != "" {
		msg += ": " + tr.Reason
	}
	return msg
}
