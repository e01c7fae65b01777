package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestLogArchiveReplay replays histories of LogArchiveWorkflow recorded on
// the dev server against today's code: a change that would break a run in
// flight (another sequence of commands for the same events) fails here.
// LogArchiveWorkflow auto-upgrades, so such a change must wait until no
// run is open on the old build (see the README's "Changing running
// code"). Record one with
//
//	go test ./workflows -run OnDevServer -record-logarchive testdata/logarchive_archived.json
func TestLogArchiveReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "logarchive_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded LogArchiveWorkflow histories in testdata")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(LogArchiveWorkflow, workflow.RegisterOptions{Name: task.LogArchiveWorkflowType})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatalf("replaying %s: %v", file, err)
			}
		})
	}
}
