package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// accessRun is the state of one ModelAccessWorkflow.
type accessRun struct {
	req      task.AccessRequest
	status   task.AccessStatus
	decision *task.Decision
	approved bool
}

// ModelAccessWorkflow takes a request for a new model through four
// stages: automatic screening (upstream and licence allow-lists, size),
// a security audit of its files, a reviewer's decision before a deadline,
// and the notification of the requester (a webhook event and the audit
// trail). On approval the model is mirrored and allowed for the tenant. A
// refusal at any stage ends it REJECTED with the reason.
func ModelAccessWorkflow(ctx workflow.Context, req task.AccessRequest) (task.AccessStatus, error) {
	w := &accessRun{req: req, status: task.AccessStatus{
		ID: req.ID, Tenant: req.Tenant, Requester: req.Requester, Model: req.Model.Name, Audit: []task.Transition{},
	}}
	if err := w.registerHandlers(ctx); err != nil {
		return w.status, err
	}
	w.move(ctx, task.Submitted, task.StageScreening, req.Requester, "requested "+req.Model.Repo+"@"+req.Model.Revision)
	err := w.run(ctx)
	if err != nil {
		w.move(ctx, task.Failed, w.status.Stage, "autoglm", message(err))
	}
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	return w.status, err
}

func (w *accessRun) run(ctx workflow.Context) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts: 5, NonRetryableErrorTypes: nonRetryable,
		},
	})
	var sc activities.ScreenAccessResult
	if err := workflow.ExecuteActivity(actx, mirror.ScreenAccessRequest, w.req).Get(ctx, &sc); err != nil {
		return err
	}
	if sc.Refused != "" {
		return w.refuse(ctx, "screening", sc.Refused)
	}
	found := fmt.Sprintf("%s licence, %d files, %d bytes", sc.Licence, len(sc.Files), sc.Bytes)
	if sc.Commit != "" {
		found += " at commit " + sc.Commit
	}
	w.move(ctx, task.Screened, task.StageSecurityAudit, "screening", found)

	var audit activities.AuditResult
	if err := workflow.ExecuteActivity(actx, mirror.AuditModelFiles, activities.AuditInput{Request: w.req, Files: sc.Files, Commit: sc.Commit}).Get(ctx, &audit); err != nil {
		return err
	}
	w.status.Findings = audit.Findings
	if audit.Refused != "" {
		return w.refuse(ctx, "security-audit", audit.Refused)
	}

	w.status.Deadline = workflow.Now(ctx).Add(sc.ApprovalDeadline).UTC()
	w.move(ctx, task.AwaitingApproval, task.StageApproval, "security-audit", fmt.Sprintf("%d file(s) passed; waiting for a reviewer within %s", len(sc.Files), sc.ApprovalDeadline))
	decided, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout: sc.ApprovalDeadline, TimerOptions: workflow.TimerOptions{Summary: "approval deadline"},
	}, func() bool { return w.decision != nil })
	if err != nil {
		return err
	}
	if !decided {
		w.move(ctx, task.Expired, task.StageNotification, "timer", fmt.Sprintf("no decision within %s", sc.ApprovalDeadline))
		w.notify(ctx)
		return nil
	}
	if !w.approved {
		return w.refuse(ctx, w.decision.Actor, orDefault(w.decision.Reason, "rejected by a reviewer"))
	}
	w.move(ctx, task.Approved, task.StageNotification, w.decision.Actor, orDefault(w.decision.Reason, "approved"))
	w.notify(ctx)

	in := screened(w.req.Model, sc)
	w.move(ctx, task.Running, task.StageMirror, "autoglm", "mirroring "+in.Repo+"@"+in.Revision)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: mirrorID(in, sc)})
	if err := workflow.ExecuteChildWorkflow(cctx, task.MirrorWorkflowType, in).Get(ctx, &w.status.Mirror); err != nil {
		return err
	}
	var ref task.ObjectRef
	if err := workflow.ExecuteActivity(actx, mirror.AllowModel, activities.AllowModelInput{Request: w.req, Approver: w.decision.Actor, Mirror: w.status.Mirror, Commit: sc.Commit}).Get(ctx, &ref); err != nil {
		return err
	}
	w.move(ctx, task.Completed, task.StageMirror, "autoglm", fmt.Sprintf("mirrored (%d files, %d bytes) and allowed for tenant %s", w.status.Mirror.Files, w.status.Mirror.Bytes, w.req.Tenant))
	return nil
}

