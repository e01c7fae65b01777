package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// TrainInput is one fine-tuning job to run on this node.
type TrainInput struct {
	TaskID string `json:"task_id"`
	Tenant string `json:"tenant"`
	// Model is the base model, as the node's cache names it.
	Model string `json:"model"`
	// TrainingFile and ValidationFile are the screened files, pinned to
	// the version screening read.
	TrainingFile    task.ObjectRef   `json:"training_file"`
	ValidationFile  *task.ObjectRef  `json:"validation_file,omitempty"`
	Hyperparameters trainer.Resolved `json:"hyperparameters"`
	Seed            int64            `json:"seed"`
	// IntervalSeconds, SaveSteps and MaxKeep override the node's auto-save
	// settings when above 0.
	IntervalSeconds int `json:"interval_seconds,omitempty"`
	SaveSteps       int `json:"save_steps,omitempty"`
	MaxKeep         int `json:"max_keep,omitempty"`
}

// TrainResult is the trained model, by reference.
type TrainResult struct {
	// Model is the manifest of the final weights or adapter: the size and
	// sha256 of every file.
	Model task.ObjectRef `json:"model"`
	Step  int            `json:"step"`
	Epoch float64        `json:"epoch"`
	Loss  float64        `json:"loss"`
	// Checkpoint is the sequence number of the final record.
	Checkpoint  int    `json:"checkpoint"`
	ResumedFrom int    `json:"resumed_from"`
	Node        string `json:"node"`
	Attempt     int32  `json:"attempt"`
}

// TrainProgress is what Train sends as heartbeat details: the trainer's
// step, epoch and loss and the newest committed checkpoint. The status
// path reads it from the pending activity, so progress costs no event in
// the workflow's history.
type TrainProgress struct {
	trainer.Progress
	Node string `json:"node"`
}

// TrainingObserver is told what one training attempt does.
type TrainingObserver interface {
	Progress(trainer.Progress)
	Action(trainer.Action)
	// Done is called once the attempt has ended.
	Done()
}

