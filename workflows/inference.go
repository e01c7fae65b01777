package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// batchInference is the first kind of task: an OpenAI Batch file (a
// prompt is a batch of one), screened line by line, run on the nodes that
// serve its model in pieces (the whole batch, or the pieces screening cut it into), each resumed
// from its checkpoint, and archived as output.jsonl and errors.jsonl.
type batchInference struct{ *taskRun }

// screen counts the requests and checks their size and words; a small
// input is read in a local activity (see screensLocally).
func (b batchInference) screen(ctx workflow.Context) (activities.ScreenResult, string, error) {
	var res activities.ScreenResult
	err := b.control(ctx, "screen", "count requests, check size and words", b.screensLocally(), func(o *workflow.ActivityOptions) {
		o.StartToCloseTimeout, o.HeartbeatTimeout = 30*time.Minute, time.Minute
	}, a.Screen, activities.ScreenInput{Task: b.in, Rules: *b.rules}).Get(ctx, &res)
	if err != nil {
		return res, "", err
	}
	b.source, b.cut = res.Source, res.Pieces
	reason := fmt.Sprintf("%d request(s), %d bytes", res.Screening.Requests, res.Screening.Bytes)
	if len(res.Pieces) > 0 {
		reason += fmt.Sprintf(", in %d pieces", len(res.Pieces))
	}
	return res, reason, nil
}

func (b batchInference) run(ctx workflow.Context) error { return b.infer(ctx) }

func (b batchInference) keepPartial(ctx workflow.Context) { b.collectPartial(ctx) }

func (b batchInference) completed() string {
	return fmt.Sprintf("%d completed, %d failed", b.result.Counts.Completed, b.result.Counts.Failed)
}

// screensLocally tells whether the input is screened in a local activity, in
// the first workflow task with authorize: a small one. A large one keeps
// the regular activity, whose heartbeats show it is still reading. It
// depends on the start's input alone, so every run of a task decides it
// the same way.
func (w *taskRun) screensLocally() bool {
	return w.in.Source.Size <= maxLocalScreenBytes
}

// piece is one inference activity of the task: the whole batch, or one
// of the pieces screening cut it into.
type piece struct {
	index int
	lines *activities.Piece // nil: the whole batch
	total int
	node  activities.DispatchResult
	// ran is the node the piece's last attempt ran on, as that attempt
	// reported it (finished, handed back or stopped); "" until one has
	// since the last dispatch.
	ran   string
	avoid []string // nodes that did not start this piece in time
	res   *activities.InferResult
}

// infer dispatches the batch (or each of its pieces) to a node and runs it
// there, pieces in parallel. A pause stops every piece (the engine records
// a checkpoint) until resume; a node that does not start a piece in time is
// replaced; a piece that fails stops the others. Every new attempt resumes
// from the last checkpoint, and a finished piece is not run again.
func (w *taskRun) infer(ctx workflow.Context) error {
	pieces := w.carriedPieces()
	if pieces == nil {
		pieces = w.pieces()
	}
	if w.carried != nil && w.paused {
		// Continued as new while paused: wait for the resume here.
		if err := w.awaitResume(ctx, pieces); err != nil || w.cancelled != nil {
			return err
		}
	}
	for again := false; ; again = true {
		// The re-dispatch loop continues as new when the server suggests
		// it, before it dispatches again.
		if again && w.suggested(ctx) {
			return w.continueAsNew(ctx, carryInfer, pieces)
		}
		// A pause may stop the dispatch as well as the run: a re-dispatch
		// leaves the task DISPATCHED, and pausable, while it picks a node.
		pauses := w.pauses
		err, redispatch := w.dispatchAll(ctx, pieces), ""
		if err == nil {
			err, redispatch = w.runAll(ctx, pieces)
		}
		switch {
		case err == nil && redispatch == "":
			return w.mergePieces(ctx, pieces)
		case err == nil:
			w.transition(ctx, task.Dispatched, "dispatch", redispatch)
		case w.cancelled != nil:
			return err
		case !w.paused && w.pauses != pauses && temporal.IsCanceledError(err):
			// Paused and resumed before the stage had stopped: run again
			// from the checkpoint, as after any resume.
		case w.paused && temporal.IsCanceledError(err):
			if err := w.awaitResume(ctx, pieces); err != nil || w.cancelled != nil {
				return err
			}
		default:
			return err
		}
	}
}

