package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestNotifyReplay replays NotifyWorkflow histories recorded on the dev
// server (tests/fleet, -record-notify) against today's code.
func TestNotifyReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "notify_*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded NotifyWorkflow histories in testdata (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(NotifyWorkflow, workflow.RegisterOptions{Name: task.NotifyWorkflowType})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatalf("replaying %s: %v", file, err)
			}
		})
	}
}
