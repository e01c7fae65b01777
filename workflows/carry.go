package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Where a continued run picks the task up.
const (
	carryApproval = "approval"
	carryInfer    = "infer"
)

// carry is what one run of TaskWorkflow hands to the run it continues as
// new: everything the steps after the wait read. The workflow ID stays
// task-<id>. It is references and counts, of a size that does not grow
// with the runs: the audit trail goes to the bucket first (keepAudit)
// and Status carries its reference; nonces are those still able to
// verify; a piece's avoid-list names each node once.
type carry struct {
	Step   string                     `json:"step"`
	Status task.Status                `json:"status"`
	Rules  activities.AuthorizeResult `json:"rules"`
	Source task.ObjectRef             `json:"source"`
	Cut    []activities.Piece         `json:"shards,omitempty"` // screening's pieces
	// ApprovalBy is when the approval wait expires (approval step).
	ApprovalBy time.Time    `json:"approval_by,omitzero"`
	Pieces     []carryPiece `json:"pieces,omitempty"`
	Paused     bool         `json:"paused,omitempty"`
	// Cancelled is a cancel that came in while the run waited for its
	// updates to finish.
	Cancelled *task.Decision `json:"cancelled,omitempty"`
	Pauses    int            `json:"pauses,omitempty"`
	// Runs counts the runs before this one.
	Runs int `json:"runs"`
	// Nonces are the update assertions taken that could still verify.
	Nonces nonces `json:"nonces,omitempty"`
}

// carryPiece is one inference piece: its node, the nodes to avoid, and
// its result once finished.
type carryPiece struct {
	Node  activities.DispatchResult `json:"node"`
	Ran   string                    `json:"ran,omitempty"`
	Avoid []string                  `json:"avoid,omitempty"`
	Res   *activities.InferResult   `json:"result,omitempty"`
}

// restore takes up the state a previous run carried.
func (w *taskRun) restore(ctx workflow.Context, c *carry) {
	w.carried = c
	w.status = c.Status
	rules := c.Rules
	w.rules = &rules
	w.source, w.cut = c.Source, c.Cut
	w.approvalBy = c.ApprovalBy
	w.paused, w.pauses = c.Paused, c.Pauses
	w.cancelled = c.Cancelled
	w.nonces = c.Nonces
	// A run continued in the kind's run: its work was dispatched.
	w.dispatched = c.Step == carryInfer || c.Status.Node != ""
	if w.status.Audit == nil {
		w.status.Audit = []task.Transition{}
	}
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s** — continued as new (run %d)\n\n%s", w.status.State, c.Runs+1, auditDetails(w.status)))
}

// carriedPieces are the pieces of a continued run, or nil.
func (w *taskRun) carriedPieces() []*piece {
	if w.carried == nil || w.carried.Step != carryInfer || len(w.carried.Pieces) == 0 {
		return nil
	}
	ps := w.pieces()
	if len(ps) != len(w.carried.Pieces) {
		return nil
	}
	for i, cp := range w.carried.Pieces {
		ps[i].node, ps[i].ran, ps[i].avoid, ps[i].res = cp.Node, cp.Ran, cp.Avoid, cp.Res
	}
	return ps
}

// suggested reports whether the server suggests continuing as new, or
// the run's history has reached the worker's threshold (recorded in the
// authorize result, so replay reads the same); it issues no command, so
// await conditions may read it.
func (w *taskRun) suggested(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	if info.GetContinueAsNewSuggested() {
		return true
	}
	n := 0
	if w.rules != nil {
		n = w.rules.ContinueAsNewEvents
	}
	return n > 0 && info.GetCurrentHistoryLength() >= n
}

