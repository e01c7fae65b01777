package trainer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

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
			s.act(Action{Kind: "stopping", Step: s.progress.Step})
			s.signal(SaveAndExit)
			kill = time.After(cmpDur(s.Config.StopTimeout, 5*time.Minute))
		case <-kill:
			s.act(Action{Kind: "killed", Step: s.progress.Step})
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
	s.report() // the checkpoint the stop committed, for the caller's last word
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
			s.act(Action{Kind: "uploading", Step: newest.step})
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
	start := time.Now()
	ref, size, err := s.Checkpoints.upload(ctx, dir, st.GlobalStep, final)
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
	s.act(Action{Kind: "committed", Step: rec.Step, Seq: rec.Seq, Bytes: size, Seconds: time.Since(start).Seconds()})
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
