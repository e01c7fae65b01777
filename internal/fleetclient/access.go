package fleetclient

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// RequestAccess starts an access request for a model on behalf of user,
// who must have a role in the tenant. It returns the request's ID at once;
// the request then waits for screening, the audit and a reviewer.
func (c *Client) RequestAccess(ctx context.Context, user string, req task.AccessRequest) (task.AccessRequest, error) {
	p, err := c.Policy.Current()
	if err != nil {
		return req, err
	}
	if len(p.TenantsOf(user)) == 0 || len(p.Tenants[req.Tenant].Users[user]) == 0 {
		return req, task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", user, req.Tenant)
	}
	req.Requester = user
	if req.ID == "" {
		req.ID = newID()
	}
	if req.Model.Upstream == "" {
		req.Model.Upstream = task.UpstreamHF
	}
	if err := req.Validate(); err != nil {
		return req, err
	}
	_, err = c.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: task.AccessWorkflowID(req.ID), TaskQueue: task.TaskQueue,
		StaticSummary: fmt.Sprintf("%s asks for %s (%s@%s) in %s", user, req.Model.Name, req.Model.Repo, req.Model.Revision, req.Tenant),
	}, task.AccessWorkflowType, req)
	return req, err
}

// DecideAccess approves or rejects an access request as user; the
// workflow's validator checks that user is a reviewer of the tenant and
// not the requester.
func (c *Client) DecideAccess(ctx context.Context, user, id string, approve bool, reason string) (task.AccessStatus, error) {
	name := task.UpdateReject
	if approve {
		name = task.UpdateApprove
	}
	h, err := c.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: task.AccessWorkflowID(id), UpdateName: name, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{task.DecisionRequest{Actor: user, Reason: reason}},
	})
	if err != nil {
		return task.AccessStatus{}, err
	}
	var st task.AccessStatus
	err = h.Get(ctx, &st)
	return st, err
}

// AccessStatus reads an access request's status; user must have a role
// in its tenant.
func (c *Client) AccessStatus(ctx context.Context, user, id string) (task.AccessStatus, error) {
	v, err := c.Temporal.QueryWorkflow(ctx, task.AccessWorkflowID(id), "", task.QueryStatus)
	if err != nil {
		return task.AccessStatus{}, err
	}
	var st task.AccessStatus
	if err := v.Get(&st); err != nil {
		return st, err
	}
	p, err := c.Policy.Current()
	if err != nil {
		return st, err
	}
	if len(p.Tenants[st.Tenant].Users[user]) == 0 {
		return task.AccessStatus{}, task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", user, st.Tenant)
	}
	return st, nil
}