// Train runs a fine-tuning job on this node with its configured trainer
// (internal/trainer): it resumes from the newest verified checkpoint in
// the bucket, auto-saves (every interval, every save_steps, and on a
// stop: a worker shutdown, a pause or a cancel), uploads each checkpoint
// with its manifest and commits it, and returns the final model's
// reference. An attempt another attempt has replaced stops with a Fenced
// error, having committed nothing.
func (a *Activities) Train(ctx context.Context, in TrainInput) (TrainResult, error) {
	info := activity.GetInfo(ctx)
	for _, ref := range append([]*task.ObjectRef{&in.TrainingFile}, in.ValidationFile) {
		if ref != nil {
			if err := a.checkSource(in.Tenant, in.TaskID, *ref); err != nil {
				return TrainResult{}, asApplicationError(err)
			}
		}
	}
	// From here the attempt holds the node's training slot.
	attempt := fmt.Sprintf("a%d%s", info.Attempt, randomHex(3))
	defer a.meterTraining(ctx, in, attempt)()
	training.Add(1)
	defer training.Add(-1)
	cfg := a.Trainer
	// Absolute: the trainer runs in its own folder, where a path relative
	// to the node agent's would name nothing (AUTOGLM_TRAINER_DIR=.data/…).
	root, err := filepath.Abs(filepath.Join(cfg.WorkDir, in.Tenant, in.TaskID))
	if err != nil {
		return TrainResult{}, err
	}
	cfg.WorkDir = filepath.Join(root, "run")
	if in.IntervalSeconds > 0 {
		cfg.Interval = time.Duration(in.IntervalSeconds) * time.Second
	}
	if in.SaveSteps > 0 {
		cfg.SaveSteps = in.SaveSteps
	}
	if in.MaxKeep > 0 {
		cfg.MaxKeep = in.MaxKeep
	}
	job := trainer.Job{ModelPath: in.Model, TrainingSHA256: in.TrainingFile.SHA256, Hyperparameters: in.Hyperparameters, Seed: in.Seed}
	if a.ModelPath != nil {
		p, err := a.ModelPath(ctx, in.Model)
		if err != nil {
			return TrainResult{}, fmt.Errorf("finding base model %s in the node's cache: %w", in.Model, err)
		}
		job.ModelPath = p
	}
	if job.TrainingFile, err = a.fetchTrainingFile(ctx, in.TrainingFile, filepath.Join(root, "data", "training.jsonl")); err != nil {
		return TrainResult{}, asApplicationError(err)
	}
	if in.ValidationFile != nil {
		if job.ValidationFile, err = a.fetchTrainingFile(ctx, *in.ValidationFile, filepath.Join(root, "data", "validation.jsonl")); err != nil {
			return TrainResult{}, asApplicationError(err)
		}
	}

	// A worker shutdown ends the run with ErrStopped as the cause; a
	// cancelled activity (pause, cancel) with the context's own error.
	// Either way the trainer saves, and its checkpoint is committed.
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-activity.GetWorkerStopChannel(ctx):
			cancel(batch.ErrStopped)
		case <-runCtx.Done():
		}
	}()
	var last TrainProgress
	var obs TrainingObserver = noObserver{}
	if a.ObserveTraining != nil {
		obs = a.ObserveTraining(in.TaskID)
	}
	defer obs.Done()
	r := &trainer.Runner{
		Config:      cfg,
		Checkpoints: &trainer.Checkpoints{Store: a.Store, Tenant: in.Tenant, TaskID: in.TaskID, Attempt: attempt},
		Progress: func(p trainer.Progress) {
			last = TrainProgress{Progress: p, Node: a.Node}
			obs.Progress(p)
			// Throttled by the SDK: a heartbeat per step costs nothing in
			// the workflow's history.
			activity.RecordHeartbeat(ctx, last)
		},
		Actions: func(e trainer.Action) {
			obs.Action(e)
			activity.GetLogger(ctx).Info("trainer", "action", e.Kind, "step", e.Step, "seq", e.Seq, "why", e.Why)
		},
		Log: logWriter{ctx},
	}
	res, err := r.Run(runCtx, job)
	var te *trainer.TrainerError
	switch {
	case errors.Is(err, trainer.ErrFenced):
		// Retryable: the attempt that holds the head goes on; if this was
		// it, the next attempt resumes from what the other committed.
		return TrainResult{}, temporal.NewApplicationError(err.Error(), string(task.Fenced))
	case errors.Is(err, batch.ErrStopped):
		return TrainResult{}, temporal.NewApplicationError(fmt.Sprintf("the worker is stopping; training resumes from step %d", last.Checkpoint), "WorkerStopping")
	case err != nil && ctx.Err() != nil:
		return TrainResult{}, temporal.NewCanceledError(last)
	case errors.As(err, &te):
		return TrainResult{}, temporal.NewApplicationError(te.Error(), TrainerFailed)
	case err != nil:
		return TrainResult{}, asApplicationError(err)
	}
	f := res.Final
	return TrainResult{Model: f.Manifest, Step: f.Step, Epoch: f.Epoch, Loss: f.Loss, Checkpoint: f.Seq, ResumedFrom: res.ResumedFrom, Node: a.Node, Attempt: info.Attempt}, nil
}

type noObserver struct{}

func (noObserver) Progress(trainer.Progress) {}
func (noObserver) Action(trainer.Action)     {}
func (noObserver) Done()                     {}

// TrainerFailed is the error type of a trainer that exited without its
// final model; the attempt after it resumes from its newest checkpoint.
const TrainerFailed = "TrainerFailed"

// fetchTrainingFile copies the screened version of ref to path and checks
// its sha256.
func (a *Activities) fetchTrainingFile(ctx context.Context, ref task.ObjectRef, path string) (string, error) {
	rc, err := a.openPinned(ctx, ref, 0)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", ref.Key, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); ref.SHA256 != "" && sum != ref.SHA256 {
		return "", task.Errorf(task.InvalidInput, "%s has sha256 %s, not the %s screening read", ref.Key, sum, ref.SHA256)
	}
	return path, nil
}

// logWriter sends the trainer's log lines to the activity's logger.
type logWriter struct{ ctx context.Context }