// continueAsNew waits for the updates still running, then ends this run
// with a ContinueAsNewError whose input carries the task's state.
func (w *taskRun) continueAsNew(ctx workflow.Context, step string, pieces []*piece) error {
	run := 0
	if w.carried != nil {
		run = w.carried.Runs
	}
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	w.keepAudit(ctx, run)
	// An update taken while the trail was written finishes before the
	// state is read; its transition rides in Status.Audit.
	_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	c := carry{
		Step: step, Status: w.status, Rules: *w.rules, Source: w.source, Cut: w.cut,
		ApprovalBy: w.approvalBy, Paused: w.paused, Pauses: w.pauses, Cancelled: w.cancelled,
		Nonces: w.nonces.live(workflow.Now(ctx)), Runs: run + 1,
	}
	for _, p := range pieces {
		c.Pieces = append(c.Pieces, carryPiece{Node: p.node, Ran: p.ran, Avoid: p.avoid, Res: p.res})
	}
	// Encoding a plain struct is deterministic (the same bytes for the
	// same value, map keys sorted); workflowcheck flags json for its
	// reflection cache.
	raw, err := json.Marshal(c) //workflowcheck:ignore
	if err != nil {
		return err
	}
	in := w.in
	in.Carry = raw
	workflow.GetLogger(ctx).Info("continuing as new", "step", step, "history_length", workflow.GetInfo(ctx).GetCurrentHistoryLength())
	// The task is pinned to the build that started it; the new run starts
	// on the deployment's current build, which is how a long task moves
	// to new code at a point where nothing is replayed.
	return workflow.NewContinueAsNewErrorWithOptions(ctx, workflow.ContinueAsNewErrorOptions{
		InitialVersioningBehavior: workflow.ContinueAsNewVersioningBehaviorAutoUpgrade,
	}, task.WorkflowType, in)
}

// keepAudit hands the audit trail so far to the bucket, and keeps only
// the reference and count in the status (and so in the carry). When the
// bucket does not take it, the trail is carried whole this once: a
// bucket outage holds no task back from continuing as new.
func (w *taskRun) keepAudit(ctx workflow.Context, run int) {
	n := len(w.status.Audit)
	if n == 0 {
		return
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second, Summary: "keep the audit trail in the bucket",
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 5},
	})
	in := activities.KeepAuditInput{
		TaskID: w.in.ID, Tenant: w.in.Tenant, Run: run, Earlier: w.status.EarlierAudit,
		Transitions: slices.Clone(w.status.Audit[:n]),
	}
	var e task.EarlierAudit
	if err := workflow.ExecuteLocalActivity(lctx, a.KeepAudit, in).Get(ctx, &e); err != nil {
		workflow.GetLogger(ctx).Warn("the audit trail is carried whole: the bucket did not keep it", "error", err)
		return
	}
	w.status.EarlierAudit = &e
	w.status.Audit = slices.Clone(w.status.Audit[n:])
}

// awaitApproval waits for a decision, a cancel or the approval deadline
// (its timer cancelled when the wait ends without it, so a finished task
// shows no timer still "Started"), and continues as new when the server
// suggests it. It returns whether
// the wait ended with a decision.
func (w *taskRun) awaitApproval(ctx workflow.Context, deadline time.Duration) (bool, error) {
	decided := func() bool {
		return w.status.State != task.AwaitingApproval || w.cancelled != nil
	}
	if w.carried != nil {
		deadline = w.approvalBy.Sub(workflow.Now(ctx))
		if decided() {
			return true, nil
		}
		if deadline <= 0 {
			return false, nil
		}
	}
	tctx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	timer := workflow.NewTimerWithOptions(tctx, deadline, workflow.TimerOptions{Summary: "approval deadline"})
	done := func() bool { return decided() || timer.IsReady() }
	if err := workflow.Await(ctx, func() bool { return done() || w.suggested(ctx) }); err != nil {
		return false, err
	}
	if !done() {
		return false, w.continueAsNew(ctx, carryApproval, nil)
	}
	if err := workflow.Await(ctx, done); err != nil {
		return false, err
	}
	// A cancellation through Temporal cancels the deadline's timer too,
	// which makes it ready: that is a cancel, not an expiry.
	if err := ctx.Err(); err != nil && !decided() {
		return false, err
	}
	return decided(), nil
}

// awaitResume waits while the task is paused, until a resume or a cancel,
// and continues as new when the server suggests it.
func (w *taskRun) awaitResume(ctx workflow.Context, pieces []*piece) error {
	resumed := func() bool { return !w.paused || w.cancelled != nil }
	if err := workflow.Await(ctx, func() bool { return resumed() || w.suggested(ctx) }); err != nil {
		return err
	}
	if !resumed() {
		return w.continueAsNew(ctx, carryInfer, pieces)
	}
	return workflow.Await(ctx, resumed)
}

func isContinueAsNew(err error) bool {
	var can *workflow.ContinueAsNewError
	return errors.As(err, &can)
}

// decodeCarry reads the state a previous run carried. Decoding is a pure
// function of the input (see continueAsNew).
func decodeCarry(raw []byte) (*carry, error) {
	c := new(carry)
	err := json.Unmarshal(raw, c) //workflowcheck:ignore
	return c, err
}
