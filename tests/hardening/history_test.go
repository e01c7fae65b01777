package hardening

import (
	"bytes"
	"context"
	"fmt"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/proto"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// A canary in a prompt and in a batch file, both submitted through
// taskclient (what the CLI and the server call), is in the bucket and in 0
// events of every workflow history of the run, searched as raw bytes.
func TestCanaryPromptIsInNoWorkflowHistory(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	canary := "canary" + randHex(8)
	prompt := submit(t, ctx, taskclient.SubmitRequest{Tenant: "acme", Submitter: "alice", Prompt: "Explain durable execution in one line " + canary})
	lines := requestLine("a", "first "+canary) + "\n" + requestLine("b", canary+" second") + "\n"
	file := submit(t, ctx, taskclient.SubmitRequest{Tenant: "acme", Submitter: "alice", File: writeFile(t, "canary.jsonl", []byte(lines))})
	for _, in := range []task.Input{prompt, file} {
		if in.Prompt != "" {
			t.Errorf("task %s started with its prompt in the workflow input", in.ID)
		}
		if res, err := suite.tasks.Wait(ctx, in.ID); err != nil || res.State != task.Completed {
			t.Fatalf("task %s: %+v, %v; want COMPLETED", in.ID, res, err)
		}
		// The canary is where it belongs, so finding it nowhere else means
		// something.
		if !bytes.Contains(getObject(t, ctx, in.Source.Key), []byte(canary)) {
			t.Fatalf("the input of task %s in the bucket lacks the canary", in.ID)
		}
	}
	if found := searchHistories(t, ctx, []byte(canary), prompt.ID, file.ID); len(found) != 0 {
		t.Errorf("the canary is in workflow history: %s", strings.Join(found, "; "))
	}
	record(t, prompt.ID, "task_prompt_by_reference")

	// The search finds what is there: a task started the old way, with its
	// prompt in the workflow input (still accepted, so that recorded
	// histories replay), runs and has the prompt in its history.
	control := "control" + randHex(8)
	old := task.Input{ID: newID("old"), Tenant: "acme", Submitter: "alice", Model: model, Kind: task.KindPrompt, Priority: 3, Prompt: "old way " + control}
	old.Assertion = suite.Signer.SignStart(assertion.StartOf(old), 0)
	run, err := suite.Temporal.ExecuteWorkflow(ctx, taskclient.StartOptions(old), task.WorkflowType, old)
	if err != nil {
		t.Fatal(err)
	}
	cleanUp(t, old.ID)
	var res task.Result
	if err := run.Get(ctx, &res); err != nil || res.State != task.Completed {
		t.Fatalf("a task started with an inline prompt: %+v, %v; want COMPLETED", res, err)
	}
	if found := searchHistories(t, ctx, []byte(control), old.ID); len(found) == 0 {
		t.Error("the history search does not find a prompt that is in a workflow input")
	}
}

// searchHistories reads the history of every workflow in the namespace,
// once the given tasks are listed, and names each event whose encoded
// bytes hold needle.
func searchHistories(t *testing.T, ctx context.Context, needle []byte, mustList ...string) []string {
	t.Helper()
	var execs []string
	for {
		execs = listAll(t, ctx)
		missing := 0
		for _, id := range mustList {
			if !contains(execs, task.WorkflowID(id)) {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("visibility never listed %v", mustList)
		case <-time.After(200 * time.Millisecond):
		}
	}
	var found []string
	events := 0
	for _, wid := range execs {
		it := suite.Temporal.GetWorkflowHistory(ctx, wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatalf("history of %s: %v", wid, err)
			}
			events++
			b, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(b, needle); n > 0 {
				found = append(found, fmt.Sprintf("%s event %d (%s): %d time(s)", wid, ev.GetEventId(), ev.GetEventType(), n))
			}
		}
	}
	t.Logf("searched %d event(s) of %d workflow(s) for %q", events, len(execs), needle)
	return found
}

// listAll is the ID of every workflow execution in the namespace.
func listAll(t *testing.T, ctx context.Context) []string {
	t.Helper()
	var ids []string
	var token []byte
	for {
		resp, err := suite.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: suite.Stack.Namespace, PageSize: 1000, NextPageToken: token,
		})
		if err != nil {
			t.Fatalf("listing workflows: %v", err)
		}
		for _, e := range resp.GetExecutions() {
			ids = append(ids, e.GetExecution().GetWorkflowId())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return ids
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Shared with the other integration packages (internal/testenv).
var (
	randHex = testenv.RandHex
)
