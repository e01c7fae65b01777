package durability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// continueAsNewEvents is the worker's threshold in these tests: past the
// dozen events of a fresh run, short of what a task reaches by its
// approval wait plus a few updates.
const continueAsNewEvents = 30

// TestContinueAsNewCarriesTheTask runs tasks on a worker that continues a
// task's waits as new once a run's history reaches continueAsNewEvents
// (AUTOGLM_CONTINUE_AS_NEW_EVENTS, a worker setting). Operators' priority
// changes grow the history while the task waits, for its second approval
// and then while paused; each wait continues as new, and the task
// completes with its audit trail, approvals and priority carried over and
// exact output.
func TestContinueAsNewCarriesTheTask(t *testing.T) {
	m := startModel(t, 40*time.Millisecond, "")
	policy := editedPolicy(t, "quorum: 1", "quorum: 2")
	startWorker(t, workerOptions{node: "can-" + randHex(3), modelURL: m.URL(), concurrency: 2, checkpointInterval: time.Second,
		env: []string{"AUTOGLM_POLICY_FILE=" + policy, fmt.Sprintf("AUTOGLM_CONTINUE_AS_NEW_EVENTS=%d", continueAsNewEvents)}})

	t.Run("approval wait", func(t *testing.T) {
		ctx := testCtx(t, 3*time.Minute)
		in := writeBatch(t, "canapp", 200)
		id := submit(t, ctx, "canapp", in)
		waitState(t, ctx, id, task.AwaitingApproval)
		approve(t, ctx, id, "bob")
		first := runID(t, ctx, id)
		priority := nudgeUntilContinued(t, ctx, id, first)
		approve(t, ctx, id, "rita")
		exact(t, ctx, id, in)
		st := carriedStatus(t, ctx, id, priority)
		if got := approvers(st); !slices.Equal(got, []string{"bob", "rita"}) {
			t.Errorf("approvals %v; want bob's (from the first run) and rita's", got)
		}
		continuedRun(t, ctx, id, first, "continued_approval")
		saveRun(t, ctx, id, "", "continued_approval_last")
	})

	t.Run("pause", func(t *testing.T) {
		ctx := testCtx(t, 3*time.Minute)
		in := writeBatch(t, "canpause", 600)
		id := submit(t, ctx, "canpause", in)
		waitState(t, ctx, id, task.AwaitingApproval)
		approve(t, ctx, id, "bob")
		approve(t, ctx, id, "rita")
		waitDone(t, ctx, id, 20)
		decide(t, ctx, id, task.UpdatePause)
		eventually(t, ctx, "the inference to stop", func() (bool, error) {
			pa, err := pendingInfer(ctx, id)
			return err == nil && pa == nil, err
		})
		paused := runID(t, ctx, id)
		priority := nudgeUntilContinued(t, ctx, id, paused)
		if st, err := suite.tasks.Status(ctx, id); err != nil || st.State != task.Paused || st.Progress.Done() == 0 {
			t.Fatalf("after continuing as new the status is %+v (%v); want PAUSED with the answers so far", st.State, err)
		}
		decide(t, ctx, id, task.UpdateResume)
		exact(t, ctx, id, in)
		st := carriedStatus(t, ctx, id, priority)
		if !strings.Contains(auditText(st), string(task.Paused)) {
			t.Errorf("the audit trail lost the pause:\n%s", auditText(st))
		}
		continuedRun(t, ctx, id, paused, "continued_paused")
		saveRun(t, ctx, id, "", "continued_paused_last")
	})
}

// submit submits the batch as alice, to wait for approval.
func submit(t *testing.T, ctx context.Context, prefix string, in input) string {
	t.Helper()
	id := prefix + "-" + taskclient.NewID()
	if _, err := suite.tasks.Submit(ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", File: in.path}); err != nil {
		t.Fatalf("submitting %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = suite.Temporal.TerminateWorkflow(ctx, task.WorkflowID(id), "", "durability test cleanup")
	})
	return id
}

func approve(t *testing.T, ctx context.Context, id, reviewer string) {
	t.Helper()
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: reviewer}); err != nil {
		t.Fatalf("%s's approval of %s: %v", reviewer, id, err)
	}
}

// runID is the task's current run.
func runID(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	d, err := suite.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
	if err != nil {
		t.Fatal(err)
	}
	return d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
}

