package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestFleetCommandReplay replays FleetCommandWorkflow histories recorded
// on the dev server (tests/fleet, -record-fleet) against today's code.
func TestFleetCommandReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fleet_*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded FleetCommandWorkflow histories in testdata (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(FleetCommandWorkflow, workflow.RegisterOptions{Name: task.FleetCommandWorkflowType})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatalf("replaying %s: %v", file, err)
			}
		})
	}
}
