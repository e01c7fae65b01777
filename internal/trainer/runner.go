package trainer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
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

// Event is something the runner did, for logs and tests.
type Event struct {
	// Kind is "resumed", "uploading", "committed", "skipped" (a
	// checkpoint that was unusable on resume) or "stopping".
	Kind string `json:"event"`
	Step int    `json:"step"`
	Seq  int    `json:"seq,omitempty"`
	// Why says what was wrong with a skipped checkpoint.
	Why string `json:"why,omitempty"`
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
	// Events, if set, is told what the runner does, from more than one
	// goroutine.
	Events func(Event)
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

func (r *Runner) event(e Event) {
	if r.Events != nil {
		r.Events(e)
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
			r.event(Event{Kind: "skipped", Step: rec.Step, Seq: rec.Seq, Why: corrupt.Why})
			continue
		}
		if err != nil {
			return nil, err
		}
		if !isComplete(target) {
			r.event(Event{Kind: "skipped", Step: rec.Step, Seq: rec.Seq, Why: "no completion marker"})
			continue
		}
		r.event(Event{Kind: "resumed", Step: rec.Step, Seq: rec.Seq})
		return &rec, nil
	}
	return nil, nil
}

// session is the state of one trainer process; only run's goroutine
// touches it.
type session struct {
	*Runner
	job       Job
	out       string
	cmd       *exec.Cmd
	committed Record // the newest committed checkpoint
	uploading int    // step being uploaded; 0 when none
	lastSave  time.Time
	progress  Progress
	reported  time.Time
	tail      *tailWriter
}

// tailWriter passes writes on and keeps the last tailBytes of them, for
// the error of a trainer that failed.
type tailWriter struct {
	w   io.Writer
	mu  sync.Mutex
	buf []byte
}

const tailBytes = 2048

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailBytes {
		t.buf = t.buf[len(t.buf)-tailBytes:]
	}
	t.mu.Unlock()
	return t.w.Write(p)
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

type uploadDone struct {
	rec Record
	err error
}

func (s *session) run(ctx context.Context, spec Spec) (Result, error) {
	cmd, lines, exited, err := s.start(spec)
	if err != nil {
		return Result{}, err
	}
	s.cmd = cmd
	// Uploads outlive a stop: the checkpoint taken on stop is the point of
	// stopping gracefully.
	uctx := context.WithoutCancel(ctx)
	uploads := make(chan uploadDone, 1)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	s.lastSave = time.Now()
	var stopping bool
	var kill <-chan time.Time
	var exitErr error
	for running := true; running; {
		select {
		case p, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			s.progress = p
			s.report()
		case d := <-uploads:
			s.uploading = 0
			if d.err != nil {
				s.killGroup()
				<-exited
				return Result{}, d.err
			}
			s.committed = d.rec
			s.report()
		case <-tick.C:
			if err := s.tend(uctx, uploads); err != nil {
				s.killGroup()
				<-exited
				return Result{}, err
			}
			if time.Since(s.reported) >= time.Second {
				s.report()
			}
			if iv := s.Config.Interval; iv > 0 && !stopping && time.Since(s.lastSave) >= iv {
				s.signal(SaveAndGoOn)
				s.lastSave = time.Now()
			}
		case <-ctxDone(ctx, stopping):
			stopping = true
			s.event(Event{Kind: "stopping", Step: s.progress.Step})
			s.signal(SaveAndExit)
			kill = time.After(cmpDur(s.Config.StopTimeout, 5*time.Minute))
		case <-kill:
			s.killGroup()
		case exitErr = <-exited:
			running = false
		}
	}
	for s.uploading != 0 {
		d := <-uploads
		s.uploading = 0
		if d.err != nil {
			return Result{}, d.err
		}
		s.committed = d.rec
	}
	// The trained model, or else the newest checkpoint the trainer left.
	if isComplete(filepath.Join(s.out, FinalDir)) && exitErr == nil {
		st, _ := ReadState(filepath.Join(s.out, FinalDir))
		rec, err := s.commit(uctx, filepath.Join(s.out, FinalDir), st, true)
		if err != nil {
			return Result{}, err
		}
		return Result{Final: rec}, nil
	}
	if err := s.commitNewest(uctx); err != nil {
		return Result{}, err
	}
	if stopping {
		return Result{}, context.Cause(ctx)
	}
	te := &TrainerError{ExitCode: exitCode(exitErr), Why: "exited without writing " + FinalDir + "/", Tail: s.tail.String()}
	if exitErr != nil {
		te.Why = "failed"
	}
	return Result{}, te
}

// ctxDone is ctx.Done until the stop has begun, then nil.
func ctxDone(ctx context.Context, stopping bool) <-chan struct{} {
	if stopping {
		return nil
	}
	return ctx.Done()
}

