package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// A batch over the auto-approve limit waits for a reviewer. Its submitter
// may not approve it (not even an admin her own), and the refusal leaves
// no trace in the history; a
// reviewer approves it through a plain Temporal client that knows only the
// names in internal/task, and the batch runs to the end.
func TestBatchOverLimitWaitsForAReviewersApproval(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	startWorker(t, workerOptions{})

	in := writeBatch(t, "appr", 30)
	id := newID("approve")
	submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", File: in.path})
	st := waitState(t, ctx, id, task.AwaitingApproval)
	if st.Screening.Requests != 30 || st.Screening.AutoApprove || st.Quorum != 1 {
		t.Fatalf("screening %+v, quorum %d; want 30 requests, not auto-approved, quorum 1", st.Screening, st.Quorum)
	}

	before := history(t, ctx, id)
	_, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: "alice", Reason: "mine, trust me"})
	wantErrType(t, err, task.PermissionDenied)
	refusalLeftNoTrace(t, before, history(t, ctx, id), "mine, trust me")
	if st := status(t, ctx, id); st.State != task.AwaitingApproval || len(st.Approvals) != 0 {
		t.Fatalf("after alice's refused approval the task is %s with approvals %+v; want it still awaiting approval, with none", st.State, st.Approvals)
	}

	// The rule is about one's own task, not only about roles: carol, an
	// admin who may approve anyone else's task, may not approve hers.
	own := writeBatch(t, "own", autoApproveMax+1)
	ownID := newID("own")
	submit(t, ctx, taskclient.SubmitRequest{ID: ownID, Tenant: tenant, Submitter: "carol", File: own.path})
	waitState(t, ctx, ownID, task.AwaitingApproval)
	_, err = suite.tasks.Decide(ctx, ownID, task.UpdateApprove, task.DecisionRequest{Actor: "carol"})
	wantErrType(t, err, task.PermissionDenied)
	if _, err := suite.tasks.Decide(ctx, ownID, task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: "only here to be refused"}); err != nil {
		t.Fatalf("bob's rejection of carol's task: %v", err)
	}

	// bob, through Temporal itself: an update by name with the documented
	// argument, and the status query by name.
	h, err := suite.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   task.WorkflowID(id),
		UpdateName:   task.UpdateApprove,
		Args:         []any{task.DecisionRequest{Actor: "bob", Reason: "reviewed the prompts", Assertion: suite.Signer.SignInput(id, task.UpdateApprove, "bob", authz.Default().RolesOf(tenant, "bob"), task.DecisionRequest{Reason: "reviewed the prompts"}.Digest(), 0)}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		t.Fatalf("bob's approval: %v", err)
	}
	var approved task.Status
	if err := h.Get(ctx, &approved); err != nil {
		t.Fatalf("bob's approval: %v", err)
	}
	if len(approved.Approvals) != 1 || approved.Approvals[0].Actor != "bob" || approved.State != task.Approved {
		t.Errorf("the approve update answered state %s, approvals %+v; want APPROVED by bob", approved.State, approved.Approvals)
	}
	v, err := suite.Temporal.QueryWorkflow(ctx, task.WorkflowID(id), "", task.QueryStatus)
	if err != nil {
		t.Fatalf("status query: %v", err)
	}
	var queried task.Status
	if err := v.Get(&queried); err != nil {
		t.Fatal(err)
	}
	if queried.ID != id || !slices.ContainsFunc(queried.Audit, func(tr task.Transition) bool { return tr.To == task.Approved && tr.Actor == "bob" }) {
		t.Errorf("status query answered %+v; want task %s with bob's approval in its audit trail", queried, id)
	}

	res := wait(t, ctx, id)
	if res.State != task.Completed || res.Counts != (task.Counts{Total: 30, Completed: 30}) {
		t.Fatalf("result %+v; want COMPLETED with 30 of 30 completed", res)
	}
	out := outputLines(t, download(t, ctx, res.Output))
	if len(out) != 30 {
		t.Fatalf("output.jsonl has %d lines; want 30", len(out))
	}
	exactlyOnce(t, in.ids, customIDCounts(out))
	checkAnswers(t, out, in.bodies)
}

