package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestMirrorReplay replays MirrorWorkflow histories recorded on the dev
// server (tests/fleet, -record-mirror) against today's code.
func TestMirrorReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "mirror_*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded MirrorWorkflow histories in testdata (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(MirrorWorkflow, workflow.RegisterOptions{Name: task.MirrorWorkflowType})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatalf("replaying %s: %v", file, err)
			}
		})
	}
}
