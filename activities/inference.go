package activities

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
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
	// Piece, if set, is the range of the input this activity runs; nil runs
	// it whole. It keeps its JSON name (see MergeInput): nodes of an older
	// build read it.
	Piece *Piece `json:"shard,omitempty"`
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
	// Attempts is how many attempts have run the piece, this one and the
	// hand-backs before it included.
	Attempts int `json:"attempts,omitempty"`
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
// before it returns. An attempt that another attempt has replaced, or
// whose heartbeat the server refused, stops with a Fenced error, having
// written nothing that counts; it finds out before it reads a checkpoint
// when it can.
func (a *Activities) Infer(ctx context.Context, in InferInput) (InferResult, error) {
	running.Add(1)
	defer running.Add(-1)

	info := activity.GetInfo(ctx)
	rep := newReporter(ctx, info.HeartbeatTimeout, a.Node)
	if in.Piece != nil {
		rep.piece = in.Piece.Index
	}
	// The first heartbeat goes out at once (the SDK throttles the later
	// ones): an attempt the server has already given up (it sat in a
	// frozen worker's poll) learns it there. The head and the input are
	// read side by side with it; nothing is taken or written before its
	// answer (reporter.live).
	rep.beatFirst()
	beatCtx, stopBeating := context.WithCancel(ctx)
	defer stopBeating()
	go rep.keepBeating(beatCtx)
	if err := a.checkSource(in.Tenant, in.TaskID, in.Source); err != nil {
		return InferResult{}, asApplicationError(err)
	}
	cfg := a.Batch
	cfg.Model, cfg.IDPrefix = in.Model, in.TaskID
	if !in.HandBack {
		cfg.HandBackAfter = 0
	}
	var offset int64
	if in.Piece != nil {
		cfg.FirstLine, cfg.LastLine, offset = in.Piece.FirstLine, in.Piece.LastLine, in.Piece.Offset
	}
	// The engine reopens the input to recompute a corrupt part, and to
	// read on after the bucket cut the stream: every read is of the
	// version screening saw.
	open := func(ctx context.Context) (io.ReadCloser, error) {
		rc, err := a.openPinned(ctx, in.Source, offset)
		return rc, outage(err)
	}
	var rc io.ReadCloser
	var from batch.Checkpoint
	sink := newSink(a, in.Tenant, in.TaskID, in.Piece)
	sink.me = batch.Attempt{Scheduled: info.ScheduledTime.UTC(), Number: info.Attempt, ID: fmt.Sprintf("a%d%s", info.Attempt, randomHex(3))}
	sink.live = rep.live
	err := sideBySide(func() (err error) {
		from, err = sink.claim(ctx)
		return err
	}, func() (err error) {
		rc, err = open(ctx)
		return err
	})
	if rc != nil {
		defer rc.Close()
	}
	if err != nil {
		return InferResult{}, a.inferError(ctx, sink, err, from)
	}
	rep.attempts = sink.attempts

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

	eng := &batch.Engine{Client: a.LLM, Sink: sink, Config: cfg, Progress: rep.report, Reopen: open}
	cp, err := eng.Run(runCtx, rc, from)
	if err != nil && !errors.Is(err, batch.ErrFenced) && ctx.Err() != nil && !errors.Is(err, batch.ErrStopped) {
		if refused(ctx) != nil {
			sink.fencedBy = cmp.Or(sink.fencedBy, "the server (heartbeat refused)")
			return InferResult{}, a.inferError(ctx, sink, fmt.Errorf("%w: %w", batch.ErrFenced, err), cp)
		}
		// Cancelled by a pause or a cancel: tell the workflow how far the
		// checkpoint got, so its status keeps the count.
		return InferResult{}, temporal.NewCanceledError(rep.mark())
	}
	var hb *batch.HandBackError
	if errors.As(err, &hb) {
		// Not retried here: the workflow dispatches the work again, to
		// another node if one serves the model, as a new fenced attempt
		// that resumes from this checkpoint.
		return InferResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("node %s hands the work back at checkpoint %d: %v", a.Node, cp.Seq, err), string(task.HandBack), err,
			HandBackDetails{Node: a.Node, Since: hb.Since.UTC(), Counts: cp.Counts, Attempts: max(sink.attempts, int(info.Attempt))})
	}
	if err != nil {
		return InferResult{}, a.inferError(ctx, sink, err, cp)
	}
	return InferResult{Counts: cp.Counts, Usage: cp.Usage, Output: cp.Output, Errors: cp.Errors, Checkpoint: cp.Seq, Node: a.Node, Attempt: int32(max(sink.attempts, int(info.Attempt)))}, nil
}

// FencedDetails go with a Fenced error, and with the task log's line
// "attempt fenced".
type FencedDetails struct {
	// By is what fenced the attempt: "a newer attempt", "an older
	// attempt" (a live attempt fenced by a stale one), the server, or the
	// attempt's own heartbeat lapse.
	By string `json:"by"`
	// Unrecorded is how many answers the attempt held that no record
	// names: the next attempt answers them again.
	Unrecorded int `json:"unrecorded"`
}