// A reviewer's rejection ends the task with the reason in the audit trail
// and in report.json, and nothing runs; a second rejection is refused.
func TestReviewerRejectsWithAReason(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	startWorker(t, workerOptions{})

	in := writeBatch(t, "rej", autoApproveMax+2)
	id := newID("reject")
	submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "dave", File: in.path})
	waitState(t, ctx, id, task.AwaitingApproval)
	served := suite.model.Stats().Requests

	reason := "the prompts quote a customer's contract; strip it and resubmit"
	st, err := suite.tasks.Decide(ctx, id, task.UpdateReject, task.DecisionRequest{Actor: "rita", Reason: reason})
	if err != nil {
		t.Fatalf("rita's rejection: %v", err)
	}
	if st.State != task.Rejected {
		t.Errorf("the reject update answered state %s; want REJECTED", st.State)
	}
	res := wait(t, ctx, id)
	if res.State != task.Rejected || res.Reason != reason {
		t.Errorf("result state %s, reason %q; want REJECTED with rita's reason", res.State, res.Reason)
	}

	st = status(t, ctx, id)
	if !hasTransition(st.Audit, task.Rejected, "rita", reason) {
		t.Errorf("audit trail %+v; want REJECTED by rita with her reason", st.Audit)
	}
	var report activities.Report
	if err := json.Unmarshal(download(t, ctx, res.Report), &report); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if report.Task.State != task.Rejected || !hasTransition(report.Task.Audit, task.Rejected, "rita", reason) {
		t.Errorf("report.json has state %s, audit %+v; want REJECTED by rita with her reason", report.Task.State, report.Task.Audit)
	}
	if n := suite.model.Stats().Requests - served; n != 0 {
		t.Errorf("the model server got %d request(s) for a rejected task; want none", n)
	}
	if slices.ContainsFunc(st.Artifacts, func(r task.ObjectRef) bool { return strings.HasSuffix(r.Key, "/output.jsonl") }) {
		t.Errorf("a rejected task has an output.jsonl: %+v", st.Artifacts)
	}

	_, err = suite.tasks.Decide(ctx, id, task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: "me too"})
	wantErrType(t, err, task.WrongState)
}

func hasTransition(audit []task.Transition, to task.State, actor, reason string) bool {
	return slices.ContainsFunc(audit, func(tr task.Transition) bool {
		return tr.To == to && tr.Actor == actor && tr.Reason == reason
	})
}

// history is the task workflow's event history so far.
func history(t *testing.T, ctx context.Context, id string) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	it := suite.Temporal.GetWorkflowHistory(ctx, task.WorkflowID(id), "", false, 0)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		events = append(events, e)
	}
	return events
}

// refusalLeftNoTrace fails unless the history after a refused update holds
// nothing of it: no update event and no word of the request. The update
// may still have ridden a workflow task that the server kept (Scheduled,
// Started, Completed, with no command): Temporal discards the speculative
// workflow task of a rejected update only while the events since the last
// completed workflow task number at most its
// history.discardSpeculativeWorkflowTaskMaximumEventsCount (10), and a
// first workflow task that authorizes and screens in local activities
// leaves more. Such a task changes nothing and carries no content.
func refusalLeftNoTrace(t *testing.T, before, after []*historypb.HistoryEvent, request string) {
	t.Helper()
	if len(after) < len(before) {
		t.Fatalf("the history shrank from %d to %d events", len(before), len(after))
	}
	for _, e := range after[len(before):] {
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED, enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
		default:
			t.Errorf("the refused update added event %d %s to the history (added: %v)", e.GetEventId(), e.GetEventType(), eventTypes(after[len(before):]))
		}
	}
	for _, e := range after {
		// Binary, not JSON: payload data stays as the bytes it was sent as.
		if b, err := proto.Marshal(e); err != nil {
			t.Fatal(err)
		} else if bytes.Contains(b, []byte(request)) {
			t.Errorf("event %d %s holds the refused request's text %q", e.GetEventId(), e.GetEventType(), request)
		}
	}
}

func eventTypes(events []*historypb.HistoryEvent) []string {
	var s []string
	for _, e := range events {
		s = append(s, e.GetEventType().String())
	}
	return s
}
