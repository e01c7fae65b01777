package taskclient

import (
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// A running fine-tune's status shows the step, epoch and loss of Train's
// last heartbeat (activities.TrainProgress, as Train sends it) and its
// node; without a heartbeat it keeps what the workflow knows.
func TestTrainProgressFromHeartbeat(t *testing.T) {
	p, err := converter.GetDefaultDataConverter().ToPayload(activities.TrainProgress{
		Progress: trainer.Progress{Step: 40, Epoch: 1.5, Loss: 0.75, Checkpoint: 3}, Node: "gpu-2",
	})
	if err != nil {
		t.Fatal(err)
	}
	st := task.Status{Node: "gpu-1", FineTune: &task.FineTuneStatus{Step: 20, Seed: 9}}
	trainProgress(&st, []*commonpb.Payload{p}, false)
	if ft := st.FineTune; ft.Step != 40 || ft.Epoch != 1.5 || ft.Loss != 0.75 || ft.Seed != 9 || st.Node != "gpu-2" {
		t.Errorf("status %+v, fine-tune %+v", st, ft)
	}
	before := *st.FineTune
	trainProgress(&st, nil, false)
	if *st.FineTune != before {
		t.Errorf("no heartbeat changed the status: %+v", st.FineTune)
	}
}
