package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// What the Web UI shows a reviewer. Each change of commands is behind
// its own workflow.GetVersion change ID, named after the feature, so
// running tasks replay.
const (
	// changeApprovalTimer cancels the approval deadline's timer when the
	// wait ends, so a finished task shows no timer still "Started".
	changeApprovalTimer = "ops-approval-timer"
	// changeOutcomeStatus closes a REJECTED, EXPIRED or CANCELLED task as
	// a failed execution (error type = the state, details = the result),
	// so the Web UI's list does not show it as a green "Completed".
	changeOutcomeStatus = "ops-outcome-status"
)

// outcomeError is how a task that ended other than COMPLETED closes its
// execution: nil under the old version, which closed them all completed.
func outcomeError(ctx workflow.Context, res task.Result) error {
	switch res.State {
	case task.Rejected, task.Expired, task.Cancelled:
	default:
		return nil
	}
	if workflow.GetVersion(ctx, changeOutcomeStatus, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("task %s: %s", res.State, res.Reason), string(res.State), nil, res)
}

// auditDetails is the audit trail as the Web UI's "current details" shows
// it (markdown), newest last, so a reviewer reads it on the task's page.
func auditDetails(audit []task.Transition) string {
	const keep = 20
	var b strings.Builder
	b.WriteString("**Audit trail**\n\n| time (UTC) | state | by | reason |\n|---|---|---|---|\n")
	if len(audit) > keep {
		b.WriteString(fmt.Sprintf("| … | %d earlier | | |\n", len(audit)-keep))
		audit = audit[len(audit)-keep:]
	}
	for _, tr := range audit {
		b.WriteString(fmt.Sprintf("| %s | %s | %s | %s |\n", tr.Time.Format("2006-01-02 15:04:05"), tr.To, cell(tr.Actor), cell(tr.Reason)))
	}
	return b.String()
}

func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
