package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// A single prompt within the auto-approve limit runs without a person, and
// everything it produced is in MinIO under the documented key layout, with
// a manifest whose digests match what is downloaded, and the Temporal
// server lists the workflow by ID and by its Tenant search attribute. A
// finished task cannot be cancelled.
func TestPromptIsAutoApprovedCompletesAndIsArchived(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	startWorker(t, workerOptions{})

	id := newID("prompt")
	prompt := "In one sentence: why must a checkpoint live in the bucket?"
	submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", Model: model, Prompt: prompt})
	res := wait(t, ctx, id)
	if res.State != task.Completed || res.Counts != (task.Counts{Total: 1, Completed: 1}) {
		t.Fatalf("result %+v; want COMPLETED with 1 of 1 completed", res)
	}
	st := status(t, ctx, id)
	if i := slices.IndexFunc(st.Audit, func(tr task.Transition) bool { return tr.To == task.Approved }); i < 0 || st.Audit[i].Actor != "policy" {
		t.Errorf("audit %+v; want an APPROVED transition by policy", st.Audit)
	}

	// The key layout, derived here from its definition rather than from
	// the code under test: data/<first 2 hex of sha256(tenant)>/<tenant>/<id>/.
	sum := sha256.Sum256([]byte(tenant))
	hash := hex.EncodeToString(sum[:1])
	if storage.TenantHash(tenant) != hash {
		t.Errorf("storage.TenantHash(%q) = %q; want %q", tenant, storage.TenantHash(tenant), hash)
	}
	prefix := fmt.Sprintf("data/%s/%s/%s/", hash, tenant, id)
	for _, name := range []string{"input.jsonl", "output.jsonl", "errors.jsonl", "report.json", "manifest.json"} {
		if _, err := suite.Store.Stat(ctx, prefix+name); err != nil {
			t.Errorf("%s%s is not in MinIO: %v", prefix, name, err)
		}
	}
	if res.Output.Key != prefix+"output.jsonl" || res.Report.Key != prefix+"report.json" {
		t.Errorf("result points at %s and %s; want them under %s", res.Output.Key, res.Report.Key, prefix)
	}

	out := outputLines(t, download(t, ctx, res.Output))
	if len(out) != 1 || out[0].CustomID != "prompt-1" {
		t.Fatalf("output.jsonl holds %+v; want one line for prompt-1", out)
	}
	checkAnswers(t, out, map[string][]byte{"prompt-1": bodyOf(t, requestLine("prompt-1", prompt))})

	checkManifest(t, ctx, prefix, "output.jsonl", "report.json", "input.jsonl")

	var report activities.Report
	if err := json.Unmarshal(download(t, ctx, res.Report), &report); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if report.Task.ID != id || report.Result.State != task.Completed || report.Result.Counts.Completed != 1 {
		t.Errorf("report.json has task %s, result %+v; want task %s COMPLETED with 1 completed", report.Task.ID, report.Result, id)
	}

	// A finished task cannot be cancelled, not even by an operator.
	_, err := suite.tasks.Decide(ctx, id, task.UpdateCancel, task.DecisionRequest{Actor: "olga"})
	wantErrType(t, err, task.WrongState)

	checkLean(t, history(t, ctx, id), prompt)

	wid := task.WorkflowID(id)
	listed(t, ctx, fmt.Sprintf("WorkflowId = '%s'", wid), wid)
	attrs := listed(t, ctx, fmt.Sprintf("Tenant = '%s' AND TaskState = '%s'", tenant, task.Completed), wid)
	for k, want := range map[string]string{"Tenant": tenant, "Submitter": "alice", "Model": model, "TaskKind": string(task.KindPrompt)} {
		if attrs[k] != want {
			t.Errorf("search attribute %s = %q; want %q", k, attrs[k], want)
		}
	}
}

