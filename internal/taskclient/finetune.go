package taskclient

import (
	"context"

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