// screened is the mirror of what screening recorded: exactly its files,
// at its commit, kept under the commit (models/<name>/<commit>/), so what
// was approved is what nodes load. Histories recorded before screening
// resolved a commit mirror the requested revision, as they did.
func screened(m task.MirrorInput, sc activities.ScreenAccessResult) task.MirrorInput {
	if sc.Commit == "" {
		return m
	}
	m.Revision, m.Commit, m.Files = sc.Commit, sc.Commit, sc.Files
	return m
}

// mirrorID is the child's workflow ID. Requests screened before the
// commit was resolved started their mirror under the ID of that time,
// which replay must find again.
func mirrorID(in task.MirrorInput, sc activities.ScreenAccessResult) string {
	if sc.Commit == "" {
		return "mirror-" + in.Name + "-" + in.Revision
	}
	return task.MirrorWorkflowID(in.Name, in.Revision)
}

// refuse ends the request REJECTED by actor (a stage or a reviewer) and
// tells the requester.
func (w *accessRun) refuse(ctx workflow.Context, actor, reason string) error {
	w.status.Reason = reason
	w.move(ctx, task.Rejected, task.StageNotification, actor, reason)
	w.notify(ctx)
	return nil
}

// notify sends the decision to the tenant's webhooks; the audit trail
// already holds it. A failure to send is logged, never the request's.
func (w *accessRun) notify(ctx workflow.Context) {
	ev := task.Event{
		Tenant: w.req.Tenant, ID: "evt_access_" + w.req.ID + "_" + string(w.status.State), Type: task.EventAccessRequestDecided,
		CreatedAt: workflow.Now(ctx).UTC(),
		Data:      map[string]string{"id": w.req.ID, "model": w.req.Model.Name, "state": string(w.status.State), "requester": w.req.Requester},
	}
	ectx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 20, MaximumInterval: 30 * time.Second, NonRetryableErrorTypes: nonRetryable},
	})
	if err := workflow.ExecuteActivity(ectx, a.EmitEvent, ev).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("access decision not sent to webhooks", "event", ev.ID, "error", err)
	}
}

func (w *accessRun) move(ctx workflow.Context, to task.State, stage, actor, reason string) {
	w.status.Audit = append(w.status.Audit, task.Transition{Time: workflow.Now(ctx).UTC(), From: w.status.State, To: to, Actor: actor, Reason: reason})
	w.status.State, w.status.Stage = to, stage
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s** (%s) — %s", to, stage, reason))
}

func (w *accessRun) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, task.QueryStatus, func() (task.AccessStatus, error) { return w.status, nil }); err != nil {
		return err
	}
	for _, d := range []struct {
		name    string
		action  authz.Action
		approve bool
	}{{task.UpdateApprove, authz.Approve, true}, {task.UpdateReject, authz.Reject, false}} {
		err := workflow.SetUpdateHandlerWithOptions(ctx, d.name,
			func(ctx workflow.Context, req task.DecisionRequest) (task.AccessStatus, error) {
				w.decision = &task.Decision{Actor: req.Actor, Reason: req.Reason, Time: workflow.Now(ctx).UTC()}
				w.approved = d.approve
				return w.status, nil
			},
			workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req task.DecisionRequest) error {
				// As for tasks: who decides, and their roles in the
				// tenant, come from the API server's signature (or an
				// operator's break-glass key), never from the caller.
				// Validators do not run on replay, so recorded histories
				// replay unchanged.
				claims, err := assertion.Verify(trustedKeys(), req.Assertion, w.req.ID, task.AccessAssertionAction(d.name), req.Actor, workflow.Now(ctx))
				if err != nil {
					return asUpdateError(err)
				}
				if w.status.State != task.AwaitingApproval || w.decision != nil {
					return asUpdateError(task.Errorf(task.WrongState, "access request %s is %s, not awaiting approval", w.req.ID, w.status.State))
				}
				if err := req.CheckReason(); err != nil {
					return asUpdateError(err)
				}
				if d.action == authz.Reject && req.Reason == "" {
					return asUpdateError(task.Errorf(task.InvalidInput, "a rejection needs a reason"))
				}
				return asUpdateError(authz.Allowed(w.req.Tenant, req.Actor, claims.Roles, d.action, w.req.Requester))
			}},
		)
		if err != nil {
			return err
		}
	}
	return nil
}
