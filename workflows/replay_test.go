package workflows_test

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/workflows"
)

// TestReplay replays histories recorded on the real local stack (the dev
// server, MinIO, worker processes and the test model) against today's
// TaskWorkflow. It fails when a change to the workflow issues other
// commands for the same events: such a change ships as a new build of the
// control plane's Worker Deployment (tasks stay pinned to the build that
// started them), never in place; see the README's "Changing running
// code".
//
// One history per path of the lifecycle, recorded by tests/durability
// with AUTOGLM_RECORD_HISTORIES=$PWD/workflows/testdata (an absolute
// path): auto_approved, pieces_completed, paused_resumed,
// pause_resume_at_once, cancelled_running_partial, rejected,
// cancelled_through_temporal, failed, expired (TestLifecyclePaths);
// continued_{approval,paused} and the runs that took over, _last
// (TestContinueAsNewCarriesTheTask); handed_back, redispatched,
// model_outage, corrupt_part_recomputed (the fault tests); fine_tuned
// (tests/server, TestFineTuneThroughTheServerPublishesTheModel). Or, for one
// task of `autoglm dev`:
//
//	./bin/temporal workflow show -w task-ID --output json > workflows/testdata/task_NAME.json
func TestReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "task_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.TaskWorkflow, workflow.RegisterOptions{Name: task.WorkflowType})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatalf("replaying %s: %v", file, err)
			}
		})
	}
}
