package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestAccessReplay replays ModelAccessWorkflow histories recorded on the
// dev server (tests/fleet, -record-access) against today's code.
func TestAccessReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "access_*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded ModelAccessWorkflow histories in testdata (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(ModelAccessWorkflow, workflow.RegisterOptions{Name: task.AccessWorkflowType})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatalf("replaying %s: %v", file, err)
			}
		})
	}
}
