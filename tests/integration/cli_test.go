package integration

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// autoglm runs the built CLI with the suite's environment and returns its
// standard output and exit code.
func autoglm(t *testing.T, args ...string) (string, int) {
	t.Helper()
	r := suite.RunCLI(t, context.Background(), testenv.CLIOptions{}, args...)
	return r.Stdout, r.Code
}

// TestCLIExitCodesAndJSON drives the real binary as a person or a script
// would: --json output that parses, and exit codes that follow the error
// type.
func TestCLIExitCodesAndJSON(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	startWorker(t, workerOptions{})

	out, code := autoglm(t, "submit", "--as", "alice", "--json", "--model", "glm-4-test", "--wait", "What is a durable workflow?")
	// A prompt's --wait --json is its whole output line.
	var line batch.OutputLine
	if code != 0 || json.Unmarshal([]byte(out), &line) != nil || line.Response == nil || line.Response.StatusCode != 200 {
		t.Fatalf("submit --wait --json: exit %d, output %q", code, out)
	}

	// A batch over the auto-approve limit waits for a reviewer.
	in := writeBatch(t, "cli", 12)
	out, code = autoglm(t, "submit", "--as", "alice", "--json", "--file", in.path)
	var sub task.Input
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil {
		t.Fatalf("submit --file: exit %d, %q", code, out)
	}
	waitState(t, ctx, sub.ID, task.AwaitingApproval)

	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"approve", "--as", "alice", sub.ID}, 3},                 // her own task
		{[]string{"approve", "--as", "aldo", sub.ID}, 3},                  // an auditor
		{[]string{"status", "no-such-task"}, 4},                           // NotFound
		{[]string{"resume", "--as", "olga", sub.ID}, 5},                   // not paused
		{[]string{"submit", "--as", "alice", "--tenant", "nope", "x"}, 3}, // UnknownTenant, at submit
		{[]string{"set-priority", "--as", "olga", sub.ID, "9"}, 2},        // out of range
		{[]string{"list", "--as", "mallory"}, 3},                          // no tenant of hers
	} {
		if _, code := autoglm(t, c.args...); code != c.want {
			t.Errorf("autoglm %v: exit %d, want %d", c.args, code, c.want)
		}
	}

	if _, code := autoglm(t, "approve", "--as", "bob", sub.ID); code != 0 {
		t.Fatalf("bob's approval: exit %d", code)
	}
	if _, code := autoglm(t, "watch", sub.ID); code != 0 {
		t.Fatalf("watch of a task that completes: exit %d", code)
	}
	out, code = autoglm(t, "list", "--as", "bob", "--json", "--state", "COMPLETED")
	var listed []taskclient.Summary
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil {
		t.Fatalf("list --json: exit %d, %q", code, out)
	}
	found := false
	for _, s := range listed {
		found = found || s.ID == sub.ID
	}
	if !found {
		t.Errorf("list --state COMPLETED does not show %s: %+v", sub.ID, listed)
	}
	dir := t.TempDir()
	if _, code := autoglm(t, "results", sub.ID, "--dir", dir); code != 0 {
		t.Fatalf("results: exit %d", code)
	}
	if b, err := os.ReadFile(dir + "/output.jsonl"); err != nil || len(outputLines(t, b)) != 12 {
		t.Errorf("results should download the 12-line output.jsonl: %v", err)
	}
}
