package taskclient

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// ListRequest filters tasks by their search attributes. Tenants is
// required: a caller sees only the tenants they have a role in.
type ListRequest struct {
	Tenants   []string
	State     task.State
	Model     string
	Submitter string
	Kind      task.Kind
	Limit     int
}

// Summary is one task as the list shows it.
type Summary struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Submitter string    `json:"submitter"`
	Model     string    `json:"model"`
	Kind      string    `json:"kind"`
	State     string    `json:"state"`
	Priority  int64     `json:"priority"`
	Started   time.Time `json:"started"`
}

// Query is the visibility query for r.
func (r ListRequest) Query() (string, error) {
	if len(r.Tenants) == 0 {
		return "", task.Errorf(task.PermissionDenied, "no tenant to list: the user has no role in any tenant")
	}
	quoted := make([]string, len(r.Tenants))
	for i, t := range r.Tenants {
		quoted[i] = quote(t)
	}
	parts := []string{
		fmt.Sprintf("WorkflowType = %s", quote(task.WorkflowType)),
		fmt.Sprintf("%s IN (%s)", task.AttrTenant.GetName(), strings.Join(quoted, ", ")),
		// A task that continued as new is listed once, by its latest run.
		"ExecutionStatus != 'ContinuedAsNew'",
	}
	for _, f := range []struct{ name, value string }{
		{task.AttrState.GetName(), string(r.State)},
		{task.AttrModel.GetName(), r.Model},
		{task.AttrSubmitter.GetName(), r.Submitter},
		{task.AttrKind.GetName(), string(r.Kind)},
	} {
		if f.value != "" {
			parts = append(parts, fmt.Sprintf("%s = %s", f.name, quote(f.value)))
		}
	}
	return strings.Join(parts, " AND "), nil
}

// quote makes s a string literal of the visibility query language.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// List returns the newest tasks that match r.
func (c *Client) List(ctx context.Context, r ListRequest) ([]Summary, error) {
	q, err := r.Query()
	if err != nil {
		return nil, err
	}
	if r.Limit <= 0 {
		r.Limit = 50
	}
	var out []Summary
	var token []byte
	for len(out) < r.Limit {
		resp, err := c.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: q, PageSize: int32(min(r.Limit-len(out), 1000)), NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("listing tasks: %w", err)
		}
		for _, e := range resp.Executions {
			s := Summary{ID: task.IDFromWorkflowID(e.Execution.WorkflowId), Started: e.StartTime.AsTime()}
			fields := e.GetSearchAttributes().GetIndexedFields()
			decode := func(name string, v any) {
				if p, ok := fields[name]; ok {
					_ = converter.GetDefaultDataConverter().FromPayload(p, v)
				}
			}
			decode(task.AttrTenant.GetName(), &s.Tenant)
			decode(task.AttrSubmitter.GetName(), &s.Submitter)
			decode(task.AttrModel.GetName(), &s.Model)
			decode(task.AttrKind.GetName(), &s.Kind)
			decode(task.AttrState.GetName(), &s.State)
			decode(task.AttrPriority.GetName(), &s.Priority)
			out = append(out, s)
		}
		if token = resp.NextPageToken; len(token) == 0 {
			break
		}
	}
	return out, nil
}
