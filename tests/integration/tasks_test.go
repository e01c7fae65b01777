package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// The default policy's tenant and people (internal/authz/default.yaml).
const (
	tenant = "demo"
	model  = testmodel.DefaultModel // glm-4-test
	// autoApproveMax is the demo tenant's auto_approve_max_requests.
	autoApproveMax = 10
)

// newID is a task ID that no other test, or earlier run, uses.
func newID(prefix string) string {
	return prefix + "-" + taskclient.NewID()
}

// submit submits r through the CLI's code path and, when the test ends,
// terminates the task's workflow if it is still open, so that a failed
// test leaves nothing running for the next one.
func submit(t *testing.T, ctx context.Context, r taskclient.SubmitRequest) task.Input {
	t.Helper()
	in, err := suite.tasks.Submit(ctx, r)
	if err != nil {
		t.Fatalf("submitting task %s: %v", r.ID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Terminating a closed workflow is refused, which is fine.
		_ = suite.Temporal.TerminateWorkflow(ctx, task.WorkflowID(in.ID), "", "integration test cleanup")
	})
	return in
}

// status is the task's status query.
func status(t *testing.T, ctx context.Context, id string) task.Status {
	t.Helper()
	st, err := suite.tasks.Status(ctx, id)
	if err != nil {
		t.Fatalf("status of task %s: %v", id, err)
	}
	return st
}

// waitState waits on the status query until the task is in state.
func waitState(t *testing.T, ctx context.Context, id string, state task.State) task.Status {
	t.Helper()
	return testenv.WaitState(t, ctx, suite.tasks, id, state)
}

// wait waits for the task to end and wants it to have ended well.
func wait(t *testing.T, ctx context.Context, id string) task.Result {
	t.Helper()
	res, err := suite.tasks.Wait(ctx, id)
	if err != nil {
		t.Fatalf("task %s: %v", id, err)
	}
	return res
}

// waitFailed waits for the task to end and wants it failed with an
// application error of type want.
func waitFailed(t *testing.T, ctx context.Context, id string, want task.ErrorType) *temporal.ApplicationError {
	t.Helper()
	_, err := suite.tasks.Wait(ctx, id)
	if err == nil {
		t.Fatalf("task %s succeeded; want it to fail with %s", id, want)
	}
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("task %s failed with %v (%T); want an application error of type %s", id, err, err, want)
	}
	if ae.Type() != string(want) {
		t.Fatalf("task %s failed with type %q (%v); want %q", id, ae.Type(), ae, want)
	}
	return ae
}

// wantErrType fails the test unless err carries the stable type want,
// either as a Temporal application error (a refused update) or as the
// project's own typed error (a refused submit).
func wantErrType(t *testing.T, err error, want task.ErrorType) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error; want one of type %s", want)
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		if ae.Type() != string(want) {
			t.Fatalf("got error type %q (%v); want %q", ae.Type(), err, want)
		}
		return
	}
	if got := task.TypeOf(err); got != want {
		t.Fatalf("got error %v (type %q); want type %q", err, got, want)
	}
}

// download fetches an object through the CLI's code path, which checks it
// against the sha256 in ref.
func download(t *testing.T, ctx context.Context, ref task.ObjectRef) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := suite.tasks.Download(ctx, ref, &b); err != nil {
		t.Fatalf("downloading %s: %v", ref.URI(), err)
	}
	return b.Bytes()
}

// outputLines parses output.jsonl or errors.jsonl.
func outputLines(t *testing.T, b []byte) []batch.OutputLine {
	t.Helper()
	var out []batch.OutputLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		var l batch.OutputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d of the output is not JSON: %v: %q", n, err, sc.Bytes())
		}
		out = append(out, l)
	}
	return out
}

// inputBatch is a batch file the test wrote, with each request's body by
// custom_id so that answers can be checked against their own question.
type inputBatch struct {
	path   string
	ids    []string
	bodies map[string][]byte
}