// inferError gives the engine's errors their types.
func (a *Activities) inferError(ctx context.Context, sink *bucketSink, err error, cp batch.Checkpoint) error {
	var corrupt *batch.CorruptPartError
	switch {
	case errors.Is(err, batch.ErrFenced):
		d := FencedDetails{By: sink.fencedBy}
		var fe *batch.FencedError
		if errors.As(err, &fe) {
			d.Unrecorded = fe.Unrecorded
		}
		activity.GetLogger(ctx).Warn("attempt fenced", "fenced_by", d.By, "unrecorded", d.Unrecorded, "error", err)
		// Retryable: when this was the live attempt and a stale one won a
		// race, the next attempt resumes from what that one recorded.
		return temporal.NewApplicationError(err.Error(), string(task.Fenced), d)
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

// reporter heartbeats the engine's progress, and keeps the attempt's
// heartbeat state: whether the server may have given it up. Its counts
// never go below what the previous attempt last reported, so the status a
// person reads does not go backwards while a retry redoes the lines after
// the checkpoint.
type reporter struct {
	ctx      context.Context
	piece    int
	node     string
	attempts int
	floor    task.Counts
	// timeout is the activity's heartbeat timeout (0: none).
	timeout time.Duration
	// first is closed once the server has answered the first heartbeat;
	// nil when there is no first heartbeat to wait for.
	first <-chan struct{}

	mu   sync.Mutex
	last batch.Mark
	// beat is when the last heartbeat went out; lapse is the first gap
	// between two heartbeats longer than the timeout (the process was
	// frozen or starved): the server has given the attempt up by then.
	beat  time.Time
	lapse time.Duration
}

func newReporter(ctx context.Context, timeout time.Duration, node string) *reporter {
	r := &reporter{ctx: ctx, timeout: timeout, node: node}
	var prev batch.Mark
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &prev) == nil {
		r.floor = prev.Counts
		r.last = prev
	}
	return r
}

// report heartbeats the engine's mark.
func (r *reporter) report(m batch.Mark) {
	r.mu.Lock()
	m.Piece, m.Node, m.Attempts = r.piece, r.node, r.attempts
	if m.Counts.Done() < r.floor.Done() {
		m.Counts = r.floor
	}
	r.last = m
	r.touch()
	r.mu.Unlock()
	activity.RecordHeartbeat(r.ctx, m)
}

// beatFirst sends the first heartbeat in the background; live waits for
// the server's answer to it.
func (r *reporter) beatFirst() {
	first := make(chan struct{})
	r.first = first
	go func() {
		defer close(first)
		r.resend()
	}()
}

// resend heartbeats the last mark again.
func (r *reporter) resend() { r.report(r.mark()) }

// mark is the last mark heartbeated.
func (r *reporter) mark() batch.Mark {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// touch notes a heartbeat going out now; r.mu is held.
func (r *reporter) touch() {
	now := time.Now()
	if gap := now.Sub(r.beat); !r.beat.IsZero() && r.timeout > 0 && gap >= r.timeout && r.lapse == 0 {
		r.lapse = gap
	}
	r.beat = now
}

// keepBeating heartbeats once a second until ctx ends, whatever the
// engine is doing (a long merge, a hold for the bucket), so that only a
// process that is really stuck is timed out.
func (r *reporter) keepBeating(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.resend()
		case <-ctx.Done():
			return
		}
	}
}

// live is nil while this attempt may still commit. It is not once the
// server refused its heartbeat, or once it went longer than its heartbeat
// timeout without one (a worker frozen past it wakes up to find the work
// given to another attempt), even before the server said so.
func (r *reporter) live() error {
	if r.first != nil {
		select {
		case <-r.first:
		case <-r.ctx.Done():
		}
	}
	r.mu.Lock()
	lapse := r.lapse
	if gap := time.Since(r.beat); lapse == 0 && !r.beat.IsZero() && r.timeout > 0 && gap >= r.timeout {
		lapse = gap
	}
	r.mu.Unlock()
	if lapse > 0 {
		return fmt.Errorf("%w: %w: this attempt went %s without a heartbeat, past its timeout of %s", batch.ErrFenced, errLapsed, lapse.Round(time.Millisecond), r.timeout)
	}
	if err := refused(r.ctx); err != nil {
		return fmt.Errorf("%w: the server refused this attempt's heartbeat: %w", batch.ErrFenced, err)
	}
	return nil
}

// errLapsed marks an attempt fenced by its own heartbeat lapse.
var errLapsed = errors.New("heartbeat lapsed")

// refused is why the activity's context ended, when it is not a request
// to cancel (a pause, a cancel, an activity paused or reset): a heartbeat
// the server refused because the attempt timed out, or the attempt's own
// deadline. Nil while the context is live or was cancelled on request.
func refused(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	cause := context.Cause(ctx)
	if temporal.IsCanceledError(cause) || errors.Is(cause, activity.ErrActivityPaused) || errors.Is(cause, activity.ErrActivityReset) {
		return nil
	}
	return cause
}
