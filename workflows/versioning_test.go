package workflows_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/workflows"
)

// taskWorkflowUnpatched is TaskWorkflow changed the way the versioning
// policy forbids: a new command (a timer) before the first step, with no
// workflow.GetVersion around it.
func taskWorkflowUnpatched(ctx workflow.Context, in task.Input) (task.Result, error) {
	if err := workflow.Sleep(ctx, time.Second); err != nil {
		return task.Result{}, err
	}
	return workflows.TaskWorkflow(ctx, in)
}

// taskWorkflowPatched is the same change behind workflow.GetVersion:
// tasks that started before it replay the old way.
func taskWorkflowPatched(ctx workflow.Context, in task.Input) (task.Result, error) {
	if workflow.GetVersion(ctx, "test-extra-timer", workflow.DefaultVersion, 1) == 1 {
		if err := workflow.Sleep(ctx, time.Second); err != nil {
			return task.Result{}, err
		}
	}
	return workflows.TaskWorkflow(ctx, in)
}

func replay(t *testing.T, fn func(workflow.Context, task.Input) (task.Result, error), file string) error {
	t.Helper()
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(fn, workflow.RegisterOptions{Name: task.WorkflowType})
	return r.ReplayWorkflowHistoryFromJSONFile(nil, file)
}

// The replayer catches a change to TaskWorkflow made without a patch: the
// recorded histories of running tasks no longer replay, which in
// production would wedge every task in flight. The same change behind
// GetVersion replays.
func TestReplayCatchesAnUnpatchedChange(t *testing.T) {
	for _, name := range []string{"task_approved.json", "task_shards_completed.json", "task_paused_resumed.json"} {
		file := filepath.Join("testdata", name)
		t.Run(name, func(t *testing.T) {
			err := replay(t, taskWorkflowUnpatched, file)
			if err == nil {
				t.Fatal("the unpatched change replayed; the replay test would not have caught it")
			}
			// TMPRL1100 is the SDK's code for a nondeterministic replay.
			if msg := err.Error(); !strings.Contains(msg, "TMPRL1100") && !strings.Contains(strings.ToLower(msg), "nondetermin") {
				t.Errorf("replay failed, but not for nondeterminism: %v", err)
			}
			if err := replay(t, taskWorkflowPatched, file); err != nil {
				t.Errorf("the patched change does not replay: %v", err)
			}
		})
	}
}
