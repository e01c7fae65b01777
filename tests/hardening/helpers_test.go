package hardening

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

func getJSON(ctx context.Context, key string, v any) error {
	rc, _, err := suite.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return json.NewDecoder(rc).Decode(v)
}

func getObject(t *testing.T, ctx context.Context, key string) []byte {
	t.Helper()
	rc, _, err := suite.Store.Get(ctx, key)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return b
}

func newID(prefix string) string { return prefix + "-" + taskclient.NewID() }

// requestLine is one OpenAI Batch request line for the served model.
func requestLine(customID, content string) string { return requestLineFor(model, customID, content) }

func requestLineFor(model, customID, content string) string {
	b, _ := json.Marshal(map[string]any{
		"custom_id": customID, "method": "POST", "url": "/v1/chat/completions",
		"body": map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": content}}},
	})
	return string(b)
}

// writeFile writes content to a file of the test's own and returns its path.
func writeFile(t *testing.T, name string, content []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// batchFile is a JSONL file of n good request lines.
func batchFile(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintln(&b, requestLine(fmt.Sprintf("req-%d", i+1), fmt.Sprintf("question %d", i+1)))
	}
	return writeFile(t, "batch.jsonl", []byte(b.String()))
}

// autoglm runs the built CLI with the suite's environment and returns its
// standard output, standard error and exit code.
func autoglm(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	r := suite.RunCLI(t, context.Background(), testenv.CLIOptions{}, args...)
	return r.Stdout, r.Stderr, r.Code
}

// submit submits through the CLI's library and terminates the task's
// workflow, if still open, when the test ends.
func submit(t *testing.T, ctx context.Context, r taskclient.SubmitRequest) task.Input {
	t.Helper()
	in, err := suite.tasks.Submit(ctx, r)
	if err != nil {
		t.Fatalf("submitting: %v", err)
	}
	cleanUp(t, in.ID)
	return in
}

func cleanUp(t *testing.T, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = suite.Temporal.TerminateWorkflow(ctx, task.WorkflowID(id), "", "hardening test cleanup")
	})
}

// waitState waits on the status query until the task is in state.
func waitState(t *testing.T, ctx context.Context, id string, want task.State) task.Status {
	t.Helper()
	return testenv.WaitState(t, ctx, suite.tasks, id, want)
}

// record writes the task's history where AUTOGLM_RECORD_HISTORIES points
// (workflows/testdata), as `temporal workflow show --output json` does, for
// the replay tests. Unset, it does nothing.
func record(t *testing.T, id, name string) {
	t.Helper()
	dir := os.Getenv("AUTOGLM_RECORD_HISTORIES")
	if dir == "" {
		return
	}
	cmd := exec.Command(filepath.Join(suite.Bin, "temporal"), "workflow", "show",
		"--address", suite.Stack.TemporalAddress, "--namespace", suite.Stack.Namespace,
		"-w", task.WorkflowID(id), "--output", "json")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("temporal workflow show: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Shared with the other integration packages (internal/testenv).
var (
	testCtx = testenv.Context
)
