package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func accessEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ModelAccessWorkflow, workflow.RegisterOptions{Name: task.AccessWorkflowType})
	env.RegisterWorkflowWithOptions(MirrorWorkflow, workflow.RegisterOptions{Name: task.MirrorWorkflowType})
	env.RegisterActivity(&activities.Mirror{})
	env.RegisterActivity(&activities.Activities{})
	m := &activities.Mirror{}
	env.OnActivity(m.ScreenAccessRequest, mock.Anything, mock.Anything).Return(activities.ScreenAccessResult{
		Licence: "mit", Bytes: 10, Files: []task.ModelFile{{Name: "m.safetensors", Size: 10}},
		Grant:          authz.Grant{Tenant: "t", Quorum: 1, Members: []authz.Member{{User: "alice", Roles: []authz.Role{authz.Submitter}}, {User: "bob", Roles: []authz.Role{authz.Reviewer}}}},
		ReviewDeadline: time.Hour,
	}, nil)
	env.OnActivity(m.AuditModelFiles, mock.Anything, mock.Anything).Return(activities.AuditResult{Findings: []string{"m.safetensors: safetensors"}}, nil)
	env.OnActivity((&activities.Activities{}).EmitEvent, mock.Anything, mock.Anything).Return(activities.EmitEventResult{}, nil)
	return env
}

var accessReq = task.AccessRequest{ID: "r1", Tenant: "t", Requester: "alice", Model: task.MirrorInput{Name: "m", Repo: "o/m", Revision: "main"}}

// TestAccessReviewRefusesTheRequesterAndExpires: the requester may not
// approve her own request, and a request nobody decides on expires at the
// deadline without a mirror.
func TestAccessReviewRefusesTheRequesterAndExpires(t *testing.T) {
	env := accessEnv(t)
	var selfErr error
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(task.UpdateApprove, "u1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { selfErr = err },
			OnAccept: func() {}, OnComplete: func(any, error) {},
		}, task.DecisionRequest{Actor: "alice"})
	}, time.Minute)
	env.ExecuteWorkflow(task.AccessWorkflowType, accessReq)
	var st task.AccessStatus
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	if selfErr == nil {
		t.Fatal("the requester approved her own request")
	}
	if st.State != task.Expired || st.Mirror.Files != 0 {
		t.Fatalf("undecided request: %+v; want EXPIRED and nothing mirrored", st)
	}
}

// TestAccessRejectionCarriesItsReason: bob rejects with a reason, which the
// status and its audit trail keep.
func TestAccessRejectionCarriesItsReason(t *testing.T) {
	env := accessEnv(t)
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(task.UpdateReject, "u1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("bob's rejection refused: %v", err) }, OnAccept: func() {}, OnComplete: func(any, error) {},
		}, task.DecisionRequest{Actor: "bob", Reason: "licence not for commercial use"})
	}, time.Minute)
	env.ExecuteWorkflow(task.AccessWorkflowType, accessReq)
	var st task.AccessStatus
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	last := st.Audit[len(st.Audit)-1]
	if st.State != task.Rejected || st.Reason != "licence not for commercial use" || last.Actor != "bob" {
		t.Fatalf("rejected request: %+v", st)
	}
}
