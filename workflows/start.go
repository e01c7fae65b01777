package workflows

import (
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// checkStart is the engine's own check of who started this run, before
// its first activity, so that a start sent to Temporal by anyone but the
// autoglm server (or a break-glass operator) runs nothing and writes
// nothing:
//   - carried state is taken only in a run that really continued as new
//     from the task's previous run (ContinuedExecutionRunID is set by the
//     server, never by the caller);
//   - a first run needs the start assertion signed over this task's ID,
//     tenant, submitter, kind and input, unexpired when the server
//     recorded the start, on the task's own workflow ID.
//
// It returns the key that signed the start ("" for a continued run).
func checkStart(ctx workflow.Context, in task.Input) (string, error) {
	info := workflow.GetInfo(ctx)
	if info.ContinuedExecutionRunID != "" {
		return "", nil
	}
	refuse := func(err error) (string, error) {
		return "", temporal.NewNonRetryableApplicationError(task.StartRefused(in.ID)+err.Error(), string(task.PermissionDenied), err)
	}
	if len(in.Carry) > 0 {
		return refuse(task.Errorf(task.PermissionDenied, "carried state is taken only from the task's own previous run, and this run was started, not continued as new"))
	}
	// Verified in a side effect: its verdict is recorded in the history,
	// so a replay does not depend on the keys the replaying worker holds
	// (a rotated key must not fail the tasks it signed), nor on the
	// workflow ID a replayer gives it.
	var v startVerdict
	err := workflow.SideEffect(ctx, func(workflow.Context) any {
		if want := task.WorkflowID(in.ID); info.WorkflowExecution.ID != want {
			return startVerdict{Refused: fmt.Sprintf("task %s runs only as workflow %s, not %s", in.ID, want, info.WorkflowExecution.ID)}
		}
		st, err := assertion.VerifyStart(trustedKeys(), in.Assertion, assertion.StartOf(in), info.WorkflowStartTime)
		if err != nil {
			return startVerdict{Refused: err.Error()}
		}
		return startVerdict{Key: st.Key}
	}).Get(&v)
	if err != nil {
		return "", err
	}
	if v.Refused != "" {
		return refuse(task.Errorf(task.PermissionDenied, "%s", v.Refused))
	}
	return v.Key, nil
}

// startVerdict is what checking a start assertion found.
type startVerdict struct {
	Key     string `json:"key,omitempty"`
	Refused string `json:"refused,omitempty"`
}
