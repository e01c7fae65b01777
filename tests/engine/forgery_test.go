package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// Starts sent straight to Temporal, as a hostile user with access to it
// would send them with `temporal workflow start`, run nothing and write
// nothing: a start with a hand-written carry on the ID of a task a
// reviewer rejected, and a start naming a member of the tenant with no
// start assertion. The rejected task stays visible to its owner.
func TestForgedStartsRunNothing(t *testing.T) {
	ctx := testenv.Context(t, 4*time.Minute)
	suite.StartWorker(t, testenv.WorkerOptions{Node: "trust", Env: []string{"AUTOGLM_MODELS=" + testmodel.DefaultModel}})

	rejected := submit(t, ctx, "rejected", 30)
	testenv.WaitState(t, ctx, suite.tasks, rejected.id, task.AwaitingApproval)
	if _, err := suite.tasks.Decide(ctx, rejected.id, task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: "not this week"}); err != nil {
		t.Fatal(err)
	}
	if res, err := suite.tasks.Wait(ctx, rejected.id); err != nil || res.State != task.Rejected {
		t.Fatalf("result %+v, %v; want REJECTED", res, err)
	}
	st, err := suite.tasks.Status(ctx, rejected.id)
	if err != nil {
		t.Fatal(err)
	}
	// The task's last lines (its closing local activities) reach its log
	// a moment after it ends: wait for them, so that what follows is
	// the forged starts' doing alone.
	testenv.Eventually(t, ctx, "the rejected task's log to hold its last activity", 200*time.Millisecond, func() (bool, error) {
		return logged(ctx, rejected.id, `"activity":"EmitEvent"`)
	})
	before := objects(t, ctx)

	carry, _ := json.Marshal(map[string]any{
		"step": "infer", "runs": 1,
		"status": task.Status{ID: rejected.id, Tenant: tenant, Submitter: "mallory", Model: testmodel.DefaultModel, State: task.Approved},
	})
	forged := task.Input{ID: rejected.id, Tenant: tenant, Submitter: "mallory", Model: testmodel.DefaultModel, Kind: task.KindBatch,
		Source: st.Artifacts[0], Carry: carry}
	wantRefused(t, ctx, forged, "task "+rejected.id+" was not started: carried state is taken only from the task's own previous run, and this run was started, not continued as new")

	unsigned := task.Input{ID: "unsigned-" + testenv.RandHex(4), Tenant: tenant, Submitter: "alice", Model: testmodel.DefaultModel, Kind: task.KindBatch,
		Source: st.Artifacts[0]}
	wantRefused(t, ctx, unsigned, "task "+unsigned.ID+" was not started: start needs an assertion signed by the autoglm server; send it through the API server (break-glass: the direct CLI with AUTOGLM_ASSERTION_PRIVATE_KEY)")

	if after := objects(t, ctx); !slices.Equal(before, after) {
		t.Errorf("the refused starts changed the bucket:\n before %v\n after  %v", before, after)
	}
	// The refused run on its ID does not hide the rejected task.
	st2, err := suite.tasks.Status(ctx, rejected.id)
	if err != nil || st2.State != task.Rejected || st2.Submitter != "alice" {
		t.Errorf("the owner's status after the forged start: %+v, %v; want alice's REJECTED task", st2.State, err)
	}
	if res, err := suite.tasks.Wait(ctx, rejected.id); err != nil || res.State != task.Rejected {
		t.Errorf("the owner's result after the forged start: %+v, %v; want REJECTED", res, err)
	}
}

// wantRefused starts in as `temporal workflow start` would (any ID reuse
// policy) and checks the run ends with the PermissionDenied error msg.
func wantRefused(t *testing.T, ctx context.Context, in task.Input, msg string) {
	t.Helper()
	run, err := suite.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: task.WorkflowID(in.ID), TaskQueue: task.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, task.WorkflowType, in)
	if err != nil {
		t.Fatalf("starting %s: %v", in.ID, err)
	}
	err = run.Get(ctx, nil)
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != string(task.PermissionDenied) || ae.Message() != msg {
		t.Fatalf("the forged start of %s ended with %v; want PermissionDenied %q", in.ID, err, msg)
	}
	t.Logf("refused as the caller sees it: %s", ae.Message())
}

// logged tells whether a chunk of task id's log holds s.
func logged(ctx context.Context, id, s string) (bool, error) {
	infos, err := suite.Store.List(ctx, storage.TaskPrefix(storage.Log, tenant, id))
	if err != nil {
		return false, err
	}
	for _, i := range infos {
		rc, _, err := suite.Store.Get(ctx, i.Key)
		if err != nil {
			return false, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return false, err
		}
		if strings.Contains(string(b), s) {
			return true, nil
		}
	}
	return false, nil
}

// objects are the bucket's objects (key and ETag) but the node records,
// which nodes rewrite every few seconds.
func objects(t *testing.T, ctx context.Context) []string {
	t.Helper()
	infos, err := suite.Store.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		if !strings.HasPrefix(i.Key, storage.NodeRecordPrefix) {
			out = append(out, i.Key+"@"+i.ETag)
		}
	}
	slices.Sort(out)
	return out
}
