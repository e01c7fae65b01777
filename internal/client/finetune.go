package client

import (
	"context"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// FineTuner is what the CLI's fine-tuning verbs do beside the task verbs.
type FineTuner interface {
	// FineTune starts a fine-tuning task (r.FineTune set, r.File the
	// training file).
	FineTune(ctx context.Context, r SubmitRequest) (FineTuneSubmitted, error)
	// FineTuneEvents are a fine-tuning task's transitions and loss curve,
	// oldest first.
	FineTuneEvents(ctx context.Context, id string) ([]taskclient.FineTuneEvent, error)
	// FineTuneCheckpoints are its committed checkpoints, oldest first.
	FineTuneCheckpoints(ctx context.Context, id string) ([]taskclient.FineTuneCheckpoint, error)
	// DecideFineTune pauses, resumes or cancels a fine-tuning task; any
	// other task is not found.
	DecideFineTune(ctx context.Context, id, action string, d Decision) (Status, error)
}

// FineTuneSubmitted is a fine-tuning task as it started, with the name
// its model will have.
type FineTuneSubmitted = server.FineTuneSubmitted

// FineTune implements FineTuner.
func (s Server) FineTune(ctx context.Context, r SubmitRequest) (FineTuneSubmitted, error) {
	return s.API.FineTune(ctx, r)
}

// FineTuneEvents implements FineTuner.
func (s Server) FineTuneEvents(ctx context.Context, id string) ([]taskclient.FineTuneEvent, error) {
	return s.API.FineTuneEvents(ctx, id)
}

// FineTuneCheckpoints implements FineTuner.
func (s Server) FineTuneCheckpoints(ctx context.Context, id string) ([]taskclient.FineTuneCheckpoint, error) {
	return s.API.FineTuneCheckpoints(ctx, id)
}

// DecideFineTune implements FineTuner.
func (s Server) DecideFineTune(ctx context.Context, id, action string, d Decision) (Status, error) {
	return s.API.DecideFineTune(ctx, id, action, d)
}

// FineTune implements FineTuner.
func (d Direct) FineTune(ctx context.Context, r SubmitRequest) (FineTuneSubmitted, error) {
	sub, err := d.Submit(ctx, r)
	if err != nil {
		return FineTuneSubmitted{Submitted: sub}, err
	}
	return FineTuneSubmitted{Submitted: sub, FineTunedModel: task.FineTunedName(sub.Model, sub.Tenant, r.FineTune.Suffix, sub.ID)}, nil
}

// fineTune is the status of task id, which must be a fine-tuning task.
func (d Direct) fineTune(ctx context.Context, id string) (task.Status, error) {
	st, err := d.Tasks.Status(ctx, id)
	if err == nil && st.Kind != task.KindFineTune {
		err = task.Errorf(task.NotFound, "task %s is not a fine-tuning task", id)
	}
	return st, err
}

// FineTuneEvents implements FineTuner.
func (d Direct) FineTuneEvents(ctx context.Context, id string) ([]taskclient.FineTuneEvent, error) {
	st, err := d.fineTune(ctx, id)
	if err != nil {
		return nil, err
	}
	return d.Tasks.FineTuneEvents(ctx, st)
}

// FineTuneCheckpoints implements FineTuner.
func (d Direct) FineTuneCheckpoints(ctx context.Context, id string) ([]taskclient.FineTuneCheckpoint, error) {
	st, err := d.fineTune(ctx, id)
	if err != nil {
		return nil, err
	}
	return d.Tasks.FineTuneCheckpoints(ctx, st.Tenant, id)
}

// DecideFineTune implements FineTuner.
func (d Direct) DecideFineTune(ctx context.Context, id, action string, dec Decision) (Status, error) {
	if _, err := d.fineTune(ctx, id); err != nil {
		return Status{}, err
	}
	return d.Decide(ctx, id, action, dec)
}
