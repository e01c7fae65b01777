package activities

import (
	"context"

	"github.com/autoglm-flow/autoglm-flow/internal/audittrail"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// KeepAuditInput is the audit trail a run of TaskWorkflow hands over when
// it continues as new: what earlier runs kept, and its own transitions.
type KeepAuditInput struct {
	TaskID string `json:"task_id"`
	Tenant string `json:"tenant"`
	// Run is the run that continues as new, counted from 0.
	Run         int                `json:"run"`
	Earlier     *task.EarlierAudit `json:"earlier,omitempty"`
	Transitions []task.Transition  `json:"transitions"`
}

// KeepAudit writes the task's audit trail so far to the bucket (see
// internal/audittrail), so that the next run carries its reference and
// count instead of the list. The object of a run is a function of the
// input: a retry writes the same bytes.
func (a *Activities) KeepAudit(ctx context.Context, in KeepAuditInput) (task.EarlierAudit, error) {
	e, err := audittrail.Write(ctx, a.Store, in.Tenant, in.TaskID, in.Run, in.Earlier, in.Transitions)
	if err != nil {
		return e, asApplicationError(err)
	}
	return e, nil
}