// writeBatch writes an OpenAI Batch file of n chat requests for model.
func writeBatch(t *testing.T, prefix string, n int) inputBatch {
	t.Helper()
	b := inputBatch{path: filepath.Join(t.TempDir(), prefix+".jsonl"), bodies: map[string][]byte{}}
	var buf bytes.Buffer
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s-%05d", prefix, i)
		line := requestLine(id, fmt.Sprintf("Question %d of %s: how do durable workflows survive a crash?", i, prefix))
		buf.WriteString(line + "\n")
		b.ids = append(b.ids, id)
		b.bodies[id] = bodyOf(t, line)
	}
	if err := os.WriteFile(b.path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// requestLine is one OpenAI Batch request line.
func requestLine(customID, prompt string) string {
	body, _ := json.Marshal(map[string]any{
		"model":    model,
		"messages": []map[string]string{{"role": "user", "content": prompt}},
	})
	line, _ := json.Marshal(batch.Request{CustomID: customID, Method: "POST", URL: batch.ChatCompletionsURL, Body: body})
	return string(line)
}

func bodyOf(t *testing.T, line string) []byte {
	t.Helper()
	var r batch.Request
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	return r.Body
}

// answerOf is the assistant content of a chat completion body.
func answerOf(body json.RawMessage) (string, error) {
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return "", err
	}
	if len(c.Choices) != 1 {
		return "", fmt.Errorf("%d choices", len(c.Choices))
	}
	return c.Choices[0].Message.Content, nil
}

// checkAnswers wants every output line to be a 200 whose answer is the
// test model's answer to that line's own request.
func checkAnswers(t *testing.T, out []batch.OutputLine, bodies map[string][]byte) {
	t.Helper()
	for _, l := range out {
		body, ok := bodies[l.CustomID]
		if !ok {
			t.Errorf("output line %s answers no request of the input", l.CustomID)
			continue
		}
		if l.Response == nil || l.Response.StatusCode != 200 || l.Error != nil {
			t.Errorf("output line %s: response %+v, error %+v; want a 200 and no error", l.CustomID, l.Response, l.Error)
			continue
		}
		want, err := testmodel.Answer(body)
		if err != nil {
			t.Fatal(err)
		}
		got, err := answerOf(l.Response.Body)
		if err != nil || got != want {
			t.Errorf("output line %s answers %q (%v); want %q", l.CustomID, got, err, want)
		}
	}
}

// customIDCounts counts how often each custom_id appears in the lines.
func customIDCounts(lines ...[]batch.OutputLine) map[string]int {
	n := map[string]int{}
	for _, ls := range lines {
		for _, l := range ls {
			n[l.CustomID]++
		}
	}
	return n
}

// exactlyOnce wants every id of the input exactly once in counts, and
// nothing else; it returns how many were lost and how many duplicated.
func exactlyOnce(t *testing.T, ids []string, counts map[string]int) (lost, dup int) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
		switch c := counts[id]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	var extra []string
	for id := range counts {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	if lost > 0 || dup > 0 || len(extra) > 0 {
		t.Errorf("%d custom_ids lost, %d duplicated, %d not in the input (%s)", lost, dup, len(extra), strings.Join(first(extra, 5), ", "))
	}
	return lost, dup
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// artifact is the artifact of the status named name (output.jsonl, ...).
func artifact(t *testing.T, st task.Status, name string) task.ObjectRef {
	t.Helper()
	for _, a := range st.Artifacts {
		if strings.HasSuffix(a.Key, "/"+name) {
			return a
		}
	}
	t.Fatalf("task %s has no artifact %s among %v", st.ID, name, st.Artifacts)
	return task.ObjectRef{}
}

// outputUsage is the sum of response.body.usage over output lines: the
// tokens a task's totals must equal.
func outputUsage(t *testing.T, out []batch.OutputLine) task.Usage {
	t.Helper()
	var sum task.Usage
	for _, ol := range out {
		var body struct{ Usage task.Usage }
		if ol.Response == nil || json.Unmarshal(ol.Response.Body, &body) != nil {
			t.Fatalf("output line %s has no response body", ol.CustomID)
		}
		sum.Add(body.Usage)
	}
	return sum
}
