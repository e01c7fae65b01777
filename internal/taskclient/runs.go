package taskclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// taskRun is the run of task id that holds the task: the newest run of
// its workflow that was not a start the workflow refused. Anyone with
// access to Temporal can start a run on a closed task's ID; the workflow
// refuses such a start at once (see workflows/start.go), and this keeps
// the refused run from hiding the task from its owner. "" is the newest
// run.
func (c *Client) taskRun(ctx context.Context, id string) (string, error) {
	wid := task.WorkflowID(id)
	resp, err := c.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowId = '%s'", wid),
	})
	if err != nil {
		return "", err
	}
	runs := resp.GetExecutions()
	slices.SortFunc(runs, func(a, b *workflowpb.WorkflowExecutionInfo) int {
		return b.GetStartTime().AsTime().Compare(a.GetStartTime().AsTime())
	})
	for _, r := range runs {
		run := r.GetExecution().GetRunId()
		if r.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_FAILED || !refusedStart(c.Temporal.GetWorkflow(ctx, wid, run).Get(ctx, nil), id) {
			return run, nil
		}
	}
	return "", nil
}

// refusedStart tells whether err is how the workflow refused a start of
// task id.
func refusedStart(err error, id string) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == string(task.PermissionDenied) && strings.HasPrefix(ae.Message(), task.StartRefused(id))
}

// isNotFound tells whether err says the workflow does not exist.
func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