// nudgeUntilContinued has olga change the task's priority, each change a
// few events in the history, until the run has continued as new. It
// returns the priority set last.
func nudgeUntilContinued(t *testing.T, ctx context.Context, id, run string) int {
	t.Helper()
	for i := range 2 * continueAsNewEvents {
		p := 1 + i%2
		if _, err := suite.tasks.Decide(ctx, id, task.UpdateSetPriority, task.DecisionRequest{Actor: "olga", Priority: p}); err != nil {
			t.Fatalf("olga's set-priority %d of %s: %v", p, id, err)
		}
		var now string
		eventually(t, ctx, "the priority change to be recorded", func() (bool, error) {
			now = runID(t, ctx, id)
			if now != run {
				return true, nil
			}
			st, err := suite.tasks.Status(ctx, id)
			return err == nil && st.Priority == p, err
		})
		if now != run {
			t.Logf("run %s continued as new as %s after %d priority changes", run, now, i+1)
			// The new run must have taken the change over.
			if st, err := suite.tasks.Status(ctx, id); err != nil || st.Priority != p {
				t.Fatalf("the new run's priority is %d (%v); want %d", st.Priority, err, p)
			}
			return p
		}
	}
	t.Fatalf("run %s did not continue as new after %d priority changes", run, 2*continueAsNewEvents)
	return 0
}

// carriedStatus checks what the last run's status kept of the first:
// the audit trail from SUBMITTED, the priority set before the handover.
func carriedStatus(t *testing.T, ctx context.Context, id string, priority int) task.Status {
	t.Helper()
	st, err := suite.tasks.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Audit) == 0 || st.Audit[0].To != task.Submitted || !strings.Contains(auditText(st), string(task.AwaitingApproval)) {
		t.Errorf("the audit trail does not start at the submission:\n%s", auditText(st))
	}
	if st.State != task.Completed || st.Priority != priority {
		t.Errorf("status %s, priority %d; want COMPLETED, priority %d", st.State, st.Priority, priority)
	}
	return st
}

func approvers(st task.Status) []string {
	var who []string
	for _, d := range st.Approvals {
		who = append(who, d.Actor)
	}
	return who
}

// continuedRun checks that run ended with WorkflowExecutionContinuedAsNew
// and that its input carries the task's state, and records it as name.
func continuedRun(t *testing.T, ctx context.Context, id, run, name string) {
	t.Helper()
	h := history(t, ctx, id, run)
	last := h.Events[len(h.Events)-1]
	if last.GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW {
		t.Fatalf("run %s ended with %s; want WorkflowExecutionContinuedAsNew", run, last.GetEventType())
	}
	var next task.Input
	if err := converter.GetDefaultDataConverter().FromPayloads(last.GetWorkflowExecutionContinuedAsNewEventAttributes().GetInput(), &next); err != nil {
		t.Fatalf("the new run's input: %v", err)
	}
	if next.ID != id || !strings.Contains(string(next.Carry), `"status"`) {
		t.Errorf("the new run's input carries %q; want the task's state", next.Carry)
	}
	t.Logf("run %s: %d events, the last WorkflowExecutionContinuedAsNew carrying %d bytes", run, len(h.Events), len(next.Carry))
	saveRun(t, ctx, id, run, name)
}

func history(t *testing.T, ctx context.Context, id, run string) *historypb.History {
	t.Helper()
	h := &historypb.History{}
	it := suite.Temporal.GetWorkflowHistory(ctx, task.WorkflowID(id), run, false, 0)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	return h
}

// saveRun writes the history of one run of the task (the newest when run
// is empty) to recordDir, when set.
func saveRun(t *testing.T, ctx context.Context, id, run, name string) {
	t.Helper()
	if recordDir == "" {
		return
	}
	h := history(t, ctx, id, run)
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(recordDir, "task_"+name+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := client.HistoryFromJSON(strings.NewReader(string(b)), client.HistoryJSONOptions{}); err != nil {
		t.Fatalf("the recorded history does not read back: %v", err)
	}
	t.Logf("history of %s recorded in %s (%d events)", id, path, len(h.Events))
}

// editedPolicy is the default policy with old replaced by new.
func editedPolicy(t *testing.T, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "authz", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), old, new, 1)
	if s == string(b) {
		t.Fatalf("the default policy has no %q to replace", old)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
