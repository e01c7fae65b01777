package durability

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// recordDir, when set, is where TestLifecyclePaths writes the history of
// each task it ran (task_<path>.json), for the replay tests in
// workflows/testdata:
//
//	AUTOGLM_RECORD_HISTORIES=$PWD/workflows/testdata go test -run TestLifecyclePaths ./tests/durability
var recordDir = os.Getenv("AUTOGLM_RECORD_HISTORIES")

// approvalDeadline is the policy's deadline in these tests: long enough
// for an approval sent at once, short enough for an expiry to be quick.
const approvalDeadline = 10 * time.Second

// TestLifecyclePaths drives a task down each path of TaskWorkflow on the
// real stack and checks where it ends: pieces, pause and resume, a resume
// at once after a pause, a cancel while running (partial output
// collected), a failure, an expiry.
func TestLifecyclePaths(t *testing.T) {
	m := startModel(t, 50*time.Millisecond, "")
	policy := shortDeadlinePolicy(t)
	node := "paths-" + randHex(3)
	startWorker(t, workerOptions{node: node, modelURL: m.URL(), concurrency: 2, checkpointInterval: time.Second,
		env: []string{"AUTOGLM_PIECE_REQUESTS=150", "AUTOGLM_POLICY_FILE=" + policy}})

	t.Run("pieces", func(t *testing.T) {
		ctx := testCtx(t, 2*time.Minute)
		in := writeBatch(t, "pieces", 400)
		id := submitApproved(t, ctx, "pieces", in)
		exact(t, ctx, id, in)
		if st, _ := suite.tasks.Status(ctx, id); !strings.Contains(auditText(st), "3 pieces") {
			t.Errorf("the audit trail does not say the batch ran in 3 pieces:\n%s", auditText(st))
		}
		save(t, ctx, id, "pieces_completed")
	})

	t.Run("auto-approved", func(t *testing.T) {
		ctx := testCtx(t, time.Minute)
		in := writeBatch(t, "auto", 5)
		id := submit(t, ctx, "auto", in)
		exact(t, ctx, id, in)
		save(t, ctx, id, "auto_approved")
	})

	t.Run("pause and resume", func(t *testing.T) {
		// Long enough that the pause, which reaches each piece with its
		// next heartbeat (up to 2 s), finds the pieces still running.
		ctx := testCtx(t, 2*time.Minute)
		in := writeBatch(t, "pause", 1500)
		id := submitApproved(t, ctx, "pause", in)
		waitDone(t, ctx, id, 20)
		decide(t, ctx, id, task.UpdatePause)
		eventually(t, ctx, "the inference to stop", func() (bool, error) {
			pa, err := pendingInfer(ctx, id)
			return err == nil && pa == nil, err
		})
		paused, _ := suite.tasks.Status(ctx, id)
		if paused.State != task.Paused || paused.Progress.Done() == 0 || paused.Progress.Total != len(in.ids) {
			t.Errorf("paused status %s with progress %+v; want PAUSED, some answered, total %d", paused.State, paused.Progress.Counts, len(in.ids))
		}
		decide(t, ctx, id, task.UpdateResume)
		exact(t, ctx, id, in)
		save(t, ctx, id, "paused_resumed")
	})

	t.Run("pause then resume at once", func(t *testing.T) {
		ctx := testCtx(t, 2*time.Minute)
		in := writeBatch(t, "race", 600)
		id := submitApproved(t, ctx, "race", in)
		waitDone(t, ctx, id, 20)
		decide(t, ctx, id, task.UpdatePause)
		decide(t, ctx, id, task.UpdateResume)
		res := exact(t, ctx, id, in)
		if res.Counts.Total != len(in.ids) {
			t.Errorf("the result's total is %d; want %d", res.Counts.Total, len(in.ids))
		}
		save(t, ctx, id, "pause_resume_at_once")
	})

	t.Run("cancel while running keeps partial output", func(t *testing.T) {
		// Long enough that the cancel, which reaches each piece with its
		// next heartbeat (up to 2 s), finds the pieces still running.
		ctx := testCtx(t, 2*time.Minute)
		in := writeBatch(t, "collect", 1500)
		id := submitApproved(t, ctx, "collect", in)
		waitDone(t, ctx, id, 20)
		decide(t, ctx, id, task.UpdateCancel)
		res, err := suite.tasks.Wait(ctx, id)
		if err != nil || res.State != task.Cancelled {
			t.Fatalf("result %+v, %v; want CANCELLED", res, err)
		}
		out := outputLines(t, ctx, res.Output)
		if len(out) == 0 || len(out) >= len(in.ids) || res.Counts.Total != len(in.ids) {
			t.Errorf("partial output has %d lines, counts %+v; want some of %d, total kept", len(out), res.Counts, len(in.ids))
		}
		// Each piece keeps what it answered: the lines come in input
		// order, each once, with gaps where a piece stopped.
		at := map[string]int{}
		for i, id := range in.ids {
			at[id] = i
		}
		last := -1
		for i, l := range out {
			n, ok := at[l.CustomID]
			if !ok || n <= last {
				t.Fatalf("partial output line %d is %s, out of input order or repeated", i+1, l.CustomID)
			}
			last = n
		}
		save(t, ctx, id, "cancelled_running_partial")
	})

	t.Run("failure", func(t *testing.T) {
		ctx := testCtx(t, time.Minute)
		id := "failed-" + taskclient.NewID()
		if _, err := suite.tasks.Submit(ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", Model: "gpt-9-turbo", Prompt: "hello"}); err != nil {
			t.Fatal(err)
		}
		if res, err := suite.tasks.Wait(ctx, id); err == nil || res.State == task.Completed {
			t.Fatalf("result %+v, %v; want FAILED", res, err)
		}
		save(t, ctx, id, "failed")
	})

	t.Run("rejected", func(t *testing.T) {
		ctx := testCtx(t, time.Minute)
		id := submit(t, ctx, "rejected", writeBatch(t, "rejected", 20))
		waitState(t, ctx, id, task.AwaitingApproval)
		if _, err := suite.tasks.Decide(ctx, id, task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: "not this week"}); err != nil {
			t.Fatal(err)
		}
		if res, err := suite.tasks.Wait(ctx, id); err != nil || res.State != task.Rejected {
			t.Fatalf("result %+v, %v; want REJECTED", res, err)
		}
		save(t, ctx, id, "rejected")
	})

	// The Web UI's "Request Cancellation" is this same call.
	t.Run("cancelled through Temporal", func(t *testing.T) {
		ctx := testCtx(t, time.Minute)
		id := submit(t, ctx, "uicancel", writeBatch(t, "uicancel", 20))
		waitState(t, ctx, id, task.AwaitingApproval)
		const identity = "olga@web-ui"
		ui, err := client.NewClientFromExisting(suite.Temporal, client.Options{Identity: identity})
		if err != nil {
			t.Fatal(err)
		}
		defer ui.Close()
		if err := ui.CancelWorkflow(ctx, task.WorkflowID(id), ""); err != nil {
			t.Fatal(err)
		}
		res, err := suite.tasks.Wait(ctx, id)
		if err != nil || res.State != task.Cancelled {
			t.Fatalf("result %+v, %v; want CANCELLED", res, err)
		}
		st, err := suite.tasks.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tr := st.Audit[len(st.Audit)-1]; tr.To != task.Cancelled || tr.Actor != identity || tr.Reason != "cancellation requested through Temporal" {
			t.Errorf("the last audit line is %+v; want CANCELLED by %s, \"cancellation requested through Temporal\"", tr, identity)
		}
		save(t, ctx, id, "cancelled_through_temporal")
	})

	t.Run("expiry", func(t *testing.T) {
		ctx := testCtx(t, time.Minute)
		in := writeBatch(t, "expiry", 20)
		id := "expiry-" + taskclient.NewID()
		if _, err := suite.tasks.Submit(ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", File: in.path}); err != nil {
			t.Fatal(err)
		}
		res, err := suite.tasks.Wait(ctx, id)
		if err != nil || res.State != task.Expired {
			t.Fatalf("result %+v, %v; want EXPIRED", res, err)
		}
		save(t, ctx, id, "expired")
	})
}

func decide(t *testing.T, ctx context.Context, id, update string) {
	t.Helper()
	if _, err := suite.tasks.Decide(ctx, id, update, task.DecisionRequest{Actor: "olga"}); err != nil {
		t.Fatalf("olga's %s of %s: %v", update, id, err)
	}
}

func auditText(st task.Status) string {
	var b strings.Builder
	for _, tr := range st.Audit {
		b.WriteString(string(tr.To) + " " + tr.Reason + "\n")
	}
	return b.String()
}

// shortDeadlinePolicy is the default policy with a short approval
// deadline.
func shortDeadlinePolicy(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "authz", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "approval_deadline: 24h", "approval_deadline: "+approvalDeadline.String(), 1)
	if s == string(b) {
		t.Fatal("the default policy has no approval_deadline: 24h to shorten")
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// save writes the task's history (its newest run) to recordDir, when set.
func save(t *testing.T, ctx context.Context, id, name string) {
	t.Helper()
	saveRun(t, ctx, id, "", name)
}
