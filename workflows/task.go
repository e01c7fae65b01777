// Package workflows holds the deterministic orchestration of autoglm-flow.
// No I/O happens here: every side effect is an activity.
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

// a names the activities; its methods are never called through it.
var a *activities.Activities

// TaskWorkflow runs one task through its lifecycle: authorize, screen,
// approval, dispatch, inference, archive. Its status query answers from
// the start; its updates, each vouched for by the API server's signed
// assertion, let people approve, reject, cancel, pause and resume it.
func TaskWorkflow(ctx workflow.Context, in task.Input) (task.Result, error) {
	w := &taskRun{
		in: in,
		status: task.Status{
			ID: in.ID, Tenant: in.Tenant, Submitter: in.Submitter, Model: in.Model,
			Kind: in.Kind, Priority: in.Priority, Origin: in.Origin, Audit: []task.Transition{},
		},
	}
	var c *carry
	if len(in.Carry) > 0 {
		// A run continued as new: take up where the last one stopped.
		var err error
		if c, err = decodeCarry(in.Carry); err != nil {
			return task.Result{}, temporal.NewNonRetryableApplicationError("unreadable carried state: "+err.Error(), string(task.InvalidInput), err)
		}
		w.in.Carry = nil
		w.restore(ctx, c)
	}
	// Handlers first, before anything blocks, so no early caller is lost.
	if err := w.registerHandlers(ctx); err != nil {
		return task.Result{}, err
	}
	if c == nil {
		w.transition(ctx, task.Submitted, in.Submitter, "submitted")
	}
	res, err := w.run(ctx)
	if isContinueAsNew(err) {
		return res, err
	}
	w.announce(ctx)
	// Updates still running must finish before the workflow closes.
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return res, err
}

// taskRun is the state of one task workflow.
type taskRun struct {
	in     task.Input
	status task.Status
	rules  *activities.AuthorizeResult // nil until authorized
	source task.ObjectRef              // the input as screened
	shards []activities.Shard          // nil: the batch runs whole

	rejected  *task.Decision
	cancelled *task.Decision
	paused    bool
	// pauses counts pause requests, so that a pause followed at once by a
	// resume is still known to have stopped the stage.
	pauses int
	// cancelStage cancels the stage that is running, so a cancel takes
	// effect at once, not after the stage.
	cancelStage workflow.CancelFunc
	result      task.Result

	// carried is the state the previous run handed over; nil on a
	// task's first run.
	carried *carry
	// approvalBy is when the approval wait expires.
	approvalBy time.Time
	// canVersion is the changeContinueAsNew version, once asked.
	canVersion *workflow.Version
	// local: the short control-plane stages run as local activities
	// (changeLocalControlStages).
	local bool
	// handBack: a node may hand the inference back (changeHandBack).
	handBack bool
	// speed is the changeLocalScreen version: 1, a small input's screen
	// is local; 2, also the end's announcement, and the transitions
	// that the next one follows in the same workflow task set no search
	// attribute (passThrough).
	speed workflow.Version
}

func (w *taskRun) run(ctx workflow.Context) (task.Result, error) {
	w.result = task.Result{ID: w.in.ID}
	// Tasks started since this change run the short control-plane stages
	// as local activities; older histories replay the task-queue path.
	w.local = workflow.GetVersion(ctx, changeLocalControlStages, workflow.DefaultVersion, 1) >= 1
	steps := []func(workflow.Context) error{w.authorize, w.screen, w.approval, w.infer}
	if w.carried != nil {
		if w.cancelled != nil {
			return w.end(ctx, nil)
		}
		steps = steps[2:]
		if w.carried.Step == carryInfer {
			steps = steps[1:]
		}
	}
	for _, step := range steps {
		if err := step(ctx); isContinueAsNew(err) {
			return task.Result{}, err
		} else if err != nil {
			return w.end(ctx, err)
		}
		if w.cancelled != nil || w.status.State.Final() {
			return w.end(ctx, nil)
		}
	}
	// end's COMPLETED follows at once.
	w.passThrough(ctx, task.Archiving, "autoglm", "archiving outputs and report")
	return w.end(ctx, nil)
}

