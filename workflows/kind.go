package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
)

// kind is what one kind of task brings to the lifecycle every kind
// shares. TaskWorkflow (task.go) owns the stages: authorize, screen's
// bookkeeping, approval, the audit trail, the outcome, the archive of
// the report and manifest, search attributes and the Web UI's details;
// a kind supplies only what is its own:
//   - screen: how its input is screened (returns what screening found,
//     and the reason the audit trail gives);
//   - run: its work on the nodes, from dispatch until its output is
//     whole, recorded in the task's result (the artifacts the archive
//     lists);
//   - keepPartial: what an interrupted run keeps before the report;
//   - screensLocally: whether screening is short enough to run as a
//     local activity in the first workflow task.
//
// Batch inference (inference.go) is the first kind. Fine-tuning plugs
// in as a second: its screen checks the chat fine-tuning format, its
// run dispatches the node activity Train (internal/trainer) and resumes
// from the newest verified checkpoint, and its result is the model it
// registers.
type kind interface {
	screen(ctx workflow.Context) (activities.ScreenResult, string, error)
	run(ctx workflow.Context) error
	keepPartial(ctx workflow.Context)
	screensLocally() bool
}

// kind is the task's kind, from its input: prompts and batches are both
// batch inference.
func (w *taskRun) kind() kind {
	return batchInference{w}
}