// checkManifest reads the task's manifest.json, wants it to list the named
// objects, and checks every listed object's size and sha256 against what
// MinIO serves.
func checkManifest(t *testing.T, ctx context.Context, prefix string, names ...string) {
	t.Helper()
	var m storage.Manifest
	if err := getJSON(ctx, prefix+"manifest.json", &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	for _, name := range names {
		if !slices.ContainsFunc(m.Objects, func(e storage.ManifestEntry) bool { return e.Key == prefix+name }) {
			t.Errorf("manifest.json does not list %s%s: %+v", prefix, name, m.Objects)
		}
	}
	for _, r := range m.Objects {
		rc, _, err := suite.Store.Get(ctx, r.Key)
		if err != nil {
			t.Errorf("manifest lists %s, which MinIO does not have: %v", r.Key, err)
			continue
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil {
			t.Errorf("reading %s: %v", r.Key, err)
			continue
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != r.SHA256 || n != r.Size {
			t.Errorf("%s is %d bytes with sha256 %s; the manifest says %d bytes, %s", r.Key, n, got, r.Size, r.SHA256)
		}
	}
}

// listed polls the Temporal server's visibility until query lists wid, and
// returns the workflow's keyword search attributes.
func listed(t *testing.T, ctx context.Context, query, wid string) map[string]string {
	t.Helper()
	attrs := map[string]string{}
	eventually(t, ctx, "the Temporal server to list "+wid+" for "+query, 200*time.Millisecond, func() (bool, error) {
		req := &workflowservice.ListWorkflowExecutionsRequest{Namespace: suite.Stack.Namespace, Query: query}
		for {
			resp, err := suite.Temporal.ListWorkflow(ctx, req)
			if err != nil {
				return false, err
			}
			for _, e := range resp.Executions {
				if e.GetExecution().GetWorkflowId() != wid {
					continue
				}
				for k, p := range e.GetSearchAttributes().GetIndexedFields() {
					var s string
					if converter.GetDefaultDataConverter().FromPayload(p, &s) == nil {
						attrs[k] = s
					}
				}
				return true, nil
			}
			if len(resp.NextPageToken) == 0 {
				return false, nil
			}
			req.NextPageToken = resp.NextPageToken
		}
	})
	return attrs
}

// checkLean wants a one-prompt task to cost the Temporal server no more
// than it must: the inference as its one activity task (authorize, screen,
// dispatch, archive and the end's event run as local activities),
// two workflow tasks (the first, and the one after the inference), and the
// TaskState search attribute set only to the states a list can see between
// workflow tasks (SUBMITTED, RUNNING, COMPLETED), not to each state the
// task passes within one. The prompt is nowhere in the history.
func checkLean(t *testing.T, events []*historypb.HistoryEvent, prompt string) {
	t.Helper()
	var acts, workflowTasks []string
	var states []string
	for _, e := range events {
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			acts = append(acts, e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName())
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			workflowTasks = append(workflowTasks, fmt.Sprint(e.GetEventId()))
		case enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
			if p := e.GetUpsertWorkflowSearchAttributesEventAttributes().GetSearchAttributes().GetIndexedFields()[task.AttrState.GetName()]; p != nil {
				states = append(states, strings.Trim(string(p.GetData()), `"`))
			}
		}
		if b, err := proto.Marshal(e); err != nil {
			t.Fatal(err)
		} else if bytes.Contains(b, []byte(prompt)) {
			t.Errorf("event %d %s holds the prompt", e.GetEventId(), e.GetEventType())
		}
	}
	if !slices.Equal(acts, []string{"Infer"}) {
		t.Errorf("activity tasks %v; want only Infer (the control-plane stages local)", acts)
	}
	if len(workflowTasks) != 2 {
		t.Errorf("%d workflow tasks (completed at events %v); want 2", len(workflowTasks), workflowTasks)
	}
	if want := []string{string(task.Submitted), string(task.Running), string(task.Completed)}; !slices.Equal(states, want) {
		t.Errorf("TaskState set to %v; want %v", states, want)
	}
}
