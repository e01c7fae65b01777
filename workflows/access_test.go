package workflows

import (
	"context"
	"crypto/ed25519"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
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
		ApprovalDeadline: time.Hour,
	}, nil)
	env.OnActivity(m.AuditModelFiles, mock.Anything, mock.Anything).Return(activities.AuditResult{Findings: []string{"m.safetensors: safetensors"}}, nil)
	env.OnActivity((&activities.Activities{}).EmitEvent, mock.Anything, mock.Anything).Return(activities.EmitEventResult{}, nil)
	return env
}

var (
	accessKeyOnce sync.Once
	accessKey     ed25519.PrivateKey
)

// signAccess signs a decision on accessReq as the API server would, on
// the test environment's clock, with a key the workflows trust (added to
// the keys other tests of this binary set).
func signAccess(env *testsuite.TestWorkflowEnvironment, update string, req task.DecisionRequest) task.DecisionRequest {
	accessKeyOnce.Do(func() {
		pub, priv, err := assertion.GenerateKey()
		if err != nil {
			panic(err)
		}
		accessKey = priv
		SetAssertionKeys(append(trustedKeys(), pub))
	})
	s := assertion.NewSigner(accessKey)
	s.Now = env.Now
	req.Assertion = s.Sign(accessReq.ID, task.AccessAssertionAction(update), req.Actor, accessRoles[req.Actor], 0)
	return req
}

// accessRoles are the roles the API server would sign for the members of
// accessReq's tenant.
var accessRoles = map[string][]authz.Role{"alice": {authz.Submitter}, "bob": {authz.Reviewer}}

var accessReq = task.AccessRequest{ID: "r1", Tenant: "t", Requester: "alice", Model: task.MirrorInput{Name: "m", Repo: "o/m", Revision: "main"}}

// TestAccessReviewRefusesTheRequesterAndExpires: the requester may not
// approve her own request; a reviewer's approval without the server's
// assertion (or with one made for a task's approval) is refused; and a
// request nobody decides on expires at the deadline without a mirror.
func TestAccessReviewRefusesTheRequesterAndExpires(t *testing.T) {
	env := accessEnv(t)
	var selfErr, unsignedErr, taskSignedErr error
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(task.UpdateApprove, "u1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { selfErr = err },
			OnAccept: func() {}, OnComplete: func(any, error) {},
		}, signAccess(env, task.UpdateApprove, task.DecisionRequest{Actor: "alice"}))
		env.UpdateWorkflow(task.UpdateApprove, "u2", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { unsignedErr = err },
			OnAccept: func() {}, OnComplete: func(any, error) {},
		}, task.DecisionRequest{Actor: "bob"})
		forTask := signAccess(env, task.UpdateApprove, task.DecisionRequest{Actor: "bob"})
		s := assertion.NewSigner(accessKey)
		s.Now = env.Now
		forTask.Assertion = s.Sign(accessReq.ID, task.UpdateApprove, "bob", accessRoles["bob"], 0)
		env.UpdateWorkflow(task.UpdateApprove, "u3", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { taskSignedErr = err },
			OnAccept: func() {}, OnComplete: func(any, error) {},
		}, forTask)
	}, time.Minute)
	env.ExecuteWorkflow(task.AccessWorkflowType, accessReq)
	var st task.AccessStatus
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	if selfErr == nil {
		t.Fatal("the requester approved her own request")
	}
	if unsignedErr == nil || taskSignedErr == nil || !strings.Contains(unsignedErr.Error(), "assertion") || !strings.Contains(taskSignedErr.Error(), "assertion") {
		t.Fatalf("bob approved without an access assertion: unsigned refused %v, task-signed refused %v", unsignedErr, taskSignedErr)
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
		}, signAccess(env, task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: "licence not for commercial use"}))
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

