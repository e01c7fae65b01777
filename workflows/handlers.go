package workflows

import (
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// registerHandlers sets the status query and the approve, reject, cancel,
// pause, resume and set-priority updates with their validators. Progress is
// not among them: it travels in the inference activity's heartbeat details,
// which cost no history event.
func (w *taskRun) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, task.QueryStatus, func() (task.Status, error) {
		return w.status, nil
	}); err != nil {
		return err
	}
	decisions := []struct {
		update   string
		validate func(task.DecisionRequest, assertion.Claims) error
		apply    func(workflow.Context, task.DecisionRequest, signed)
	}{
		{task.UpdateApprove, w.validateApprove, w.approve},
		{task.UpdateReject, w.validateReject, w.reject},
		{task.UpdateCancel, w.validateCancel, w.cancel},
		{task.UpdatePause, w.validatePause, w.pause},
		{task.UpdateResume, w.validateResume, w.resume},
		{task.UpdateSetPriority, w.validateSetPriority, w.setPriority},
	}
	// There are no signal copies of these updates: a signal cannot be
	// refused to its sender, and one without a valid assertion would only
	// fill the history. Validators do not run on replay, so histories
	// recorded before assertions replay unchanged.
	for _, d := range decisions {
		err := workflow.SetUpdateHandlerWithOptions(ctx, d.update,
			func(ctx workflow.Context, req task.DecisionRequest) (task.Status, error) {
				// The validator verified this token; the handler, which
				// also runs on replay, only reads it.
				c, _ := assertion.Peek(req.Assertion)
				w.nonces.use(c.Nonce, c.Expires, workflow.Now(ctx))
				d.apply(ctx, req, signed{key: c.Key})
				return w.status, nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req task.DecisionRequest) error {
				// Who acts, and their roles in the tenant, come from the
				// server's signature, never from the caller: req.Actor is
				// only what the assertion binds, and the signature covers
				// the reason and priority too.
				claims, err := assertion.VerifyInput(trustedKeys(), req.Assertion, w.in.ID, d.update, req.Actor, req.Digest(), workflow.Now(ctx))
				if err != nil {
					return asUpdateError(err)
				}
				if w.nonces.used(claims.Nonce) {
					return asUpdateError(task.Errorf(task.PermissionDenied, "this %s assertion has been used already: each is good for one update; send the %s through the autoglm server again", d.update, d.update))
				}
				if err := req.CheckReason(); err != nil {
					return asUpdateError(err)
				}
				return asUpdateError(d.validate(req, claims))
			}},
		)
		if err != nil {
			return err
		}
	}
	return nil
}

// check asks the role table whether actor, with the roles the server
// signed, may take action on this task. Before the task is authorized only
// its submitter may act (to cancel it): whether the tenant exists and the
// submitter may submit is not known yet.
func (w *taskRun) check(actor string, roles []authz.Role, action authz.Action) error {
	if w.rules == nil && (actor != w.in.Submitter || action != authz.Cancel) {
		return task.Errorf(task.WrongState, "task %s is still being authorized; try again in a moment", w.in.ID)
	}
	return authz.Allowed(w.in.Tenant, actor, roles, action, w.in.Submitter)
}

// validateApprove counts people, not signatures: an actor approves once,
// and a break-glass key, which can sign any name, approves once whatever
// names it signs, so it cannot meet a quorum of two or more alone.
func (w *taskRun) validateApprove(req task.DecisionRequest, c assertion.Claims) error {
	if w.status.State != task.AwaitingApproval {
		return task.Errorf(task.WrongState, "task %s is %s, not awaiting approval", w.in.ID, w.status.State)
	}
	if err := w.check(req.Actor, c.Roles, authz.Approve); err != nil {
		return err
	}
	if slices.ContainsFunc(w.status.Approvals, func(d task.Decision) bool { return d.Actor == req.Actor }) {
		return task.Errorf(task.InvalidInput, "%s has already approved task %s; %d approval(s) from different reviewers are needed", req.Actor, w.in.ID, w.status.Quorum)
	}
	if isBreakGlass(c.Key) && slices.ContainsFunc(w.status.Approvals, func(d task.Decision) bool { return d.Key == c.Key }) {
		return task.Errorf(task.InvalidInput, "break-glass key %s has already approved task %s; one key counts as one person, and %d approval(s) from different reviewers are needed", c.Key, w.in.ID, w.status.Quorum)
	}
	return nil
}

func (w *taskRun) approve(ctx workflow.Context, req task.DecisionRequest, by signed) {
	w.status.Approvals = append(w.status.Approvals, task.Decision{Actor: req.Actor, Reason: req.Reason, Time: workflow.Now(ctx).UTC(), Key: by.key})
	if len(w.status.Approvals) >= w.status.Quorum {
		w.transitionBy(ctx, task.Approved, req.Actor, by, orDefault(req.Reason, fmt.Sprintf("approved (%d of %d)", len(w.status.Approvals), w.status.Quorum)))
		return
	}
	// A partial quorum is part of the audit trail too, though the state
	// stays where it is.
	w.transitionBy(ctx, task.AwaitingApproval, req.Actor, by, fmt.Sprintf("approved (%d of %d)", len(w.status.Approvals), w.status.Quorum))
}