func (w *taskRun) authorize(ctx workflow.Context) error {
	var res activities.AuthorizeResult
	err := w.control(ctx, "authorize", "check tenant, role and model", true, nil, a.Authorize, activities.AuthorizeInput{Task: w.in}).Get(ctx, &res)
	if err != nil {
		return err
	}
	w.rules = &res
	w.status.Quorum = res.Quorum
	if w.local {
		w.speed = workflow.GetVersion(ctx, changeLocalScreen, workflow.DefaultVersion, 2)
	}
	// A local screen follows in this same workflow task.
	to := w.transition
	if w.localScreen() {
		to = w.passThrough
	}
	to(ctx, task.Authorized, "policy", fmt.Sprintf("%s may submit to tenant %s with model %s", w.in.Submitter, w.in.Tenant, w.in.Model))
	return nil
}

func (w *taskRun) screen(ctx workflow.Context) error {
	var res activities.ScreenResult
	err := w.control(ctx, "screen", "count requests, check size and words", w.localScreen(), func(o *workflow.ActivityOptions) {
		o.StartToCloseTimeout, o.HeartbeatTimeout = 30*time.Minute, time.Minute
	}, a.Screen, activities.ScreenInput{Task: w.in, Rules: *w.rules}).Get(ctx, &res)
	if err != nil {
		return err
	}
	w.status.Screening = res.Screening
	w.status.Progress.Total = res.Screening.Requests
	w.addArtifact(res.Source)
	w.source, w.shards = res.Source, res.Shards
	reason := fmt.Sprintf("%d request(s), %d bytes", res.Screening.Requests, res.Screening.Bytes)
	if len(res.Shards) > 0 {
		reason += fmt.Sprintf(", in %d shards", len(res.Shards))
	}
	// Approval by policy follows at once.
	to := w.transition
	if res.Screening.AutoApprove {
		to = w.passThrough
	}
	to(ctx, task.Screened, "screening", reason)
	return nil
}

// localScreen tells whether the input is screened in a local activity, in
// the first workflow task with authorize: a small one, on the local path
// since changeLocalScreen. A large one keeps the regular activity, whose
// heartbeats show it is still reading.
func (w *taskRun) localScreen() bool {
	return w.local && w.speed >= 1 && w.in.Source.Size <= maxLocalScreenBytes
}

// approval lets policy approve low-risk work, and otherwise waits for a
// quorum of reviewers, a rejection, a cancel or the deadline.
func (w *taskRun) approval(ctx workflow.Context) error {
	sc := w.status.Screening
	deadline := w.rules.ApprovalDeadline
	if w.carried == nil {
		if sc.AutoApprove {
			// The first dispatch, local, and the run follow at once.
			to := w.transition
			if w.local {
				to = w.passThrough
			}
			to(ctx, task.Approved, "policy", lastOr(sc.Reasons, "auto-approved"))
			return nil
		}
		w.transition(ctx, task.AwaitingApproval, "screening", fmt.Sprintf("waiting for %d approval(s) within %s", w.rules.Quorum, deadline))
		w.approvalBy = workflow.Now(ctx).Add(deadline)
		w.announceApproval(ctx, task.EventTaskAwaitingApproval)
	}
	decided, err := w.awaitApproval(ctx, deadline)
	if err != nil {
		return err
	}
	if decided && w.status.State == task.Approved {
		w.announceApproval(ctx, task.EventTaskApproved)
	}
	if !decided {
		w.transition(ctx, task.Expired, "timer", fmt.Sprintf("no decision within %s", deadline))
	}
	return nil
}

// piece is one inference activity of the task: the whole batch, or one
// of its shards.
type piece struct {
	index int
	shard *activities.Shard
	total int
	node  activities.DispatchResult
	avoid []string // nodes that did not start this piece in time
	res   *activities.InferResult
}