// maxLocalScreenBytes is the largest input screened in a local activity:
// read in well under the workflow task timeout, so the first workflow
// task needs no heartbeat.
const maxLocalScreenBytes = 1 << 20

func (w *taskRun) pieces() []*piece {
	if len(w.cut) == 0 {
		return []*piece{{total: w.status.Progress.Total}}
	}
	ps := make([]*piece, len(w.cut))
	for i := range w.cut {
		ps[i] = &piece{index: i, lines: &w.cut[i], total: w.cut[i].Requests}
	}
	return ps
}

// avoidNode adds node to the nodes the piece avoids, once: the list is
// carried across continue-as-new, and a node that stalls again and again
// must not grow it.
func (p *piece) avoidNode(node string) {
	if !slices.Contains(p.avoid, node) {
		p.avoid = append(p.avoid, node)
	}
}

// dispatchAll picks a node for each unfinished piece without one, spreading
// pieces over the nodes before doubling up.
func (w *taskRun) dispatchAll(ctx workflow.Context, pieces []*piece) error {
	var chosen, names []string
	for _, p := range pieces {
		if p.res != nil {
			continue
		}
		if p.node.Node == "" {
			var node activities.DispatchResult
			in := activities.DispatchInput{TaskID: w.in.ID, Model: w.in.Model, Avoid: append(p.avoid, chosen...)}
			if w.emitApproved {
				// An approval taken while the last run continued as new is
				// in the bucket's part of the trail.
				at := w.status.EnteredAt(task.Approved)
				if at.IsZero() {
					at = workflow.Now(ctx)
				}
				in.Approved = &task.Event{
					Tenant: w.in.Tenant, ID: "evt_" + w.in.ID + "_" + string(task.Approved), Type: task.EventTaskApproved,
					CreatedAt: at.UTC(), Data: map[string]string{"id": w.in.ID, "state": string(task.Approved)},
				}
				w.emitApproved = false
			}
			// A first dispatch is local; a re-dispatch after a stall, rare
			// and slow anyway, keeps the task queue, where a pause cancels it.
			f := w.control(ctx, "dispatch", "pick a node serving "+w.in.Model, len(p.avoid) == 0, func(o *workflow.ActivityOptions) {
				o.RetryPolicy = &temporal.RetryPolicy{
					InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 15 * time.Second,
					MaximumAttempts: 20, NonRetryableErrorTypes: nonRetryable,
				}
			}, a.Dispatch, in)
			if err := f.Get(ctx, &node); err != nil {
				return err
			}
			p.node, p.ran = node, ""
		}
		chosen = append(chosen, p.node.Node)
		if !slices.Contains(names, p.node.Where()) {
			names = append(names, p.node.Where())
		}
	}
	w.dispatched = true
	w.status.Node = nodeNames(pieces)
	// runAll's RUNNING follows at once.
	w.passThrough(ctx, task.Dispatched, "dispatch", fmt.Sprintf("%d piece(s) on %s", len(chosen), strings.Join(names, ", ")))
	return nil
}

