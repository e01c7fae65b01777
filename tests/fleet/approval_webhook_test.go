package fleet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestApprovalWebhooks: a task that waits for a reviewer emits an event
// (autoglm.task.awaiting_approval), then its approval
// (autoglm.task.approved); a rejected one its rejection
// (autoglm.task.rejected), through the webhook delivery every event takes.
func TestApprovalWebhooks(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	rcv := newReceiver(t)
	t.Setenv("AUTOGLM_POLICY_FILE", webhookPolicy(t, rcv.url()))
	t.Setenv("FLEET_TEST_WEBHOOK_SECRET", whSecret)
	startNode(t, "approvals", nodeOptions{})
	rcv.up(t)
	defer rcv.down()

	var b strings.Builder
	for i := range 12 { // over the tenant's auto-approve limit of 10
		fmt.Fprintf(&b, `{"custom_id":"a-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"say %d"}]}}`+"\n", i, i)
	}
	file := filepath.Join(t.TempDir(), "batch.jsonl")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	submit := func() string {
		out, code := runCLI(t, ctx, "submit", "--json", "--as", "alice", "--tenant", "hooks", "--file", file)
		var sub struct{ ID string }
		if code != 0 || json.Unmarshal([]byte(out), &sub) != nil || sub.ID == "" {
			t.Fatalf("submit: exit %d, %q", code, out)
		}
		return sub.ID
	}
	delivered := func(id string, state task.State, typ string) {
		t.Helper()
		evID := "evt_" + id + "_" + string(state)
		eventually(t, ctx, typ+" of task "+id, func() (bool, error) {
			rc, ok := rcv.event(evID)
			return ok && rc.Verified, nil
		})
		rc, _ := rcv.event(evID)
		var ev struct {
			Type string
			Data struct{ ID, State string }
		}
		if err := json.Unmarshal(rc.Body, &ev); err != nil || ev.Type != typ || ev.Data.ID != id || ev.Data.State != string(state) {
			t.Errorf("event %s: %s (%v); want %s of task %s in %s", evID, rc.Body, err, typ, id, state)
		}
	}

	approved := submit()
	delivered(approved, task.AwaitingApproval, task.EventTaskAwaitingApproval)
	if _, code := runCLI(t, ctx, "approve", "--as", "bob", approved, "--reason", "fine"); code != 0 {
		t.Fatalf("approve: exit %d", code)
	}
	delivered(approved, task.Approved, task.EventTaskApproved)

	rejected := submit()
	delivered(rejected, task.AwaitingApproval, task.EventTaskAwaitingApproval)
	if _, code := runCLI(t, ctx, "reject", "--as", "bob", rejected, "--reason", "not now"); code != 0 {
		t.Fatalf("reject: exit %d", code)
	}
	delivered(rejected, task.Rejected, task.EventTaskRejected)
	if _, ok := rcv.event("evt_" + rejected + "_" + string(task.Approved)); ok {
		t.Errorf("the rejected task %s emitted an approval", rejected)
	}
}