func cmpDur(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func (s *session) report() {
	s.reported = time.Now()
	if s.Progress != nil {
		p := s.progress
		p.Checkpoint = s.committed.Step
		s.Progress(p)
	}
}

// tend looks at the output folder: it starts the upload of the newest
// complete checkpoint not yet committed, and deletes the complete ones
// past the newest MaxKeep that are not being uploaded, which lets a
// waiting trainer go on.
func (s *session) tend(ctx context.Context, uploads chan<- uploadDone) error {
	cs, err := scanOutput(s.out)
	if err != nil {
		return err
	}
	var complete []localCheckpoint
	for _, c := range cs {
		if c.complete {
			complete = append(complete, c)
		}
	}
	if n := len(complete); n > 0 {
		newest := complete[n-1]
		if newest.step > s.committed.Step && s.uploading == 0 {
			s.uploading = newest.step
			s.lastSave = time.Now()
			s.event(Event{Kind: "uploading", Step: newest.step})
			go func() {
				st, err := ReadState(newest.dir)
				var rec Record
				if err == nil {
					rec, err = s.commit(ctx, newest.dir, st, false)
				}
				uploads <- uploadDone{rec, err}
			}()
		}
	}
	keep := max(0, len(complete)-s.Config.maxKeep())
	for _, c := range complete[:keep] {
		if c.step != s.uploading {
			if err := os.RemoveAll(c.dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// commit uploads a complete checkpoint (or the final model) and commits it.
func (s *session) commit(ctx context.Context, dir string, st State, final bool) (Record, error) {
	ref, err := s.Checkpoints.Upload(ctx, dir, st.GlobalStep, final)
	if err != nil {
		return Record{}, s.Checkpoints.Fenced(ctx, err)
	}
	rec, err := s.Checkpoints.Commit(ctx, Record{
		Step: st.GlobalStep, Epoch: st.Epoch, Loss: st.LastLoss(), Final: final,
		Manifest: ref, ConfigDigest: s.job.Digest(),
	})
	if err != nil {
		return Record{}, err
	}
	s.event(Event{Kind: "committed", Step: rec.Step, Seq: rec.Seq})
	return rec, nil
}

// commitNewest commits the newest complete checkpoint the trainer left,
// if it is newer than the last committed.
func (s *session) commitNewest(ctx context.Context) error {
	cs, err := scanOutput(s.out)
	if err != nil {
		return err
	}
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		if !c.complete {
			continue
		}
		if c.step <= s.committed.Step {
			return nil
		}
		st, err := ReadState(c.dir)
		if err != nil {
			return err
		}
		rec, err := s.commit(ctx, c.dir, st, false)
		if err != nil {
			return err
		}
		s.committed = rec
		return nil
	}
	return nil
}

// start runs the trainer in its own process group, which the kernel kills
// with the runner (Pdeathsig), and streams its progress lines.
func (s *session) start(spec Spec) (*exec.Cmd, <-chan Progress, <-chan error, error) {
	specPath := filepath.Join(s.Config.WorkDir, specFileName)
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, nil, nil, err
	}
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		return nil, nil, nil, err
	}
	if len(s.Config.Command) == 0 {
		return nil, nil, nil, errors.New("trainer: no trainer command is configured")
	}
	env := spec.Env(specPath)
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	argv := make([]string, len(s.Config.Command))
	for i, a := range s.Config.Command {
		argv[i] = os.Expand(a, func(k string) string {
			if v, ok := vars[k]; ok {
				return v
			}
			return "${" + k + "}"
		})
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), env...), s.Config.Env...)
	cmd.Dir = s.Config.WorkDir
	cmd.SysProcAttr = sysProcAttr()
	logw := s.Log
	if logw == nil {
		logw = io.Discard
	}
	s.tail = &tailWriter{w: logw}
	logw = s.tail
	cmd.Stderr = logw
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("trainer: starting %s: %w", argv[0], err)
	}
	lines := make(chan Progress, 64)
	exited := make(chan error, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var p struct {
				Step  *int    `json:"step"`
				Epoch float64 `json:"epoch"`
				Loss  float64 `json:"loss"`
			}
			line := sc.Bytes()
			if json.Unmarshal(line, &p) != nil || p.Step == nil {
				fmt.Fprintf(logw, "%s\n", line)
				continue
			}
			select {
			case lines <- Progress{Step: *p.Step, Epoch: p.Epoch, Loss: p.Loss}:
			default:
				// A reader behind by 64 lines loses progress lines, not
				// training time: the next line says more.
			}
		}
	}()
	go func() {
		<-read
		exited <- cmd.Wait()
	}()
	return cmd, lines, exited, nil
}

// signal sends sig to the trainer's process group, so that a trainer
// started through a shell or a launcher hears it too.
func (s *session) signal(sig syscall.Signal) {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, sig)
	}
}

func (s *session) killGroup() { s.signal(syscall.SIGKILL) }