func (w *taskRun) validateReject(req task.DecisionRequest, c assertion.Claims) error {
	if w.status.State != task.AwaitingApproval {
		return task.Errorf(task.WrongState, "task %s is %s, not awaiting approval", w.in.ID, w.status.State)
	}
	if req.Reason == "" {
		return task.Errorf(task.InvalidInput, "a rejection needs a reason")
	}
	return w.check(req.Actor, c.Roles, authz.Reject)
}

func (w *taskRun) reject(ctx workflow.Context, req task.DecisionRequest, by signed) {
	w.rejected = &task.Decision{Actor: req.Actor, Reason: req.Reason, Time: workflow.Now(ctx).UTC(), Key: by.key}
	w.transitionBy(ctx, task.Rejected, req.Actor, by, req.Reason)
}

func (w *taskRun) validateCancel(req task.DecisionRequest, c assertion.Claims) error {
	if w.status.State.Final() || w.status.State == task.Archiving {
		return task.Errorf(task.WrongState, "task %s is %s and can no longer be cancelled", w.in.ID, w.status.State)
	}
	if w.cancelled != nil {
		return task.Errorf(task.WrongState, "task %s is already being cancelled by %s", w.in.ID, w.cancelled.Actor)
	}
	return w.check(req.Actor, c.Roles, authz.Cancel)
}

func (w *taskRun) cancel(ctx workflow.Context, req task.DecisionRequest, by signed) {
	w.cancelled = &task.Decision{Actor: req.Actor, Reason: orDefault(req.Reason, "cancelled by "+req.Actor), Time: workflow.Now(ctx).UTC(), Key: by.key}
	if w.cancelStage != nil {
		w.cancelStage()
	}
}

func (w *taskRun) validatePause(req task.DecisionRequest, c assertion.Claims) error {
	if w.status.State != task.Running && w.status.State != task.Dispatched {
		return task.Errorf(task.WrongState, "task %s is %s; only a running task can be paused", w.in.ID, w.status.State)
	}
	if w.cancelled != nil {
		return task.Errorf(task.WrongState, "task %s is being cancelled", w.in.ID)
	}
	// Every piece has answered: cancelling the merge would fail the task,
	// and there is no work left to pause.
	if w.status.Stage == "merge" {
		return task.Errorf(task.WrongState, "task %s has finished inference and is joining its pieces' outputs; it can no longer be paused", w.in.ID)
	}
	return w.check(req.Actor, c.Roles, authz.Pause)
}

// pause stops the inference stage; the engine records a checkpoint, and
// resume starts from it.
func (w *taskRun) pause(ctx workflow.Context, req task.DecisionRequest, by signed) {
	w.paused = true
	w.pauses++
	w.transitionBy(ctx, task.Paused, req.Actor, by, orDefault(req.Reason, "paused by "+req.Actor))
	if w.cancelStage != nil {
		w.cancelStage()
	}
}

func (w *taskRun) validateResume(req task.DecisionRequest, c assertion.Claims) error {
	if w.status.State != task.Paused {
		return task.Errorf(task.WrongState, "task %s is %s, not paused", w.in.ID, w.status.State)
	}
	return w.check(req.Actor, c.Roles, authz.Resume)
}

func (w *taskRun) resume(ctx workflow.Context, req task.DecisionRequest, by signed) {
	w.paused = false
	w.transitionBy(ctx, task.Running, req.Actor, by, orDefault(req.Reason, "resumed by "+req.Actor+"; inference continues from its checkpoint"))
}

func (w *taskRun) validateSetPriority(req task.DecisionRequest, c assertion.Claims) error {
	if req.Priority < 1 || req.Priority > 5 {
		return task.Errorf(task.InvalidInput, "priority %d is outside 1 (highest) to 5", req.Priority)
	}
	if w.status.State.Final() {
		return task.Errorf(task.WrongState, "task %s is %s", w.in.ID, w.status.State)
	}
	return w.check(req.Actor, c.Roles, authz.SetPriority)
}

// setPriority applies to the activities the task schedules from now on.
func (w *taskRun) setPriority(ctx workflow.Context, req task.DecisionRequest, by signed) {
	was := w.status.Priority
	w.status.Priority = req.Priority
	_ = workflow.UpsertTypedSearchAttributes(ctx, task.AttrPriority.ValueSet(int64(req.Priority)))
	w.transitionBy(ctx, w.status.State, req.Actor, by, fmt.Sprintf("priority %d (was %d)", req.Priority, was))
}

// asUpdateError gives a refused update a stable error type, so the caller
// can tell "not allowed" from "not now".
func asUpdateError(err error) error {
	if err == nil {
		return nil
	}
	return temporal.NewApplicationError(err.Error(), string(task.TypeOf(err)))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