// TestAccessDecisionReasonIsCapped: as for tasks, a decision whose reason
// is over the limit is refused before it reaches the history.
func TestAccessDecisionReasonIsCapped(t *testing.T) {
	env := accessEnv(t)
	var longErr error
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(task.UpdateReject, "u1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { longErr = err }, OnAccept: func() {}, OnComplete: func(any, error) {},
		}, signAccess(env, task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: strings.Repeat("x", task.MaxReasonBytes+1)}))
		env.UpdateWorkflow(task.UpdateReject, "u2", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("a reason at the limit refused: %v", err) }, OnAccept: func() {}, OnComplete: func(any, error) {},
		}, signAccess(env, task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: strings.Repeat("y", task.MaxReasonBytes)}))
	}, time.Minute)
	env.ExecuteWorkflow(task.AccessWorkflowType, accessReq)
	var st task.AccessStatus
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	if longErr == nil || !strings.Contains(longErr.Error(), "byte limit") {
		t.Fatalf("a %d-byte reason: %v; want refused", task.MaxReasonBytes+1, longErr)
	}
	if st.State != task.Rejected || len(st.Reason) != task.MaxReasonBytes {
		t.Fatalf("request %s with a %d-byte reason; want REJECTED with the whole reason", st.State, len(st.Reason))
	}
}

// TestAccessMirrorsWhatScreeningRecorded: on approval the mirror gets
// exactly the screened files at the screened commit, under the commit,
// without listing the upstream again, and the grant binds that commit.
func TestAccessMirrorsWhatScreeningRecorded(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ModelAccessWorkflow, workflow.RegisterOptions{Name: task.AccessWorkflowType})
	env.RegisterWorkflowWithOptions(MirrorWorkflow, workflow.RegisterOptions{Name: task.MirrorWorkflowType})
	m := &activities.Mirror{}
	env.RegisterActivity(m)
	env.RegisterActivity(&activities.Activities{})
	commit := strings.Repeat("c", 40)
	files := []task.ModelFile{{Name: "m.safetensors", Size: 10, SHA256: strings.Repeat("a", 64)}}
	env.OnActivity(m.ScreenAccessRequest, mock.Anything, mock.Anything).Return(activities.ScreenAccessResult{
		Licence: "mit", Bytes: 10, Commit: commit, Files: files, ApprovalDeadline: time.Hour,
	}, nil)
	env.OnActivity(m.AuditModelFiles, mock.Anything, mock.MatchedBy(func(in activities.AuditInput) bool { return in.Commit == commit })).Return(activities.AuditResult{}, nil)
	env.OnActivity((&activities.Activities{}).EmitEvent, mock.Anything, mock.Anything).Return(activities.EmitEventResult{}, nil)
	var copied []activities.MirrorFileInput
	env.OnActivity(m.MirrorModelFile, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.MirrorFileInput) (activities.MirrorFileResult, error) {
		copied = append(copied, in)
		return activities.MirrorFileResult{ObjectRef: task.ObjectRef{Size: in.File.Size}}, nil
	})
	var meta activities.WriteModelMetaInput
	env.OnActivity(m.WriteModelMeta, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.WriteModelMetaInput) (task.ObjectRef, error) {
		meta = in
		return task.ObjectRef{}, nil
	})
	var grant activities.AllowModelInput
	env.OnActivity(m.AllowModel, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.AllowModelInput) (task.ObjectRef, error) {
		grant = in
		return task.ObjectRef{}, nil
	})
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(task.UpdateApprove, "u1", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("bob's approval refused: %v", err) }, OnAccept: func() {}, OnComplete: func(any, error) {},
		}, signAccess(env, task.UpdateApprove, task.DecisionRequest{Actor: "bob"}))
	}, time.Minute)
	env.ExecuteWorkflow(task.AccessWorkflowType, accessReq)
	var st task.AccessStatus
	if err := env.GetWorkflowResult(&st); err != nil {
		t.Fatal(err)
	}
	if st.State != task.Completed || len(copied) != 1 || copied[0].File != files[0] || copied[0].Model.Commit != commit || copied[0].Model.Revision != commit {
		t.Fatalf("approved request %s copied %+v; want exactly the screened file at commit %s", st.State, copied, commit)
	}
	if meta.Model.Commit != commit || len(meta.Files) != 1 || grant.Commit != commit || st.Mirror.Revision != commit {
		t.Fatalf("cache.meta %+v, grant %+v, mirror %+v; want all bound to commit %s", meta, grant, st.Mirror, commit)
	}
}
