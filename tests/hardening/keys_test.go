package hardening

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// Any Temporal client can start a TaskWorkflow. One started with the real
// temporal CLI by a user of tenant globex, pointing at tenant acme's input,
// carries no server-signed start, so the engine refuses it before its
// first activity: nothing reads the bucket, and nothing of acme's lands
// under globex's task.
func TestAnotherTenantsSourceKeyIsRefusedAndNothingRead(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	victim := submit(t, ctx, taskclient.SubmitRequest{Tenant: "acme", Submitter: "alice", File: batchFile(t, autoApprove+2)})
	waitState(t, ctx, victim.ID, task.AwaitingApproval)

	for name, key := range map[string]string{
		"acme's input":               victim.Source.Key,
		"a path out of globex's own": storage.TaskPrefix(storage.Data, "globex", "x") + "../../acme/" + victim.ID + "/input.jsonl",
	} {
		t.Run(name, func(t *testing.T) {
			id := newID("steal")
			in := task.Input{ID: id, Tenant: "globex", Submitter: "mallory", Model: model, Kind: task.KindBatch, Priority: 3,
				Source: task.ObjectRef{Bucket: bucket, Key: key}}
			if name == "a path out of globex's own" {
				in.Source.Key = strings.Replace(key, "/x/", "/"+id+"/", 1)
			}
			startWithTemporalCLI(t, ctx, in)

			err := suite.Temporal.GetWorkflow(ctx, task.WorkflowID(id), "").Get(ctx, nil)
			var ae *temporal.ApplicationError
			// An unsigned start is refused by the engine's start check,
			// before any activity: the signature, not the prefix check,
			// is what stops it.
			if !errors.As(err, &ae) || ae.Type() != string(task.PermissionDenied) || !strings.HasPrefix(ae.Message(), task.StartRefused(id)) {
				t.Fatalf("the workflow ended with %v; want the start refused as PermissionDenied", err)
			}
			ran := activitiesRun(t, ctx, task.WorkflowID(id))
			for _, reader := range []string{"Authorize", "Screen", "Dispatch", "Infer", "Collect"} {
				if slices.Contains(ran, reader) {
					t.Errorf("activity %s ran (activities: %v); a refused task must read nothing", reader, ran)
				}
			}
			for _, c := range storage.Categories {
				infos, err := suite.Store.List(ctx, storage.TaskPrefix(c, "globex", id))
				if err != nil {
					t.Fatal(err)
				}
				for _, info := range infos {
					// The report, the manifest and the task's own log, no more.
					name := storage.NameOf(info.Key)
					if name != "report.json" && name != "manifest.json" && c != storage.Log {
						t.Errorf("the refused task left %s", info.Key)
					}
					if b := getObject(t, ctx, info.Key); strings.Contains(string(b), "question 1") {
						t.Errorf("%s holds acme's content", info.Key)
					}
				}
			}
		})
	}
}

// startWithTemporalCLI starts a TaskWorkflow with the pinned temporal CLI,
// as any holder of Temporal credentials could, bypassing autoglm.
func startWithTemporalCLI(t *testing.T, ctx context.Context, in task.Input) {
	t.Helper()
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(suite.Bin, "temporal"), "workflow", "start",
		"--address", suite.Stack.TemporalAddress, "--namespace", suite.Stack.Namespace,
		"--type", task.WorkflowType, "--task-queue", task.TaskQueue,
		"--workflow-id", task.WorkflowID(in.ID), "--input", string(js))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("temporal workflow start: %v\n%s", err, out)
	}
	cleanUp(t, in.ID)
}

// activitiesRun lists the activity types a workflow scheduled, from its
// history.
func activitiesRun(t *testing.T, ctx context.Context, wid string) []string {
	t.Helper()
	var types []string
	it := suite.Temporal.GetWorkflowHistory(ctx, wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", wid, err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			types = append(types, a.GetActivityType().GetName())
		}
		// Short control-plane stages run as local activities: a marker.
		if m := ev.GetMarkerRecordedEventAttributes(); m != nil && m.GetMarkerName() == "LocalActivity" {
			var data struct{ ActivityType string }
			if p := m.GetDetails()["data"].GetPayloads(); len(p) > 0 && json.Unmarshal(p[0].GetData(), &data) == nil {
				types = append(types, data.ActivityType)
			}
		}
	}
	return types
}

// Inference reads the very version screening counted and a reviewer
// approved: an input replaced in the bucket after screening fails the task
// with Conflict, and not one request of the replacement reaches the model.
func TestInferenceReadsTheVersionScreeningSaw(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	in := submit(t, ctx, taskclient.SubmitRequest{Tenant: "acme", Submitter: "alice", File: batchFile(t, autoApprove+2)})
	waitState(t, ctx, in.ID, task.AwaitingApproval)

	var swapped strings.Builder
	for i := range autoApprove + 2 {
		fmt.Fprintln(&swapped, requestLine(fmt.Sprintf("swap-%d", i), "REPLACED AFTER REVIEW"))
	}
	if _, err := suite.Store.Put(ctx, in.Source.Key, strings.NewReader(swapped.String()), int64(swapped.Len()), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	before := suite.model.Stats().Requests
	if _, err := suite.tasks.Decide(ctx, in.ID, task.UpdateApprove, task.DecisionRequest{Actor: "bob"}); err != nil {
		t.Fatalf("bob's approval: %v", err)
	}
	_, err := suite.tasks.Wait(ctx, in.ID)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != string(task.Conflict) || !strings.Contains(ae.Message(), "replaced after screening") {
		t.Fatalf("the task ended with %v; want a Conflict naming the replaced input", err)
	}
	if n := suite.model.Stats().Requests - before; n != 0 {
		t.Errorf("the model server got %d request(s) of the replaced input", n)
	}
}

// A task's manifest, which `results` downloads from, lists only the task's
// own objects: an entry pointing at another tenant's object is refused.
func TestManifestListsOnlyTheTasksOwnObjects(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	victim := submit(t, ctx, taskclient.SubmitRequest{Tenant: "acme", Submitter: "alice", File: batchFile(t, autoApprove+2)})
	waitState(t, ctx, victim.ID, task.AwaitingApproval)
	e, err := storage.Describe(ctx, suite.Store, victim.Source.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	id := newID("manifest")
	_, _, err = storage.AddToManifest(ctx, suite.Store, "globex", id, e)
	if !errors.Is(err, task.ErrPermissionDenied) {
		t.Fatalf("adding acme's input to a globex task's manifest: %v; want PermissionDenied", err)
	}
	if infos, err := suite.Store.List(ctx, storage.TaskPrefix(storage.Data, "globex", id)); err != nil || len(infos) != 0 {
		t.Errorf("the refused manifest update wrote %v (%v)", infos, err)
	}
}
