package workflows

import (
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// outcomeError is how a task that ended other than COMPLETED closes its
// execution: a REJECTED, EXPIRED or CANCELLED task closes as a failed
// execution (error type = the state, details = the result), so the Web
// UI's list does not show it as a green "Completed".
func outcomeError(_ workflow.Context, res task.Result) error {
	switch res.State {
	case task.Rejected, task.Expired, task.Cancelled:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("task %s: %s", res.State, res.Reason), string(res.State), nil, res)
	}
	return nil
}
