package integration

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// Bad input is refused where it is first known, with a stable type: an
// unknown tenant or model by authorization, a file that is not text by the
// CLI before anything is uploaded or started, duplicate custom_ids by
// screening; malformed lines do not fail a batch but are answered in
// errors.jsonl with their input line numbers.
func TestBadInputIsRefusedWithAStableType(t *testing.T) {
	startWorker(t, workerOptions{})

	t.Run("unknown tenant fails authorization", func(t *testing.T) {
		ctx := testCtx(t, 60*time.Second)
		id := newID("tenant")
		submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: "nosuch", Submitter: "alice", Model: model, Prompt: "hello"})
		ae := waitFailed(t, ctx, id, task.UnknownTenant)
		if !strings.Contains(ae.Message(), "nosuch") {
			t.Errorf("message %q does not name the tenant", ae.Message())
		}
		if st := status(t, ctx, id); st.State != task.Failed || st.LastError == "" {
			t.Errorf("status is %s with last error %q; want FAILED with the reason", st.State, st.LastError)
		}
	})

	t.Run("model the tenant may not use fails authorization", func(t *testing.T) {
		ctx := testCtx(t, 60*time.Second)
		id := newID("model")
		submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", Model: "gpt-9-turbo", Prompt: "hello"})
		waitFailed(t, ctx, id, task.ModelNotAllowed)
	})

	t.Run("a binary named .jsonl is refused before anything starts", func(t *testing.T) {
		ctx := testCtx(t, 30*time.Second)
		// The head of this very test binary: a real ELF executable.
		exe, err := os.Open("/proc/self/exe")
		if err != nil {
			t.Skip("no /proc/self/exe:", err)
		}
		defer exe.Close()
		path := filepath.Join(t.TempDir(), "batch.jsonl")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(f, exe, 64<<10); err != nil {
			t.Fatal(err)
		}
		f.Close()

		id := newID("elf")
		// With --model given, so that the file's content, not a missing
		// model on its first line, is what refuses it.
		_, err = suite.tasks.Submit(ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", Model: model, File: path})
		wantErrType(t, err, task.InvalidInput)
		if !strings.Contains(err.Error(), "binary") {
			t.Errorf("the refusal %q does not say the file is binary", err)
		}
		for _, c := range storage.Categories {
			infos, err := suite.Store.List(ctx, storage.TaskPrefix(c, tenant, id))
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 0 {
				t.Errorf("the refused file left %d object(s) under %s", len(infos), storage.TaskPrefix(c, tenant, id))
			}
		}
		_, err = suite.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
		var nf *serviceerror.NotFound
		if !errors.As(err, &nf) {
			t.Errorf("describing the refused task's workflow: %v; want NotFound (it must never have started)", err)
		}
	})

	t.Run("duplicate custom_ids fail screening", func(t *testing.T) {
		ctx := testCtx(t, 60*time.Second)
		lines := []string{
			requestLine("dup-1", "first"),
			requestLine("dup-2", "second"),
			requestLine("dup-1", "first again"),
		}
		id := newID("dup")
		submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", File: writeLines(t, lines)})
		ae := waitFailed(t, ctx, id, task.InvalidInput)
		// Lines, not their content: the message is in workflow history.
		if !strings.Contains(ae.Message(), "line 3: its custom_id is also the custom_id of line 1") {
			t.Errorf("message %q does not name the duplicate's lines", ae.Message())
		}
	})

	t.Run("malformed lines are answered in errors.jsonl with their line numbers", func(t *testing.T) {
		ctx := testCtx(t, 60*time.Second)
		lines := []string{
			requestLine("ok-1", "first good line"),                                                    // 1
			`{"custom_id":"broken","method":"POST","url":`,                                            // 2: not JSON
			"\ufeff" + requestLine("bom", "a line behind a byte-order mark"),                          // 3
			requestLine("ok-2", "second good line"),                                                   // 4
			strings.Replace(requestLine("latin1", "caf\u00e9"), "\u00e9", "\xe9", 1),                  // 5: invalid UTF-8
			strings.Replace(requestLine("embed", "x"), batch.ChatCompletionsURL, "/v1/embeddings", 1), // 6
			requestLine("ok-3", "third good line"),                                                    // 7
		}
		wantBad := map[int]string{2: batch.CodeMalformedLine, 3: batch.CodeMalformedLine, 5: batch.CodeMalformedLine, 6: batch.CodeInvalidRequest}
		id := newID("malformed")
		submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", Model: model, File: writeLines(t, lines)})
		res := wait(t, ctx, id)
		if res.State != task.Completed || res.Counts != (task.Counts{Total: 7, Completed: 3, Failed: 4}) {
			t.Fatalf("result %+v; want COMPLETED with 3 completed and 4 failed", res)
		}
		out := outputLines(t, download(t, ctx, res.Output))
		bodies := map[string][]byte{}
		for _, i := range []int{0, 3, 6} {
			bodies[fmt.Sprintf("ok-%d", i/3+1)] = bodyOf(t, lines[i])
		}
		if len(out) != 3 {
			t.Errorf("output.jsonl has %d lines; want the 3 good ones", len(out))
		}
		checkAnswers(t, out, bodies)

		errs := outputLines(t, download(t, ctx, res.Errors))
		got := map[int]string{}
		for _, l := range errs {
			if l.Error == nil {
				t.Errorf("errors.jsonl line for input line %d has no error: %+v", l.Line, l)
				continue
			}
			got[l.Line] = l.Error.Code
		}
		if len(errs) != len(wantBad) || fmt.Sprint(got) != fmt.Sprint(wantBad) {
			t.Errorf("errors.jsonl has %d lines with (line: code) %v; want %v", len(errs), got, wantBad)
		}
	})
}

// writeLines writes lines as a JSONL file.
func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "batch.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
