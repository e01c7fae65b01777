package trainer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Config is how a node runs its trainer.
type Config struct {
	// Command is the trainer's argv; "${AUTOGLM_…}" in it is expanded from
	// the spec, and the same variables are in its environment.
	Command []string
	// Env is added to the trainer's environment (CUDA_VISIBLE_DEVICES…).
	Env []string
	// WorkDir is this job's folder on the node's disk; the runner empties
	// it before it starts.
	WorkDir string
	// Interval asks for a checkpoint (SIGUSR1) this long after the last
	// one; 0 turns it off.
	Interval time.Duration
	// SaveSteps is how often, in steps, the trainer saves by itself
	// (default 50).
	SaveSteps int
	// MaxKeep is how many checkpoints stay in the bucket and complete on
	// the node's disk (default 2); the trainer waits while the output
	// folder holds MaxKeep+1 checkpoint folders.
	MaxKeep int
	// StopTimeout is how long a trainer told to stop (SIGTERM) has to
	// save and exit before it is killed (default 5 minutes).
	StopTimeout time.Duration
}

// Job is one fine-tuning run.
type Job struct {
	// ModelPath is the base model in the node's cache.
	ModelPath      string
	TrainingFile   string
	ValidationFile string
	// TrainingSHA256 names the training data in the config digest.
	TrainingSHA256  string
	Hyperparameters Resolved
	Seed            int64
}

// Digest names what changes the training: a checkpoint taken under
// another digest is not resumed from.
func (j Job) Digest() string {
	b, _ := json.Marshal(struct {
		Data string
		H    Resolved
		Seed int64
	}{j.TrainingSHA256, j.Hyperparameters, j.Seed})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Action is something the runner did, for logs and tests.
type Action struct {
	// Kind is "resumed", "uploading", "committed", "skipped" (a
	// checkpoint that was unusable on resume), "stopping" or "killed" (a
	// trainer still running when its stop timeout ran out).
	Kind string `json:"action"`
	Step int    `json:"step"`
	Seq  int    `json:"seq,omitempty"`
	// Why says what was wrong with a skipped checkpoint.
	Why string `json:"why,omitempty"`
	// Bytes and Seconds are a committed checkpoint's files and the time
	// from the start of their upload to its commit.
	Bytes   int64   `json:"bytes,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
}

// Runner runs one attempt of a fine-tuning job on this node.
type Runner struct {
	Config      Config
	Checkpoints *Checkpoints
	// Progress, if set, is told every progress line of the trainer, with
	// the newest committed checkpoint's step, and the last of them again
	// at least every second: a trainer that waits for an upload or writes
	// a long checkpoint prints nothing, and a heartbeat must still go.
	Progress func(Progress)
	// Actions, if set, is told what the runner does, from more than one
	// goroutine.
	Actions func(Action)
	// Log receives the trainer's stderr and its stdout lines that are not
	// progress; nil discards them.
	Log io.Writer
}

// Result is a finished run.
type Result struct {
	// Final is the record of the trained model.
	Final Record `json:"final"`
	// ResumedFrom is the step this attempt resumed from (0: the start).
	ResumedFrom int `json:"resumed_from"`
}

// TrainerError is a trainer that exited without finishing: its newest
// complete checkpoint was committed first.
type TrainerError struct {
	ExitCode int
	// Tail is the end of its log.
	Tail string
	Why  string
}

func (e *TrainerError) Error() string {
	return fmt.Sprintf("trainer: the trainer %s (exit code %d): %s", e.Why, e.ExitCode, e.Tail)
}

func (r *Runner) act(a Action) {
	if r.Actions != nil {
		r.Actions(a)
	}
}

func (c Config) maxKeep() int {
	if c.MaxKeep <= 0 {
		return defaultMaxKeep
	}
	return c.MaxKeep
}

// Run claims the job's checkpoints, resumes from the newest verified one,
// runs the trainer until it writes its final model, and commits that.
// Checkpoints are uploaded and committed as the trainer completes them,
// without pausing it. When ctx ends (a drain, a pause, a cancel, a worker
// shutdown) the trainer is told to save and exit, its checkpoint is
// committed, and Run returns context.Cause(ctx). When another attempt has
// taken over, Run kills the trainer and returns an error matching
// ErrFenced, having committed nothing.
func (r *Runner) Run(ctx context.Context, job Job) (Result, error) {
	cfg := r.Config
	r.Checkpoints.MaxKeep = cfg.maxKeep()
	from, err := r.Checkpoints.Claim(ctx)
	if err != nil {
		return Result{}, err
	}
	if from != nil && from.Final && from.ConfigDigest == job.Digest() {
		return Result{Final: *from, ResumedFrom: from.Step}, nil
	}
	if err := os.RemoveAll(cfg.WorkDir); err != nil {
		return Result{}, err
	}
	out := filepath.Join(cfg.WorkDir, "output")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return Result{}, err
	}
	spec := Spec{
		ModelPath: job.ModelPath, TrainingFile: job.TrainingFile, ValidationFile: job.ValidationFile,
		OutputDir: out, Hyperparameters: job.Hyperparameters, Seed: job.Seed,
		SaveSteps: cmpOr(cfg.SaveSteps, defaultSaveSteps), MaxLocal: cfg.maxKeep() + 1,
	}
	resumed, err := r.resume(ctx, job, from, filepath.Join(cfg.WorkDir, "resume"))
	if err != nil {
		return Result{}, err
	}
	if resumed != nil {
		spec.ResumeFrom = filepath.Join(cfg.WorkDir, "resume", CheckpointDir(resumed.Step))
	}
	s := &session{Runner: r, job: job, out: out}
	if resumed != nil {
		// Until the trainer's first step, progress is the checkpoint's.
		s.committed = *resumed
		s.progress = Progress{Step: resumed.Step, Epoch: resumed.Epoch, Loss: resumed.Loss}
	}
	res, err := s.run(ctx, spec)
	if resumed != nil {
		res.ResumedFrom = resumed.Step
	}
	return res, err
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// resume downloads the newest committed checkpoint that checks out into
// dir and returns its record; nil starts from the beginning.
func (r *Runner) resume(ctx context.Context, job Job, head *Record, dir string) (*Record, error) {
	if head == nil {
		return nil, nil
	}
	recs, err := r.Checkpoints.Records(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(recs, func(x Record) bool { return x.Seq == head.Seq }) {
		recs = append(recs, *head)
	}
	slices.SortFunc(recs, func(a, b Record) int { return b.Seq - a.Seq })
	for _, rec := range recs {
		if rec.Final || rec.ConfigDigest != job.Digest() || rec.Step == 0 {
			continue
		}
		target := filepath.Join(dir, CheckpointDir(rec.Step))
		err := r.Checkpoints.Download(ctx, rec, target)
		var corrupt *CorruptCheckpointError
		if errors.As(err, &corrupt) {
			r.act(Action{Kind: "skipped", Step: rec.Step, Seq: rec.Seq, Why: corrupt.Why})
			continue
		}
		if err != nil {
			return nil, err
		}
		if !isComplete(target) {
			r.act(Action{Kind: "skipped", Step: rec.Step, Seq: rec.Seq, Why: "no completion marker"})
			continue
		}
		r.act(Action{Kind: "resumed", Step: rec.Step, Seq: rec.Seq})
		return &rec, nil
	}
	return nil, nil
}