// nodeNames names the nodes that run the pieces, each once, in piece
// order: the node a piece's last attempt reported it ran on, else the node
// dispatch chose for it. A piece sent to its model's queue is named once
// an attempt reports where it ran; until then the status path adds the
// node its running attempt heartbeats (taskclient), which costs no event
// in the history.
func nodeNames(pieces []*piece) string {
	var names []string
	for _, p := range pieces {
		n := p.ran
		if n == "" && !p.node.AnyNode() {
			n = p.node.Node
		}
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// queues says where the unfinished pieces were sent, as a person reads
// it: "node n1", "any node serving m".
func queues(pieces []*piece) string {
	var where []string
	for _, p := range pieces {
		if p.res == nil && !slices.Contains(where, p.node.Where()) {
			where = append(where, p.node.Where())
		}
	}
	return strings.Join(where, ", ")
}

// runAll runs the unfinished pieces in parallel and waits for all of them.
// It returns the first error, and why pieces must be dispatched again, if
// any: a node did not start one in time, or handed one back (their nodes
// are cleared for dispatchAll).
func (w *taskRun) runAll(ctx workflow.Context, pieces []*piece) (firstErr error, redispatch string) {
	where := queues(pieces)
	sctx := w.stage(ctx, "inference", fmt.Sprintf("%d request(s) on %s", w.status.Progress.Total, where))
	stop := w.cancelStage
	w.transition(ctx, task.Running, "dispatch", "inference on "+where)
	sel := workflow.NewSelector(ctx)
	running := 0
	for _, p := range pieces {
		if p.res != nil {
			continue
		}
		running++
		sel.AddFuture(w.runOn(sctx, p), func(f workflow.Future) {
			var res activities.InferResult
			err := f.Get(ctx, &res)
			w.stopped(p, err)
			defer func() { w.status.Node = nodeNames(pieces) }()
			switch {
			case err == nil:
				p.res = &res
				w.pieceCounts(p.index, res.Counts)
				w.status.Attempts = max(w.status.Attempts, int(res.Attempt))
				if res.Node != "" {
					p.ran = res.Node
				}
			case isScheduleToStartTimeout(err):
				p.avoidNode(p.node.Node)
				p.node = activities.DispatchResult{}
				redispatch = fmt.Sprintf("a node did not start the work within %s; dispatching again", w.nodeStartTimeout())
			case handedBack(err) != nil:
				hb := handedBack(err)
				p.avoidNode(hb.Node)
				p.node, p.ran = activities.DispatchResult{}, hb.Node
				w.pieceCounts(p.index, hb.Counts)
				// A hand-back is an attempt of the piece's, though the
				// next one starts a new activity at attempt 1.
				w.status.Attempts = max(w.status.Attempts, hb.Attempts)
				redispatch = fmt.Sprintf("the model server of node %s has been down since %s; dispatching again from the checkpoint", hb.Node, hb.Since.Format(time.RFC3339))
			case firstErr == nil:
				firstErr = err
				// One failed piece fails the task: stop the others, which
				// checkpoint, instead of letting them run on.
				stop()
			}
		})
	}
	for range running {
		sel.Select(ctx)
	}
	return firstErr, redispatch
}

// handedBack is the details of a HandBack error, or nil.
func handedBack(err error) *activities.HandBackDetails {
	var ae *temporal.ApplicationError
	var d activities.HandBackDetails
	if !errors.As(err, &ae) || ae.Type() != string(task.HandBack) || ae.Details(&d) != nil {
		return nil
	}
	return &d
}

// pieceCounts records how far piece i got, as a finished or stopped
// attempt reported it, and sums the pieces into the status. The pieces
// still running report through their heartbeats, which the status path
// adds; counts only grow.
func (w *taskRun) pieceCounts(i int, c task.Counts) {
	p := &w.status.Progress
	for len(p.Pieces) <= i {
		p.Pieces = append(p.Pieces, task.Counts{})
	}
	if c.Done() < p.Pieces[i].Done() {
		return
	}
	p.Pieces[i] = task.Counts{Completed: c.Completed, Failed: c.Failed}
	var sum task.Counts
	for _, pc := range p.Pieces {
		sum.Completed += pc.Completed
		sum.Failed += pc.Failed
	}
	p.Completed, p.Failed = sum.Completed, sum.Failed
}

// stopped keeps what a cancelled attempt reported with its cancellation:
// its progress, its node and the piece's attempts.
func (w *taskRun) stopped(p *piece, err error) {
	var ce *temporal.CanceledError
	var m activities.Progress
	if errors.As(err, &ce) && ce.HasDetails() && ce.Details(&m) == nil {
		w.pieceCounts(p.index, m.Counts)
		w.status.Attempts = max(w.status.Attempts, m.Attempts)
		if m.Node != "" {
			p.ran = m.Node
		}
	}
}

// nodeStartTimeout is how long a node's queue may hold the inference
// before it is dispatched again: long enough for a node that runs its
// maximum of batches to free a slot, short enough to replace a dead node.
// The worker's setting, recorded in the authorize result, overrides it.
const nodeStartTimeout = 10 * time.Minute

func (w *taskRun) nodeStartTimeout() time.Duration {
	if w.rules != nil && w.rules.NodeStartTimeout > 0 {
		return w.rules.NodeStartTimeout
	}
	return nodeStartTimeout
}

func (w *taskRun) runOn(ctx workflow.Context, p *piece) workflow.Future {
	summary := fmt.Sprintf("inference: %d request(s) on %s", p.total, p.node.Where())
	if p.lines != nil {
		summary = fmt.Sprintf("inference: piece %d of %d, lines %d-%d, on %s", p.lines.Index+1, len(w.cut), p.lines.FirstLine, p.lines.LastLine, p.node.Where())
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              p.node.Queue,
		ScheduleToStartTimeout: w.nodeStartTimeout(),
		StartToCloseTimeout:    24 * time.Hour,
		HeartbeatTimeout:       w.heartbeatTimeout(),
		// Let the engine record its checkpoint before the task moves on,
		// so a cancelled or paused task keeps its partial output.
		WaitForCancellation: true,
		Summary:             summary,
		Priority:            w.priority(),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts: 20, NonRetryableErrorTypes: nonRetryable,
		},
	})
	return workflow.ExecuteActivity(ctx, a.Infer, activities.InferInput{
		TaskID: w.in.ID, Tenant: w.in.Tenant, Model: w.in.Model, Source: w.source, Total: p.total, Piece: p.lines,
		HandBack: true,
	})
}

