package server

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestPlainTemporalUpdateRefused: whoever reaches Temporal without the
// server cannot act as anyone. The real temporal CLI's update, with any
// actor, with or without a made-up assertion, is refused with
// PermissionDenied and the task stays as it was; the same reviewer through
// the server approves it.
func TestPlainTemporalUpdateRefused(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	id := submitBatch(t, ctx, "alice", 12)
	temporal := filepath.Join(suite.Bin, "temporal")
	for _, input := range []string{
		`{"actor":"bob","reason":"trust me"}`,
		`{"actor":"carol"}`,
		`{"actor":"bob","assertion":"eyJ0YXNrIjoieCJ9.AAAA"}`,
	} {
		cmd := exec.CommandContext(ctx, temporal, "workflow", "update", "execute",
			"--address", suite.Stack.TemporalAddress, "--namespace", suite.Stack.Namespace,
			"-w", task.WorkflowID(id), "--name", task.UpdateApprove, "--input", input)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("temporal workflow update execute --input %s succeeded:\n%s", input, out)
		}
		if !strings.Contains(string(out), "PermissionDenied") && !strings.Contains(string(out), "assertion") {
			t.Errorf("temporal workflow update --input %s failed, but not as PermissionDenied:\n%s", input, out)
		}
	}
	var st server.TaskStatus
	must(t, ctx, http.StatusOK, "carol", "GET", "/api/v1/tasks/"+id, nil, &st)
	if st.State != task.AwaitingApproval || len(st.Approvals) != 0 {
		t.Fatalf("after refused updates the task is %s with approvals %+v", st.State, st.Approvals)
	}
	must(t, ctx, http.StatusOK, "bob", "POST", "/api/v1/tasks/"+id+"/approve", server.DecisionBody{Reason: "through the server"}, &st)
	if len(st.Approvals) != 1 || st.Approvals[0].Actor != "bob" {
		t.Fatalf("bob's approval through the server: %+v", st.Approvals)
	}
	var res task.Result
	eventually(t, ctx, "the task to complete", func() (bool, error) {
		code, _ := call(t, ctx, "alice", "GET", "/api/v1/tasks/"+id+"/result?wait=10s", nil)
		if code == http.StatusOK {
			must(t, ctx, http.StatusOK, "alice", "GET", "/api/v1/tasks/"+id+"/result", nil, &res)
			return true, nil
		}
		return false, nil
	})
	if res.State != task.Completed || res.Counts.Completed != 12 || res.Counts.Failed != 1 {
		t.Fatalf("result %+v", res)
	}
}