// infer dispatches the batch (or each of its shards) to a node and runs it
// there, shards in parallel. A pause stops every piece (the engine records
// a checkpoint) until resume; a node that does not start a piece in time is
// replaced; a piece that fails stops the others. Every new attempt resumes
// from the last checkpoint, and a finished shard is not run again.
func (w *taskRun) infer(ctx workflow.Context) error {
	// A node whose model server stays down hands the work back, for
	// another node (changeHandBack); older tasks hold as long as it lasts.
	w.handBack = workflow.GetVersion(ctx, changeHandBack, workflow.DefaultVersion, 1) >= 1
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
		if again && w.continueAsNewNow(ctx) {
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
			return w.mergeShards(ctx, pieces)
		case err == nil:
			w.transition(ctx, task.Dispatched, "dispatch", redispatch)
		case w.cancelled != nil:
			return err
		case !w.paused && w.pauses != pauses && temporal.IsCanceledError(err) &&
			workflow.GetVersion(ctx, changePauseResumeRace, workflow.DefaultVersion, 1) >= 1:
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

// Change IDs of TaskWorkflow, for workflow.GetVersion: each names the
// change it guards (see the README's versioning policy).
const (
	// changePauseResumeRace: a resume that lands before the paused stage
	// has stopped runs the stage again instead of failing the task.
	changePauseResumeRace = "durability-pause-resume-race"
	// changeLocalControlStages: authorize, the first dispatch and archive
	// run as local activities.
	changeLocalControlStages = "perf-local-control-stages"
	// changeHandBack: the inference may end with a HandBack error (its
	// node's model server down past the worker's limit), and the piece is
	// dispatched again, avoiding that node.
	changeHandBack = "replay-outage-hand-back"
	// changeLocalScreen: on the local path, a small input's screen runs
	// as a local activity too (1); so does the end's announcement, and
	// passing states set no search attribute (2).
	changeLocalScreen = "speed-local-screen"
)

// maxLocalScreenBytes is the largest input screened in a local activity:
// read in well under the workflow task timeout, so the first workflow
// task needs no heartbeat.
const maxLocalScreenBytes = 1 << 20

func (w *taskRun) pieces() []*piece {
	if len(w.shards) == 0 {
		return []*piece{{total: w.status.Progress.Total}}
	}
	ps := make([]*piece, len(w.shards))
	for i := range w.shards {
		ps[i] = &piece{index: i, shard: &w.shards[i], total: w.shards[i].Requests}
	}
	return ps
}

// dispatchAll picks a node for each unfinished piece without one, spreading
// shards over the nodes before doubling up.
func (w *taskRun) dispatchAll(ctx workflow.Context, pieces []*piece) error {
	var chosen, names []string
	for _, p := range pieces {
		if p.res != nil {
			continue
		}
		if p.node.Node == "" {
			var node activities.DispatchResult
			in := activities.DispatchInput{TaskID: w.in.ID, Model: w.in.Model, Avoid: append(p.avoid, chosen...)}
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
			p.node = node
		}
		chosen = append(chosen, p.node.Node)
		if !slices.Contains(names, p.node.Node) {
			names = append(names, p.node.Node)
		}
	}
	w.status.Node = strings.Join(names, ", ")
	// runAll's RUNNING follows at once.
	w.passThrough(ctx, task.Dispatched, "dispatch", fmt.Sprintf("%d piece(s) on node %s", len(chosen), w.status.Node))
	return nil
}

// runAll runs the unfinished pieces in parallel and waits for all of them.
// It returns the first error, and why pieces must be dispatched again, if
// any: a node did not start one in time, or handed one back (their nodes
// are cleared for dispatchAll).
func (w *taskRun) runAll(ctx workflow.Context, pieces []*piece) (firstErr error, redispatch string) {
	sctx := w.stage(ctx, "inference", fmt.Sprintf("%d request(s) on %s", w.status.Progress.Total, w.status.Node))
	stop := w.cancelStage
	w.transition(ctx, task.Running, "dispatch", "inference on "+w.status.Node)
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
			switch {
			case err == nil:
				p.res = &res
				w.pieceCounts(p.index, res.Counts)
				w.status.Attempts = max(w.status.Attempts, int(res.Attempt))
				// Work sent to a model's queue shows the node that finished it.
				if len(pieces) == 1 && res.Node != "" {
					w.status.Node = res.Node
				}
			case isScheduleToStartTimeout(err):
				p.avoid, p.node = append(p.avoid, p.node.Node), activities.DispatchResult{}
				redispatch = fmt.Sprintf("a node did not start the work within %s; dispatching again", w.nodeStartTimeout())
			case w.handBack && handedBack(err) != nil:
				hb := handedBack(err)
				if !slices.Contains(p.avoid, hb.Node) {
					p.avoid = append(p.avoid, hb.Node)
				}
				p.node = activities.DispatchResult{}
				w.pieceCounts(p.index, hb.Counts)
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

// stopped keeps the progress a cancelled attempt reported with its
// cancellation.
func (w *taskRun) stopped(p *piece, err error) {
	var ce *temporal.CanceledError
	var m activities.Progress
	if errors.As(err, &ce) && ce.HasDetails() && ce.Details(&m) == nil {
		w.pieceCounts(p.index, m.Counts)
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
	summary := fmt.Sprintf("inference: %d request(s) on %s", p.total, p.node.Node)
	if p.shard != nil {
		summary = fmt.Sprintf("inference: shard %d of %d, lines %d-%d, on %s", p.shard.Index+1, len(w.shards), p.shard.FirstLine, p.shard.LastLine, p.node.Node)
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
		TaskID: w.in.ID, Tenant: w.in.Tenant, Model: w.in.Model, Source: w.source, Total: p.total, Shard: p.shard,
		HandBack: w.handBack,
	})
}

// mergeShards joins the shards' outputs; a batch run whole is already
// merged.
func (w *taskRun) mergeShards(ctx workflow.Context, pieces []*piece) error {
	res := *pieces[0].res
	if len(pieces) > 1 {
		in := activities.MergeInput{TaskID: w.in.ID, Tenant: w.in.Tenant}
		for _, p := range pieces {
			in.Shards = append(in.Shards, *p.res)
		}
		mctx := w.stage(ctx, "merge", fmt.Sprintf("join %d shards", len(pieces)))
		mctx = workflow.WithStartToCloseTimeout(mctx, time.Hour)
		if err := workflow.ExecuteActivity(mctx, a.MergeShards, in).Get(ctx, &res); err != nil {
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

// priority is the task's current priority, with the tenant as fairness
// key so one tenant's backlog does not starve the others.
func (w *taskRun) priority() temporal.Priority {
	return temporal.Priority{PriorityKey: w.status.Priority, FairnessKey: w.in.Tenant}
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

// end archives the report and settles the final state: COMPLETED after a
// clean run, CANCELLED after a cancel, FAILED after an error; REJECTED and
// EXPIRED were set where they happened.
func (w *taskRun) end(ctx workflow.Context, err error) (task.Result, error) {
	if w.cancelled == nil && temporal.IsCanceledError(err) && ctx.Err() != nil {
		w.cancelled = &task.Decision{Actor: "temporal", Reason: "the workflow was cancelled through Temporal", Time: workflow.Now(ctx).UTC()}
	}
	switch {
	case w.cancelled != nil && (err == nil || temporal.IsCanceledError(err)):
		w.transition(ctx, task.Cancelled, w.cancelled.Actor, w.cancelled.Reason)
		err = nil
	case err != nil:
		w.status.LastError, w.status.LastErrorType = message(err), task.ErrorType(errorType(err))
		w.transition(ctx, task.Failed, "autoglm", w.status.LastError)
	case !w.status.State.Final():
		w.transition(ctx, task.Completed, "autoglm", fmt.Sprintf("%d completed, %d failed", w.result.Counts.Completed, w.result.Counts.Failed))
	}
	w.result.State = w.status.State
	w.result.Reason = w.status.Audit[len(w.status.Audit)-1].Reason

	// The report is written whatever the outcome, with a context that a
	// cancel of the workflow does not reach.
	actx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if w.status.Node != "" && w.result.Output.Key == "" {
		w.collectPartial(actx)
	}
	var arch activities.ArchiveResult
	aerr := w.control(actx, "archive", "write report and manifest", true, nil, a.Archive, activities.ArchiveInput{Status: w.status, Result: w.result}).Get(actx, &arch)
	if aerr == nil {
		w.result.Report = arch.Report
		w.addArtifact(arch.Report)
		w.addArtifact(arch.Manifest)
	}
	if err != nil {
		return w.result, temporal.NewNonRetryableApplicationError(w.status.LastError, errorType(err), err)
	}
	if aerr != nil {
		return w.result, aerr
	}
	return w.result, outcomeError(ctx, w.result)
}

// collectPartial merges what inference answered before a cancel or a
// failure into output.jsonl and errors.jsonl, so partial results are kept.
func (w *taskRun) collectPartial(ctx workflow.Context) {
	var res activities.InferResult
	err := workflow.ExecuteActivity(w.stage(ctx, "collect", "keep partial output"), a.Collect,
		activities.CollectInput{TaskID: w.in.ID, Tenant: w.in.Tenant, Shards: len(w.shards)}).Get(ctx, &res)
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

// stage returns the context for one stage's activity with the defaults
// every control-plane activity shares, and records the stage for the
// status query and the Web UI.
func (w *taskRun) stage(ctx workflow.Context, name, summary string) workflow.Context {
	w.status.Stage = name
	ctx, w.cancelStage = workflow.WithCancel(ctx)
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		Summary:             name + ": " + summary,
		Priority:            w.priority(),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: 10, NonRetryableErrorTypes: nonRetryable,
		},
	})
}

// control runs one short control-plane stage's activity with the options of
// stage (changed by tune, if given): as a local activity, in the worker
// that runs the workflow, when the task runs that path and the stage may
// (local), else through the shared task queue. Local activities keep the
// stage's timeout, retry policy and typed errors; they have no heartbeat
// and no priority, which a short stage does not need.
func (w *taskRun) control(ctx workflow.Context, name, summary string, local bool, tune func(*workflow.ActivityOptions), fn, arg any) workflow.Future {
	ctx = w.stage(ctx, name, summary)
	if tune != nil {
		opts := workflow.GetActivityOptions(ctx)
		tune(&opts)
		ctx = workflow.WithActivityOptions(ctx, opts)
	}
	if !w.local || !local {
		return workflow.ExecuteActivity(ctx, fn, arg)
	}
	opts := workflow.GetActivityOptions(ctx)
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: opts.StartToCloseTimeout,
		RetryPolicy:         opts.RetryPolicy,
		Summary:             opts.Summary,
	})
	return workflow.ExecuteLocalActivity(ctx, fn, arg)
}

// nonRetryable are the error types no retry can fix. Activities already
// mark them non-retryable; listing them here too keeps a mistake there
// from retrying a permission error ten times.
var nonRetryable = []string{
	string(task.InvalidInput), string(task.UnknownTenant), string(task.PermissionDenied),
	string(task.ModelNotAllowed), string(task.QuotaExceeded), string(task.ScreeningFailed),
	string(task.ContextLengthExceeded),
}

// transition moves the task to state, appends it to the audit trail, and
// updates the search attribute the Web UI and `autoglm list` filter on.
func (w *taskRun) transition(ctx workflow.Context, to task.State, actor, reason string) {
	w.record(ctx, to, actor, reason, true)
}

// passThrough is transition for a state the task leaves again within the
// same workflow task (nothing but local activities in between): the
// search attribute, committed together with the next state's, would never
// be seen, and each upsert is a history event and a visibility write. On
// paths before changeLocalScreen version 2 it upserts as transition does.
func (w *taskRun) passThrough(ctx workflow.Context, to task.State, actor, reason string) {
	w.record(ctx, to, actor, reason, w.speed < 2)
}

// record moves the task to state to in the audit trail, the status and the
// Web UI's details, and in the TaskState search attribute if upsert.
func (w *taskRun) record(ctx workflow.Context, to task.State, actor, reason string, upsert bool) {
	w.status.Audit = append(w.status.Audit, task.Transition{
		Time: workflow.Now(ctx).UTC(), From: w.status.State, To: to, Actor: actor, Reason: reason,
	})
	w.status.State = to
	if upsert {
		_ = workflow.UpsertTypedSearchAttributes(ctx, task.AttrState.ValueSet(string(to)))
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s** — %s\n\n%s", to, reason, auditDetails(w.status.Audit)))
}

func (w *taskRun) addArtifact(r task.ObjectRef) {
	if r.Key == "" {
		return
	}
	for i, have := range w.status.Artifacts {
		if have.Key == r.Key {
			w.status.Artifacts[i] = r
			return
		}
	}
	w.status.Artifacts = append(w.status.Artifacts, r)
}

// message is the sentence a person should read for err: the innermost
// application error's message, without the SDK's wrapping.
func message(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Message()
	}
	return err.Error()
}

func errorType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() != "" {
		return ae.Type()
	}
	return "TaskFailed"
}

func lastOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[len(s)-1]
}
