package activities

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
	// HandBack lets a run that held for the model server longer than the
	// worker's limit end with a HandBack error, for the workflow to
	// dispatch the work again; workflows from before that change leave
	// it false and hold for as long as the outage lasts.
	HandBack bool `json:"hand_back,omitempty"`
}

// HandBackDetails go with a HandBack error: which node gave the work
// back, and since when its model server was down.
type HandBackDetails struct {
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
	// Counts are the answers up to the checkpoint, for the status.
	Counts task.Counts `json:"request_counts"`
}

// InferResult is the answered batch.
type InferResult struct {
	Counts     task.Counts    `json:"request_counts"`
	Usage      task.Usage     `json:"usage,omitzero"`
	Output     task.ObjectRef `json:"output"`
	Errors     task.ObjectRef `json:"errors"`
	Checkpoint int            `json:"checkpoint"`
	Node       string         `json:"node"`
	// Attempt is the activity attempt that finished the batch.
	Attempt int32 `json:"attempt,omitempty"`
}

// Progress is what the inference activity sends as heartbeat details; the
// status path reads it from the pending activity (DescribeWorkflow), so
// progress costs no event in the workflow's history.
type Progress = batch.Mark

// Infer runs the batch through the batch engine. It resumes from the
// newest checkpoint in the bucket, heartbeats its progress (so that
// cancellation reaches it), and on a worker shutdown records a checkpoint
// before it returns. An attempt that another attempt has replaced stops
// with a Fenced error, having written nothing that counts.
func (a *Activities) Infer(ctx context.Context, in InferInput) (InferResult, error) {
	running.Add(1)
	defer running.Add(-1)

	info := activity.GetInfo(ctx)
	sink := newSink(a, in.Tenant, in.TaskID, in.Shard)
	sink.attempt = fmt.Sprintf("a%d%s", info.Attempt, randomHex(3))
	from, err := sink.latest(ctx)
	if err != nil {
		return InferResult{}, fmt.Errorf("reading the checkpoint: %w", err)
	}
	if err := sink.claim(ctx, from); err != nil {
		return InferResult{}, inferError(err, from)
	}
	cfg := a.Batch
	cfg.Model, cfg.IDPrefix = in.Model, in.TaskID
	if !in.HandBack {
		cfg.HandBackAfter = 0
	}
	var offset int64
	if in.Shard != nil {
		cfg.FirstLine, cfg.LastLine, offset = in.Shard.FirstLine, in.Shard.LastLine, in.Shard.Offset
	}
	if err := a.checkSource(in.Tenant, in.TaskID, in.Source); err != nil {
		return InferResult{}, asApplicationError(err)
	}
	// The engine reopens the input to recompute a corrupt part: every read
	// is of the version screening saw.
	open := func(ctx context.Context) (io.ReadCloser, error) { return a.openPinned(ctx, in.Source, offset) }
	rc, err := open(ctx)
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

	rep := newReporter(ctx)
	if in.Shard != nil {
		rep.piece = in.Shard.Index
	}
	eng := &batch.Engine{Client: a.LLM, Sink: sink, Config: cfg, Progress: rep.report, Reopen: open}
	cp, err := eng.Run(runCtx, rc, from)
	if err != nil && ctx.Err() != nil && !errors.Is(err, batch.ErrStopped) {
		// Cancelled by a pause or a cancel: tell the workflow how far the
		// checkpoint got, so its status keeps the count.
		return InferResult{}, temporal.NewCanceledError(rep.last)
	}
	var hb *batch.HandBackError
	if errors.As(err, &hb) {
		// Not retried here: the workflow dispatches the work again, to
		// another node if one serves the model, as a new fenced attempt
		// that resumes from this checkpoint.
		return InferResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("node %s hands the work back at checkpoint %d: %v", a.Node, cp.Seq, err), string(task.HandBack), err,
			HandBackDetails{Node: a.Node, Since: hb.Since.UTC(), Counts: cp.Counts})
	}
	if err != nil {
		return InferResult{}, inferError(err, cp)
	}
	return InferResult{Counts: cp.Counts, Usage: cp.Usage, Output: cp.Output, Errors: cp.Errors, Checkpoint: cp.Seq, Node: a.Node, Attempt: info.Attempt}, nil
}

// inferError gives the engine's errors their types.
func inferError(err error, cp batch.Checkpoint) error {
	var corrupt *batch.CorruptPartError
	switch {
	case errors.Is(err, batch.ErrFenced):
		// Retryable: when this was the live attempt and a stale one won a
		// race, the next attempt resumes from what that one recorded.
		return temporal.NewApplicationError(err.Error(), string(task.Fenced))
	case errors.Is(err, batch.ErrStopped):
		return temporal.NewApplicationError("the worker is stopping; the batch resumes from checkpoint "+fmt.Sprint(cp.Seq), "WorkerStopping")
	case errors.As(err, &corrupt):
		return temporal.NewApplicationError(err.Error(), string(task.CorruptPart))
	}
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// reporter heartbeats the engine's progress. Its counts never go below
// what the previous attempt last reported, so the status a person reads
// does not go backwards while a retry redoes the lines after the
// checkpoint.
type reporter struct {
	ctx   context.Context
	piece int
	floor task.Counts
	last  batch.Mark
}

func newReporter(ctx context.Context) *reporter {
	r := &reporter{ctx: ctx}
	var prev batch.Mark
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &prev) == nil {
		r.floor = prev.Counts
	}
	return r
}

func (r *reporter) report(m batch.Mark) {
	m.Piece = r.piece
	if m.Counts.Done() < r.floor.Done() {
		m.Counts = r.floor
	}
	r.last = m
	activity.RecordHeartbeat(r.ctx, m)
}