// mergePieces joins the pieces' outputs; a batch run whole is already
// merged.
func (w *taskRun) mergePieces(ctx workflow.Context, pieces []*piece) error {
	res := *pieces[0].res
	if len(pieces) > 1 {
		in := activities.MergeInput{TaskID: w.in.ID, Tenant: w.in.Tenant}
		for _, p := range pieces {
			in.Pieces = append(in.Pieces, *p.res)
		}
		mctx := w.stage(ctx, "merge", fmt.Sprintf("join %d pieces", len(pieces)))
		mctx = workflow.WithStartToCloseTimeout(mctx, time.Hour)
		if err := workflow.ExecuteActivity(mctx, a.MergePieces, in).Get(ctx, &res); err != nil {
			return err
		}
	}
	w.setCounts(res.Counts)
	w.result.Counts, w.result.Output, w.result.Errors = res.Counts, res.Output, res.Errors
	w.result.Usage, w.status.Usage = res.Usage, res.Usage
	w.addArtifact(res.Output)
	w.addArtifact(res.Errors)
	return nil
}

// setCounts records the answered counts; the total stays what screening
// counted, so partial output never shrinks it.
func (w *taskRun) setCounts(c task.Counts) {
	w.status.Progress.Completed, w.status.Progress.Failed = c.Completed, c.Failed
}

func (w *taskRun) heartbeatTimeout() time.Duration {
	if w.rules != nil && w.rules.HeartbeatTimeout > 0 {
		return w.rules.HeartbeatTimeout
	}
	return time.Minute
}

func isScheduleToStartTimeout(err error) bool {
	var te *temporal.TimeoutError
	return errors.As(err, &te) && te.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}

// collectPartial merges what inference answered before a cancel or a
// failure into output.jsonl and errors.jsonl, so partial results are kept.
func (w *taskRun) collectPartial(ctx workflow.Context) {
	var res activities.InferResult
	err := workflow.ExecuteActivity(w.stage(ctx, "collect", "keep partial output"), a.Collect,
		activities.CollectInput{TaskID: w.in.ID, Tenant: w.in.Tenant, Pieces: len(w.cut)}).Get(ctx, &res)
	if err != nil {
		workflow.GetLogger(ctx).Warn("partial output not collected", "error", err)
		return
	}
	w.setCounts(res.Counts)
	w.result.Counts, w.result.Output, w.result.Errors = res.Counts, res.Output, res.Errors
	w.result.Counts.Total = max(w.status.Progress.Total, res.Counts.Done())
	w.result.Usage, w.status.Usage = res.Usage, res.Usage
	w.addArtifact(res.Output)
	w.addArtifact(res.Errors)
}
