package trainer_test

import (
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestStopSavesAndTheNextNodeResumesThere is a drain at the node: the
// agent is told to stop (SIGTERM, as a worker's graceful shutdown), the
// trainer saves where it is, the checkpoint is committed, and the next
// attempt resumes from exactly that step. Saves are asked by time only
// (SIGUSR1 every 200 ms; save_steps out of reach), so the checkpoints
// before the stop show the interval at work.
func TestStopSavesAndTheNextNodeResumesThere(t *testing.T) {
	needStack(t)
	flags := jobFlags(t, "-save-steps", "100000", "-interval", "200ms")
	want := reference(t, flags)
	task := unique("ft-stop")
	a := startAgent(t, agentOptions{task: task, attempt: "a1", flags: flags, env: slowSteps})
	c := a.waitFor("a checkpoint asked by the interval", func(l line) bool { return l.Action == "committed" })
	if c.Step%100000 == 0 {
		t.Fatalf("the first checkpoint is at step %d", c.Step)
	}
	a.waitFor("steps past it", func(l line) bool { return l.Progress != nil && l.Progress.Step > c.Step+10 })
	if err := syscall.Kill(a.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	end, code := a.wait()
	if code != 3 || end.Type != "Stopped" {
		t.Fatalf("the stopped attempt ended with exit %d, %q (%s); want Stopped", code, end.Type, end.Error)
	}
	reached := a.lastStep()
	head := headRecord(t, task)
	if head == nil || head.Step != reached {
		t.Fatalf("the head is %+v after the stop; want the checkpoint at step %d, where the trainer stopped", head, reached)
	}
	b := startAgent(t, agentOptions{task: task, attempt: "a2", flags: flags, env: slowSteps})
	checkResume(t, b, killPoint{reached: reached, committed: head.Step})
	finish(t, b, want)
}

// TestTrainerRefusingToStopIsKilledAndLosesOnlyItsLastSteps: a trainer
// that ignores SIGTERM is killed after the stop timeout; the newest
// checkpoint it completed is the one kept.
func TestTrainerRefusingToStopIsKilledAndLosesOnlyItsLastSteps(t *testing.T) {
	needStack(t)
	flags := jobFlags(t, "-stop-timeout", "300ms")
	task := unique("ft-refuse")
	a := startAgent(t, agentOptions{task: task, attempt: "a1", flags: flags, env: append(slices.Clone(slowSteps), "TESTTRAINER_IGNORE_SIGTERM=1")})
	c := a.waitFor("a committed checkpoint", func(l line) bool { return l.Action == "committed" })
	if err := syscall.Kill(a.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	end, code := a.wait()
	if code != 3 || end.Type != "Stopped" {
		t.Fatalf("exit %d, %q (%s); want Stopped", code, end.Type, end.Error)
	}
	head := headRecord(t, task)
	if head == nil || head.Step < c.Step || head.Step%20 != 0 {
		t.Fatalf("the head is %+v; want a checkpoint the trainer completed (a multiple of 20, from step %d)", head, c.Step)
	}
	if k := a.actions("killed"); len(k) != 1 || k[0].Step < head.Step {
		t.Fatalf("the runner logged %+v as killed; want the trainer killed once, at or past the head's step %d", k, head.Step)
	}
}

// TestCrashedTrainerResumesFromItsLastCheckpoint: the trainer dies on
// its own (exit 3 at step 70); the attempt fails after committing the
// newest complete checkpoint, and the next finishes the same training.
func TestCrashedTrainerResumesFromItsLastCheckpoint(t *testing.T) {
	needStack(t)
	flags := jobFlags(t)
	want := reference(t, flags)
	task := unique("ft-crash")
	a := startAgent(t, agentOptions{task: task, attempt: "a1", flags: flags, env: append(slices.Clone(slowSteps), "TESTTRAINER_CRASH_AT_STEP=70")})
	end, code := a.wait()
	if code != 1 || !strings.Contains(end.Error, "exit code 3") {
		t.Fatalf("exit %d (%s); want the trainer's failure", code, end.Error)
	}
	head := headRecord(t, task)
	if head == nil || head.Step != 60 {
		t.Fatalf("the head is %+v; want step 60, the last checkpoint before the crash", head)
	}
	b := startAgent(t, agentOptions{task: task, attempt: "a2", flags: flags, env: slowSteps})
	checkResume(t, b, killPoint{reached: 70, committed: 60})
	finish(t, b, want)
}
