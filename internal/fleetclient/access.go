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

// DecideAccess approves or rejects an access request as user, with an
// actor assertion signed by c.Signer over user's roles in the request's
// tenant as the policy has them now; the workflow's validator checks the
// assertion, then that those roles may decide and user is not the
// requester.
func (c *Client) DecideAccess(ctx context.Context, user, id string, approve bool, reason string) (task.AccessStatus, error) {
	name := task.UpdateReject
	if approve {
		name = task.UpdateApprove
	}
	req := task.DecisionRequest{Actor: user, Reason: reason}
	if c.Signer != nil {
		st, err := c.AccessStatus(ctx, user, id)
		if err != nil {
			return task.AccessStatus{}, err
		}
		p, err := c.Policy.Current()
		if err != nil {
			return task.AccessStatus{}, err
		}
		req.Assertion = c.Signer.Sign(id, task.AccessAssertionAction(name), user, p.RolesOf(st.Tenant, user), 0)
	}
	h, err := c.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: task.AccessWorkflowID(id), UpdateName: name, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{req},
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

// Mirror copies a model revision into the bucket as user (a fleet
// operator: it needs no approval, and allows the model for no tenant) and
// waits for it. The mirror resolves the revision to its commit and copies
// that listing; a caller cannot hand it a list of files. A second call
// for the same revision skips the files already verified.
func (c *Client) Mirror(ctx context.Context, user string, in task.MirrorInput) (task.MirrorResult, error) {
	if err := c.checkFleet(user); err != nil {
		return task.MirrorResult{}, err
	}
	in.Actor, in.Commit, in.Files = user, "", nil
	if in.Upstream == "" {
		in.Upstream = task.UpstreamHF
	}
	if err := in.Validate(); err != nil {
		return task.MirrorResult{}, err
	}
	run, err := c.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: task.MirrorWorkflowID(in.Name, in.Revision), TaskQueue: task.TaskQueue,
		StaticSummary: fmt.Sprintf("mirror %s@%s as %s, by %s", in.Repo, in.Revision, in.Name, user),
	}, task.MirrorWorkflowType, in)
	if err != nil {
		return task.MirrorResult{}, err
	}
	var res task.MirrorResult
	err = run.Get(ctx, &res)
	return res, err
}
