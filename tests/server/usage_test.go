package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// outputUsage sums response.body.usage over a task's output.jsonl, read
// through its presigned URL.
func outputUsage(t *testing.T, ctx context.Context, user, id string) task.Usage {
	t.Helper()
	var res struct{ Files []server.ResultFile }
	must(t, ctx, http.StatusOK, user, "GET", "/api/v1/tasks/"+id+"/results", nil, &res)
	for _, f := range res.Files {
		if f.Name != "output.jsonl" {
			continue
		}
		resp, err := http.Get(f.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sum task.Usage
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ol batch.OutputLine
			var body struct{ Usage task.Usage }
			if json.Unmarshal(sc.Bytes(), &ol) != nil || ol.Response == nil || json.Unmarshal(ol.Response.Body, &body) != nil {
				t.Fatalf("output line: %s", sc.Text())
			}
			sum.Add(body.Usage)
		}
		return sum
	}
	t.Fatalf("task %s has no output.jsonl among %+v", id, res.Files)
	return task.Usage{}
}

// TestUsage: a task's token totals (status and report) are the sum over
// its output.jsonl's response.body.usage, and the tenant's usage report
// (the API, and `autoglm usage` through the server and on the break-glass
// path) is the sum over its tasks. A member of another tenant may not
// read it.
func TestUsage(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	var ids []string
	for i := range 2 {
		var sub server.Submitted
		must(t, ctx, http.StatusCreated, "zed", "POST", "/api/v1/tasks?model=glm-4-test", batchFile(4+i, fmt.Sprintf("usage%d", i)), &sub)
		ids = append(ids, sub.ID)
	}
	for _, id := range ids {
		var res task.Result
		must(t, ctx, http.StatusOK, "zed", "GET", "/api/v1/tasks/"+id+"/result?wait=60s", nil, &res)
		if res.State != task.Completed {
			t.Fatalf("task %s: %+v", id, res)
		}
		want := outputUsage(t, ctx, "zed", id)
		var st server.TaskStatus
		must(t, ctx, http.StatusOK, "zed", "GET", "/api/v1/tasks/"+id, nil, &st)
		if want.TotalTokens == 0 || st.Usage != want || res.Usage != want {
			t.Errorf("task %s: status usage %+v, result usage %+v; the output's sum is %+v", id, st.Usage, res.Usage, want)
		}
		var b server.Batch
		must(t, ctx, http.StatusOK, "zed", "GET", "/v1/batches/"+server.BatchIDPrefix+id, nil, &b)
		if b.Usage.InputTokens != want.PromptTokens || b.Usage.OutputTokens != want.CompletionTokens || b.Usage.TotalTokens != want.TotalTokens {
			t.Errorf("batch %s: usage %+v; the output's sum is %+v", b.ID, b.Usage, want)
		}
	}

	// The report against the sum over every acme task that ended today
	// and answered something: other tests' acme tasks count too.
	today := usage.Day(time.Now())
	var list struct{ Tasks []taskclient.Summary }
	must(t, ctx, http.StatusOK, "zed", "GET", "/api/v1/tasks?tenant=acme&limit=1000", nil, &list)
	var want task.Usage
	tasks := 0
	for _, s := range list.Tasks {
		if !task.State(s.State).Final() {
			continue
		}
		var st server.TaskStatus
		must(t, ctx, http.StatusOK, "zed", "GET", "/api/v1/tasks/"+s.ID, nil, &st)
		if end := st.Audit[len(st.Audit)-1].Time; usage.Day(end) != today || st.Progress.Done() == 0 {
			continue
		}
		want.Add(st.Usage)
		tasks++
	}
	var rep server.UsageReport
	must(t, ctx, http.StatusOK, "zed", "GET", "/api/v1/usage?tenant=acme&since="+today+"&until="+today, nil, &rep)
	var got task.Usage
	gotTasks := 0
	for _, r := range rep.Data {
		if r.Tenant != "acme" || r.Day != today || r.Model != "glm-4-test" {
			t.Errorf("row %+v: want acme's glm-4-test of %s only", r, today)
		}
		got.Add(task.Usage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens, TotalTokens: r.TotalTokens})
		gotTasks += r.Tasks
	}
	if got != want || gotTasks != tasks {
		t.Errorf("usage report: %d task(s), %+v; the sum over acme's tasks: %d, %+v", gotTasks, got, tasks, want)
	}
	refused(t, ctx, http.StatusForbidden, string(task.PermissionDenied), "alice", "GET", "/api/v1/usage?tenant=acme", nil)

	// The CLI shows the same rows, on both paths.
	apiRows, _ := json.Marshal(rep.Data)
	for name, env := range map[string][]string{
		"server":      cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["zed"]),
		"break-glass": breakGlassEnv(t.TempDir(), "zed"),
	} {
		r := suite.RunCLI(t, ctx, testenv.CLIOptions{Env: env}, "usage", "--tenant", "acme", "--since", today, "--until", today, "--json")
		var rows []usage.Row
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &rows) != nil {
			t.Fatalf("%s: autoglm usage: exit %d: %s", name, r.Code, r.Output)
		}
		if b, _ := json.Marshal(rows); string(b) != string(apiRows) {
			t.Errorf("%s: autoglm usage %s, the API %s", name, b, apiRows)
		}
	}
}

// TestDailyTokenQuota: once a tenant's tasks of the day used its
// max_tokens_per_day, authorization refuses its next task with
// QuotaExceeded, and `watch` exits 3 for it.
func TestDailyTokenQuota(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	submit := func(prompt string) (string, task.Result) {
		var sub server.Submitted
		must(t, ctx, http.StatusCreated, "alice", "POST", "/api/v1/tasks", map[string]any{"prompt": prompt, "model": "glm-4-test", "tenant": "metered"}, &sub)
		var res task.Result
		must(t, ctx, http.StatusOK, "alice", "GET", "/api/v1/tasks/"+sub.ID+"/result?wait=60s", nil, &res)
		return sub.ID, res
	}
	// The first task may run (nothing used yet today, unless an earlier
	// run of this test used it: then it is refused like the second).
	if _, res := submit("the first of the day"); res.State != task.Completed && !strings.Contains(res.Reason, string(task.QuotaExceeded)) {
		t.Fatalf("first task: %+v", res)
	}
	id, res := submit("one too many")
	if res.State != task.Failed || !strings.Contains(res.Reason, string(task.QuotaExceeded)) {
		t.Fatalf("a task over the day's tokens: %+v; want FAILED with QuotaExceeded", res)
	}
	r := suite.RunCLI(t, ctx, testenv.CLIOptions{Env: cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["alice"])}, "watch", id)
	if r.Code != 3 || !strings.Contains(r.Stderr, "tokens") {
		t.Errorf("watch of the refused task: exit %d, %q; want 3 naming the tokens", r.Code, r.Stderr)
	}
}
