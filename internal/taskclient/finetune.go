package taskclient

import (
	"context"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The names a task's input files get under its own prefix.
const (
	inputName      = "input.jsonl"
	trainingName   = "training.jsonl"
	validationName = "validation.jsonl"
)

// prepareFineTune makes in a fine-tuning task and checks its files are
// text before anything is stored; the base model must be given.
func (c *Client) prepareFineTune(in *task.Input, r SubmitRequest) error {
	in.Kind = task.KindFineTune
	ft := *r.FineTune
	ft.ValidationFile = nil
	in.FineTune = &ft
	if in.Model == "" {
		return task.Errorf(task.InvalidInput, "a fine-tuning task needs its base model")
	}
	if err := task.CheckFineTuneBase(in.Model); err != nil {
		return err
	}
	for _, path := range []string{r.File, r.ValidationFile} {
		if path == "" {
			continue
		}
		if _, err := checkBatchFile(path); err != nil {
			return err
		}
	}
	return nil
}

// uploadTraining stores a fine-tuning task's training file as its Source
// and its validation file, if any, beside it.
func (c *Client) uploadTraining(ctx context.Context, in *task.Input, r SubmitRequest) error {
	var err error
	if in.Source, err = c.upload(ctx, *in, r.File, trainingName, r.AttachOptions); err != nil {
		return err
	}
	if r.ValidationFile != "" {
		ref, err := c.upload(ctx, *in, r.ValidationFile, validationName, r.AttachOptions)
		if err != nil {
			return err
		}
		in.FineTune.ValidationFile = &ref
	}
	return nil
}

// trainActivity is the activity type of a fine-tuning task's run, whose
// heartbeats carry the trainer's progress.
const trainActivity = "Train"

// trainHeartbeat is what Train's heartbeat details hold
// (activities.TrainProgress), as far as the status shows it.
type trainHeartbeat struct {
	Step       int     `json:"step"`
	Epoch      float64 `json:"epoch"`
	Loss       float64 `json:"loss"`
	Checkpoint int     `json:"checkpoint"`
	Node       string  `json:"node"`
}

// trainProgress adds the running attempt's step, epoch and loss to a
// fine-tuning task's status: they travel in heartbeat details, so
// training adds no events to the workflow's history. waiting: no node has
// taken the attempt yet (every training slot is taken, or a retry waits
// for its backoff).
func trainProgress(st *task.Status, details []*commonpb.Payload, waiting bool) {
	if st.FineTune != nil && waiting {
		ft := *st.FineTune
		ft.WaitingForSlot = true
		st.FineTune = &ft
	}
	var hb trainHeartbeat
	if st.FineTune == nil || len(details) == 0 || converter.GetDefaultDataConverter().FromPayload(details[0], &hb) != nil || hb.Step == 0 {
		return
	}
	ft := *st.FineTune
	ft.Step, ft.Epoch, ft.Loss = hb.Step, hb.Epoch, hb.Loss
	st.FineTune = &ft
	if hb.Node != "" {
		st.Node = hb.Node
	}
}
