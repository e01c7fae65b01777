// Package workflows holds the deterministic orchestration of autoglm-flow.
// No I/O happens here: every side effect is an activity.
package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// a names the activities; its methods are never called through it.
var a *activities.Activities

// TaskWorkflow runs one task through the lifecycle every kind of task
// shares, once its start is known to be the server's (start.go):
// authorize, screen, approval, the kind's run on the nodes (kind.go),
// archive, the outcome. Its status query answers from the start; its
// updates, each vouched for by the API server's signed assertion, let
// people approve, reject, cancel, pause and resume it.
func TaskWorkflow(ctx workflow.Context, in task.Input) (task.Result, error) {
	startKey, err := checkStart(ctx, in)
	if err != nil {
		return task.Result{}, err
	}
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
		w.record(ctx, task.Transition{To: task.Submitted, Actor: in.Submitter, Reason: "submitted", Key: startKey}, true)
	}
	if err := buildChange(ctx); err != nil {
		return task.Result{}, err
	}
	res, err := w.run(ctx)
	if isContinueAsNew(err) {
		return res, err
	}
	w.emitEnd(ctx)
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
	cut    []activities.Piece          // screening's pieces; nil: the batch runs whole
	// training is a fine-tuning task's screened validation file and
	// hyperparameters.
	training training

	rejected  *task.Decision
	cancelled *task.Decision
	paused    bool
	// nonces are the update assertions taken, until they expire.
	nonces nonces
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
	// dispatched: the kind sent work to a node, which may have left
	// partial output.
	dispatched bool
	// emitApproved: reviewers approved the task, and the first dispatch
	// has yet to emit its event (autoglm.task.approved).
	emitApproved bool
}

func (w *taskRun) run(ctx workflow.Context) (task.Result, error) {
	w.result = task.Result{ID: w.in.ID}
	steps := []func(workflow.Context) error{w.authorize, w.screen, w.approval, w.kind().run}
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
	// A local screen follows in this same workflow task.
	to := w.transition
	if w.kind().screensLocally() {
		to = w.passThrough
	}
	to(ctx, task.Authorized, "policy", fmt.Sprintf("%s may submit to tenant %s with model %s", w.in.Submitter, w.in.Tenant, w.in.Model))
	return nil
}

func (w *taskRun) screen(ctx workflow.Context) error {
	res, reason, err := w.kind().screen(ctx)
	if err != nil {
		return err
	}
	w.status.Screening = res.Screening
	w.status.Progress.Total = res.Screening.Requests
	w.addArtifact(res.Source)
	// Approval by policy follows at once.
	to := w.transition
	if res.Screening.AutoApprove {
		to = w.passThrough
	}
	to(ctx, task.Screened, "screening", reason)
	return nil
}

// approval lets policy approve low-risk work, and otherwise waits for a
// quorum of reviewers, a rejection, a cancel or the deadline.
func (w *taskRun) approval(ctx workflow.Context) error {
	sc := w.status.Screening
	deadline := w.rules.ApprovalDeadline
	if w.carried == nil {
		if sc.AutoApprove {
			// The first dispatch, local, and the run follow at once.
			w.passThrough(ctx, task.Approved, "policy", lastOr(sc.Reasons, "auto-approved"))
			return nil
		}
		w.transition(ctx, task.AwaitingApproval, "screening", fmt.Sprintf("waiting for %d approval(s) within %s", w.rules.Quorum, deadline))
		w.approvalBy = workflow.Now(ctx).Add(deadline)
	}
	decided, err := w.awaitApproval(ctx, deadline)
	if err != nil {
		return err
	}
	// The first dispatch emits the approval's event (no command of its
	// own, so histories recorded before it replay).
	w.emitApproved = decided && w.status.State == task.Approved
	if !decided {
		w.transition(ctx, task.Expired, "timer", fmt.Sprintf("no decision within %s", deadline))
	}
	return nil
}

// priority is the task's current priority, with the tenant as fairness
// key so one tenant's backlog does not starve the others.
func (w *taskRun) priority() temporal.Priority {
	return temporal.Priority{PriorityKey: w.status.Priority, FairnessKey: w.in.Tenant}
}

