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

// taskWorkflowChanged is TaskWorkflow changed incompatibly: a new command
// (a timer) before the first step. Such a change ships as a new build of
// the control plane's Worker Deployment (see the README's "Changing
// running code"): the tasks pinned to the old build finish there, and
// this replay test is what tells a change that needs a new build from one
// that does not.
func taskWorkflowChanged(ctx workflow.Context, in task.Input) (task.Result, error) {
	if err := workflow.Sleep(ctx, time.Second); err != nil {
		return task.Result{}, err
	}
	return workflows.TaskWorkflow(ctx, in)
}

func replay(t *testing.T, fn func(workflow.Context, task.Input) (task.Result, error), file string) error {
	t.Helper()
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(fn, workflow.RegisterOptions{Name: task.WorkflowType})
	return r.ReplayWorkflowHistoryFromJSONFile(nil, file)
}

// The replayer catches an incompatible change to TaskWorkflow: the
// recorded histories no longer replay, which on the same build would
// wedge every task in flight.
func TestReplayCatchesAnIncompatibleChange(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "task_*.json"))
	if len(files) == 0 {
		t.Fatal("no recorded task histories in testdata")
	}
	for _, file := range files[:min(3, len(files))] {
		t.Run(filepath.Base(file), func(t *testing.T) {
			err := replay(t, taskWorkflowChanged, file)
			if err == nil {
				t.Fatal("the incompatible change replayed; the replay test would not have caught it")
			}
			// TMPRL1100 is the SDK's code for a nondeterministic replay.
			if msg := err.Error(); !strings.Contains(msg, "TMPRL1100") && !strings.Contains(strings.ToLower(msg), "nondetermin") {
				t.Errorf("replay failed, but not for nondeterminism: %v", err)
			}
		})
	}
}