func (w logWriter) Write(p []byte) (int, error) {
	activity.GetLogger(w.ctx).Info("trainer output", "line", string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

// ScreenTrainingInput is a fine-tuning job's files to screen.
type ScreenTrainingInput struct {
	TaskID         string          `json:"task_id"`
	Tenant         string          `json:"tenant"`
	TrainingFile   task.ObjectRef  `json:"training_file"`
	ValidationFile *task.ObjectRef `json:"validation_file,omitempty"`
	// MaxLineBytes bounds one example (default 1 MiB).
	MaxLineBytes int `json:"max_line_bytes,omitempty"`
	// AutoApproveMaxExamples approves a job of at most this many examples
	// with nothing flagged without a person; 0 always asks one.
	AutoApproveMaxExamples int `json:"auto_approve_max_examples,omitempty"`
}

// ScreenTrainingResult is the files as screened (pinned to the version
// read, with their sha256) and what screening found.
type ScreenTrainingResult struct {
	TrainingFile   task.ObjectRef        `json:"training_file"`
	ValidationFile *task.ObjectRef       `json:"validation_file,omitempty"`
	Training       trainer.FileScreening `json:"training"`
	Validation     trainer.FileScreening `json:"validation,omitzero"`
	Screening      task.Screening        `json:"screening"`
}

// ScreenTraining checks a fine-tuning job's training and validation files
// line by line (OpenAI's chat fine-tuning format, at least 10 examples),
// refusing a file with any bad line and naming every one; it flags lines
// that mention a word on the screening list, and decides whether policy
// approves the job without a person.
func (a *Activities) ScreenTraining(ctx context.Context, in ScreenTrainingInput) (ScreenTrainingResult, error) {
	res, err := a.screenTraining(ctx, in)
	return res, asApplicationError(err)
}

func (a *Activities) screenTraining(ctx context.Context, in ScreenTrainingInput) (ScreenTrainingResult, error) {
	p, err := a.Policy.Current()
	if err != nil {
		return ScreenTrainingResult{}, err
	}
	words := p.Screening.SensitiveWords
	var res ScreenTrainingResult
	if res.TrainingFile, res.Training, err = a.screenFile(ctx, in, in.TrainingFile, "the training file", words); err != nil {
		return res, err
	}
	if in.ValidationFile != nil {
		ref, sc, err := a.screenFile(ctx, in, *in.ValidationFile, "the validation file", words)
		if err != nil {
			return res, err
		}
		res.ValidationFile, res.Validation = &ref, sc
	}
	sc := &res.Screening
	sc.Requests, sc.Bytes = res.Training.Examples, res.Training.Bytes
	for _, f := range []struct {
		name string
		sc   trainer.FileScreening
	}{{"the training file", res.Training}, {"the validation file", res.Validation}} {
		for _, n := range f.sc.Flagged {
			sc.Reasons = append(sc.Reasons, fmt.Sprintf("%s: line %d mentions a word on the screening list", f.name, n))
		}
	}
	flagged := res.Training.FlaggedLines + res.Validation.FlaggedLines
	sc.AutoApprove = flagged == 0 && in.AutoApproveMaxExamples > 0 && sc.Requests <= in.AutoApproveMaxExamples
	switch {
	case sc.AutoApprove:
		sc.Reasons = append(sc.Reasons, fmt.Sprintf("auto-approved: %d example(s), at most %d allowed without approval, nothing flagged", sc.Requests, in.AutoApproveMaxExamples))
	case flagged == 0:
		sc.Reasons = append(sc.Reasons, fmt.Sprintf("needs approval: %d example(s), over the %d approved without it", sc.Requests, in.AutoApproveMaxExamples))
	}
	return res, nil
}

// screenFile screens one file, pinned to the version it read, and checks
// the sha256 of what it read against the one the upload recorded.
func (a *Activities) screenFile(ctx context.Context, in ScreenTrainingInput, ref task.ObjectRef, what string, words []string) (task.ObjectRef, trainer.FileScreening, error) {
	if err := a.checkSource(in.Tenant, in.TaskID, ref); err != nil {
		return ref, trainer.FileScreening{}, err
	}
	rc, info, err := a.Store.Get(ctx, ref.Key)
	if err != nil {
		return ref, trainer.FileScreening{}, fmt.Errorf("reading %s: %w", what, err)
	}
	defer rc.Close()
	ref = pin(ref, info)
	h := sha256.New()
	sc, err := trainer.ScreenFile(io.TeeReader(rc, h), what, in.MaxLineBytes, words)
	if err != nil {
		return ref, sc, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if ref.SHA256 != "" && sum != ref.SHA256 {
		return ref, sc, task.Errorf(task.InvalidInput, "%s changed after upload: sha256 %s, expected %s", what, sum, ref.SHA256)
	}
	ref.SHA256, ref.Size = sum, info.Size
	return ref, sc, nil
}