// end archives the report and settles the final state: COMPLETED after a
// clean run, CANCELLED after a cancel, FAILED after an error; REJECTED and
// EXPIRED were set where they happened.
func (w *taskRun) end(ctx workflow.Context, err error) (task.Result, error) {
	if w.cancelled == nil && temporal.IsCanceledError(err) && ctx.Err() != nil {
		w.cancelled = w.cancelledThroughTemporal(ctx)
	}
	switch {
	case w.cancelled != nil && (err == nil || temporal.IsCanceledError(err)):
		w.transition(ctx, task.Cancelled, w.cancelled.Actor, w.cancelled.Reason)
		err = nil
	case err != nil:
		w.status.LastError, w.status.LastErrorType = message(err), task.ErrorType(errorType(err))
		w.transition(ctx, task.Failed, "autoglm", w.status.LastError)
	case !w.status.State.Final():
		w.transition(ctx, task.Completed, "autoglm", w.kind().completed())
	}
	w.result.State = w.status.State
	w.result.Reason = w.status.Audit[len(w.status.Audit)-1].Reason

	// The report is written whatever the outcome, with a context that a
	// cancel of the workflow does not reach.
	actx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if w.dispatched && w.result.Output.Key == "" {
		w.kind().keepPartial(actx)
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

// cancelledThroughTemporal is the decision behind a cancellation that
// came through Temporal itself (the Web UI's "Request Cancellation",
// `temporal workflow cancel`), not through an update: recorded as what it
// is, with the identity the frontend recorded for the request.
func (w *taskRun) cancelledThroughTemporal(ctx workflow.Context) *task.Decision {
	d := &task.Decision{Actor: "temporal", Reason: "cancellation requested through Temporal", Time: workflow.Now(ctx).UTC()}
	lctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	lctx = workflow.WithLocalActivityOptions(lctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second, Summary: "who requested the cancellation",
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5},
	})
	var req activities.CancelRequest
	if err := workflow.ExecuteLocalActivity(lctx, a.CancelRequester).Get(lctx, &req); err != nil {
		workflow.GetLogger(ctx).Warn("who requested the cancellation is not known", "error", err)
		return d
	}
	if req.Identity != "" {
		d.Actor = req.Identity
	}
	if req.Cause != "" {
		d.Reason += ": " + req.Cause
	}
	return d
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
// that runs the workflow, when the stage may (local), else through the
// shared task queue. Local activities keep the
// stage's timeout, retry policy and typed errors; they have no heartbeat
// and no priority, which a short stage does not need.
func (w *taskRun) control(ctx workflow.Context, name, summary string, local bool, tune func(*workflow.ActivityOptions), fn, arg any) workflow.Future {
	ctx = w.stage(ctx, name, summary)
	if tune != nil {
		opts := workflow.GetActivityOptions(ctx)
		tune(&opts)
		ctx = workflow.WithActivityOptions(ctx, opts)
	}
	if !local {
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
	w.record(ctx, task.Transition{To: to, Actor: actor, Reason: reason}, true)
}

// signed is what an update's handler knows of the assertion its
// validator verified.
type signed struct {
	key string // the signing key (assertion.KeyID)
}

// transitionBy is transition for a person's signed decision: the audit
// names the key that signed it.
func (w *taskRun) transitionBy(ctx workflow.Context, to task.State, actor string, by signed, reason string) {
	w.record(ctx, task.Transition{To: to, Actor: actor, Reason: reason, Key: by.key}, true)
}

// passThrough is transition for a state the task leaves again within the
// same workflow task (nothing but local activities in between): the
// search attribute, committed together with the next state's, would never
// be seen, and each upsert is a history event and a visibility write.
func (w *taskRun) passThrough(ctx workflow.Context, to task.State, actor, reason string) {
	w.record(ctx, task.Transition{To: to, Actor: actor, Reason: reason}, false)
}

// record moves the task to tr.To in the audit trail, the status and the
// Web UI's details, and in the TaskState search attribute if upsert.
func (w *taskRun) record(ctx workflow.Context, tr task.Transition, upsert bool) {
	tr.Time, tr.From = workflow.Now(ctx).UTC(), w.status.State
	w.status.Audit = append(w.status.Audit, tr)
	w.status.State = tr.To
	if upsert {
		_ = workflow.UpsertTypedSearchAttributes(ctx, task.AttrState.ValueSet(string(tr.To)))
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s** — %s\n\n%s", tr.To, tr.Reason, auditDetails(w.status)))
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
