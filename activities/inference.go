package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// InferInput is the batch to run on this node.
type InferInput struct {
	TaskID string         `json:"task_id"`
	Tenant string         `json:"tenant"`
	Model  string         `json:"model"`
	Source task.ObjectRef `json:"source"`
	// Total is the number of requests screening counted, for progress.
	Total int `json:"total"`
	// Shard, if set, is the part of the input this activity runs.
	Shard *Shard `json:"shard,omitempty"`
}

// InferResult is the answered batch.
type InferResult struct {
	Counts     task.Counts    `json:"request_counts"`
	Output     task.ObjectRef `json:"output"`
	Errors     task.ObjectRef `json:"errors"`
	Checkpoint int            `json:"checkpoint"`
	Node       string         `json:"node"`
}

// Progress is what the inference activity reports to its workflow with
// the task.SignalProgress signal.
type Progress struct {
	Progress task.Progress `json:"progress"`
	Node     string        `json:"node"`
	Attempt  int32         `json:"attempt"`
	Shard    int           `json:"shard"`
}

// Infer runs the batch through the batch engine. It resumes from the
// newest checkpoint (heartbeat details or the bucket, whichever is newer),
// heartbeats so that cancellation reaches it, and on a worker shutdown
// records a checkpoint before it returns.
func (a *Activities) Infer(ctx context.Context, in InferInput) (InferResult, error) {
	running.Add(1)
	defer running.Add(-1)

	sink := newSink(a, in.Tenant, in.TaskID, in.Shard)
	from, err := a.resumePoint(ctx, sink)
	if err != nil {
		return InferResult{}, err
	}
	cfg := a.Batch
	cfg.Model, cfg.IDPrefix = in.Model, in.TaskID
	var offset int64
	if in.Shard != nil {
		cfg.FirstLine, cfg.LastLine, offset = in.Shard.FirstLine, in.Shard.LastLine, in.Shard.Offset
	}

	if err := a.checkSource(in.Tenant, in.TaskID, in.Source); err != nil {
		return InferResult{}, asApplicationError(err)
	}
	rc, err := a.openPinned(ctx, in.Source, offset)
	if err != nil {
		return InferResult{}, err
	}
	defer rc.Close()

	// A worker shutdown ends the run with ErrStopped as the cause, which
	// records a checkpoint; a cancelled activity ends it with the
	// context's own error.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-activity.GetWorkerStopChannel(ctx):
			cancel(batch.ErrStopped)
		case <-runCtx.Done():
		}
	}()

	rep := a.newReporter(ctx, in.Total)
	if in.Shard != nil {
		rep.shard = in.Shard.Index
	}
	eng := &batch.Engine{Client: a.LLM, Sink: sink, Config: cfg, Progress: rep.report}
	cp, err := eng.Run(runCtx, rc, from)
	rep.flush(cp.Counts)
	switch {
	case errors.Is(err, batch.ErrStopped):
		return InferResult{}, temporal.NewApplicationError("the worker is stopping; the batch resumes from checkpoint "+fmt.Sprint(cp.Seq), "WorkerStopping")
	case err != nil:
		return InferResult{}, err
	}
	return InferResult{Counts: cp.Counts, Output: cp.Output, Errors: cp.Errors, Checkpoint: cp.Seq, Node: a.Node}, nil
}

// resumePoint is the newest checkpoint of this task: heartbeat details are
// cheap but may be lost in a crash, the bucket's record is durable but may
// lag a heartbeat; either may be missing.
func (a *Activities) resumePoint(ctx context.Context, sink *bucketSink) (batch.Checkpoint, error) {
	var hb batch.Checkpoint
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &hb)
	}
	stored, err := sink.latest(ctx)
	if err != nil {
		return batch.Checkpoint{}, err
	}
	if stored.Seq > hb.Seq {
		return stored, nil
	}
	return hb, nil
}

// reporter heartbeats with the latest checkpoint and, every
// ProgressInterval, signals the counts to the workflow for its status query.
type reporter struct {
	a        *Activities
	ctx      context.Context
	total    int
	start    time.Time
	startN   int
	lastSent time.Time
	info     activity.Info
	shard    int
}

func (a *Activities) newReporter(ctx context.Context, total int) *reporter {
	return &reporter{a: a, ctx: ctx, total: total, start: time.Now(), startN: -1, info: activity.GetInfo(ctx)}
}

func (r *reporter) report(c task.Counts, last batch.Checkpoint) {
	activity.RecordHeartbeat(r.ctx, last)
	if r.startN < 0 {
		r.startN = c.Done()
	}
	interval := r.a.ProgressInterval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if time.Since(r.lastSent) >= interval {
		r.send(c)
	}
}

func (r *reporter) flush(c task.Counts) { r.send(c) }

func (r *reporter) send(c task.Counts) {
	if r.a.Temporal == nil {
		return
	}
	r.lastSent = time.Now()
	c.Total = max(r.total, c.Done())
	p := Progress{Progress: task.Progress{Counts: c}, Node: r.a.Node, Attempt: r.info.Attempt, Shard: r.shard}
	if el := time.Since(r.start).Seconds(); el > 0 && r.startN >= 0 {
		p.Progress.RatePerSecond = float64(c.Done()-r.startN) / el
	}
	// Progress is advisory: a lost signal only makes the status query
	// lag, so its error does not fail the batch.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 5*time.Second)
	defer cancel()
	_ = r.a.Temporal.SignalWorkflow(sctx, r.info.WorkflowExecution.ID, "", task.SignalProgress, p)
}
