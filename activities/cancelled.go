package activities

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
)

// CancelRequest is who asked Temporal to cancel a workflow: the
// identity and reason the frontend recorded in the history's
// WorkflowExecutionCancelRequested event (the Web UI's "Request
// Cancellation", `temporal workflow cancel`, or any client's
// CancelWorkflow call).
type CancelRequest struct {
	Identity string `json:"identity,omitempty"`
	Cause    string `json:"cause,omitempty"`
}

// CancelRequester reads, from the calling workflow's own history, who
// requested its cancellation, so the audit trail names them instead of
// "temporal". An empty result means the history holds no such request.
func (a *Activities) CancelRequester(ctx context.Context) (CancelRequest, error) {
	info := activity.GetInfo(ctx)
	wf := info.WorkflowExecution
	it := a.Temporal.GetWorkflowHistory(ctx, wf.ID, wf.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var last CancelRequest
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return CancelRequest{}, fmt.Errorf("reading the history of %s: %w", wf.ID, err)
		}
		if at := ev.GetWorkflowExecutionCancelRequestedEventAttributes(); at != nil {
			last = CancelRequest{Identity: at.GetIdentity(), Cause: at.GetCause()}
		}
	}
	return last, nil
}
