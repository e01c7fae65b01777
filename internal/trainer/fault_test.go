package trainer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// slowSteps makes the test trainer's run last long enough to be killed at
// a chosen step: about a second for one epoch.
var slowSteps = []string{"TESTTRAINER_STEP_DELAY=3ms"}

func jobFlags(t *testing.T, more ...string) []string {
	return append([]string{"-training-file", trainingFile(t, 40), "-seed", "7", "-epochs", "1", "-batch-size", "8", "-save-steps", "20"}, more...)
}

// resumedFrom is the step an attempt resumed from; 0 when it started from
// the beginning.
func resumedFrom(a *agent) int {
	if ev := a.actions("resumed"); len(ev) > 0 {
		return ev[0].Step
	}
	return 0
}

func TestKilledThreeTimesEndsWithIdenticalWeights(t *testing.T) {
	needStack(t)
	flags := jobFlags(t, "-interval", "150ms")
	want := reference(t, flags)
	rng := rand.New(rand.NewPCG(16, 3))
	var kills []int
	for len(kills) < 3 {
		k := 15 + rng.IntN(280)
		if !slices.ContainsFunc(kills, func(x int) bool { return x-k < 25 && k-x < 25 }) {
			kills = append(kills, k)
		}
	}
	slices.Sort(kills)
	t.Logf("killing the node at steps %v", kills)

	task := unique("ft-kill3")
	var lastKill killPoint
	for i, k := range kills {
		a := startAgent(t, agentOptions{task: task, attempt: fmt.Sprintf("a%d", i+1), flags: flags, env: slowSteps})
		if i > 0 {
			checkResume(t, a, lastKill)
		}
		a.waitFor(fmt.Sprintf("step %d", k), func(l line) bool { return l.Progress != nil && l.Progress.Step >= k })
		a.kill()
		reached := a.lastStep()
		head := headRecord(t, task)
		committed := 0
		if head != nil {
			committed = head.Step
		}
		t.Logf("kill %d: the trainer had reached step %d; the newest committed checkpoint is step %d", i+1, reached, committed)
		lastKill = killPoint{reached: reached, committed: committed}
	}
	a := startAgent(t, agentOptions{task: task, attempt: "a4", flags: flags, env: slowSteps})
	checkResume(t, a, lastKill)
	last, code := a.wait()
	if code != 0 || last.Result == nil {
		t.Fatalf("the last attempt failed (exit %d): %s", code, last.Error)
	}
	if got := finalWeights(t, last.Result.Final); got != want {
		t.Fatalf("final weights differ from the uninterrupted run's: sha256 %s, want %s", got, want)
	}
}

// killPoint is how far the previous attempt got before its node died.
type killPoint struct{ reached, committed int }

// checkResume waits for the attempt to resume and checks it resumed from
// the newest committed checkpoint: the steps it redoes are exactly those
// since that checkpoint. It returns the attempt's first progress line.
func checkResume(t *testing.T, a *agent, lastKill killPoint) line {
	t.Helper()
	// Before the trainer's first step the runner reports the resume point
	// (a heartbeat must go while a trainer loads its model).
	first := a.waitFor("its first step", func(l line) bool { return l.Progress != nil && l.Progress.Step != resumedFrom(a) })
	from := resumedFrom(a)
	if from != lastKill.committed {
		t.Fatalf("%s resumed from step %d, want the newest committed checkpoint, step %d", a.name, from, lastKill.committed)
	}
	if first.Progress.Step != from+1 {
		t.Fatalf("%s's first step is %d, want %d (the step after its checkpoint)", a.name, first.Progress.Step, from+1)
	}
	redone := lastKill.reached - from
	if redone > lastKill.reached-lastKill.committed {
		t.Fatalf("%s redoes %d steps, more than the %d since the newest checkpoint", a.name, redone, lastKill.reached-lastKill.committed)
	}
	t.Logf("%s resumed from step %d and redoes %d step(s)", a.name, from, redone)
	return first
}

func TestKillMidWriteResumesFromThePreviousCheckpoint(t *testing.T) {
	needStack(t)
	flags := jobFlags(t)
	want := reference(t, flags)
	task := unique("ft-midwrite")
	env := append(slices.Clone(slowSteps), "TESTTRAINER_SLOW_SAVE=150ms")
	a := startAgent(t, agentOptions{task: task, attempt: "a1", flags: flags, env: env})
	c := a.waitFor("a committed checkpoint", func(l line) bool { return l.Action == "committed" })
	cut := a.waitFor("the next save", func(l line) bool { return l.Saving > c.Step })
	a.kill()
	dir := filepath.Join(scratch, "nodes", task, "a1", "output", trainer.CheckpointDir(cut.Saving))
	if _, err := os.Stat(filepath.Join(dir, trainer.CompleteMarker)); err == nil {
		t.Fatalf("checkpoint %d was complete when the node died; the test meant to cut it mid-write", cut.Saving)
	}
	head := headRecord(t, task)
	if head == nil || head.Step >= cut.Saving {
		t.Fatalf("the head is %+v; want a checkpoint before step %d", head, cut.Saving)
	}
	b := startAgent(t, agentOptions{task: task, attempt: "a2", flags: flags, env: slowSteps})
	checkResume(t, b, killPoint{reached: a.lastStep(), committed: head.Step})
	t.Logf("cut mid-write at step %d; resumed from step %d", cut.Saving, resumedFrom(b))
	finish(t, b, want)
}

func TestKillMidUploadResumesFromThePreviousCheckpoint(t *testing.T) {
	needStack(t)
	flags := jobFlags(t)
	want := reference(t, flags)
	task := unique("ft-midupload")
	a := startAgent(t, agentOptions{task: task, attempt: "a1", flags: append(slices.Clone(flags), "-slow-upload", "100ms"), env: slowSteps})
	c := a.waitFor("a committed checkpoint", func(l line) bool { return l.Action == "committed" })
	up := a.waitFor("the next upload", func(l line) bool { return l.Action == "uploading" && l.Step > c.Step })
	// The upload has begun: wait for one of its objects to be in the
	// bucket, so the node dies with the checkpoint half uploaded.
	folder := fmt.Sprintf("a1-%08d", up.Step)
	for !objectFolders(t, task)[folder] {
		select {
		case <-a.done:
			t.Fatalf("a1 ended (%v) before its upload of step %d began", a.err, up.Step)
		case <-time.After(5 * time.Millisecond):
		}
	}
	a.kill()
	if slices.Contains(folders(t, task), folder) {
		t.Fatalf("checkpoint %d has its manifest: the upload was complete when the node died", up.Step)
	}
	head := headRecord(t, task)
	if head == nil || head.Step >= up.Step {
		t.Fatalf("the head is %+v; want a checkpoint before step %d", head, up.Step)
	}
	b := startAgent(t, agentOptions{task: task, attempt: "a2", flags: flags, env: slowSteps})
	checkResume(t, b, killPoint{reached: a.lastStep(), committed: head.Step})
	if objectFolders(t, task)[folder] {
		t.Fatalf("the half upload %s is still in the bucket after the next attempt claimed the job", folder)
	}
	t.Logf("cut mid-upload at step %d; resumed from step %d", up.Step, resumedFrom(b))
	finish(t, b, want)
}

func finish(t *testing.T, a *agent, want string) {
	t.Helper()
	last, code := a.wait()
	if code != 0 || last.Result == nil {
		t.Fatalf("%s failed (exit %d): %s", a.name, code, last.Error)
	}
	if got := finalWeights(t, last.Result.Final); got != want {
		t.Fatalf("final weights differ from the uninterrupted run's: sha256 %s, want %s", got, want)
	}
}

// children are the PIDs of pid's child processes.
func children(t *testing.T, pid int) []int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func TestSplitBrainCommitsNothing(t *testing.T) {
	needStack(t)
	flags := jobFlags(t)
	want := reference(t, flags)
	task := unique("ft-split")
	a := startAgent(t, agentOptions{task: task, attempt: "a1", flags: flags, env: slowSteps})
	a.waitFor("a committed checkpoint", func(l line) bool { return l.Action == "committed" })
	// The node hangs: the agent and its trainer stop, as a paused VM.
	hung := append([]int{a.cmd.Process.Pid}, children(t, a.cmd.Process.Pid)...)
	if len(hung) < 2 {
		t.Fatal("found no trainer under the agent")
	}
	for _, pid := range hung {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	// Its lease is taken to have run out: the next attempt runs the job.
	b := startAgent(t, agentOptions{task: task, attempt: "a2", flags: flags, env: slowSteps})
	last, code := b.wait()
	if code != 0 || last.Result == nil {
		t.Fatalf("the replacing attempt failed (exit %d): %s", code, last.Error)
	}
	ctx := context.Background()
	before, err := checkpoints(task).Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	headBefore := headRecord(t, task)
	for _, pid := range hung {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	end, code := a.wait()
	if code != 2 || end.Type != "Fenced" {
		t.Fatalf("the woken attempt ended with exit %d, %q (%s); want Fenced", code, end.Type, end.Error)
	}
	after, err := checkpoints(task).Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("the woken attempt committed: %d records before it woke, %d after", len(before), len(after))
	}
	if h := headRecord(t, task); h.Seq != headBefore.Seq || h.Attempt != "a2" || !h.Final {
		t.Fatalf("the head moved after the woken attempt ran: %+v", h)
	}
	if got := finalWeights(t, *headRecord(t, task)); got != want {
		t.Fatalf("the job's final weights are not the uninterrupted run's: %s, want %s", got, want)
	}
}

func TestMaxKeepBoundsDiskAndBucket(t *testing.T) {
	needStack(t)
	task := unique("ft-disk")
	flags := jobFlags(t, "-save-steps", "5", "-max-keep", "2", "-slow-upload", "40ms")
	a := startAgent(t, agentOptions{task: task, attempt: "a1", flags: flags, env: []string{"TESTTRAINER_STEP_DELAY=1ms"}})
	waited := false
	for l := range a.lines {
		if l.Folders > 3 {
			t.Fatalf("the node held %d checkpoint folders when the trainer began step %d's", l.Folders, l.Saving)
		}
		if l.Action == "committed" {
			if n := len(folders(t, task)); n > 2 {
				t.Fatalf("after committing step %d the bucket holds %d checkpoints: %v", l.Step, n, folders(t, task))
			}
		}
		if l.Log != "" && strings.Contains(l.Log, `"folders":3`) {
			waited = true
		}
		if l.Error != "" {
			t.Fatalf("the run failed: %s", l.Error)
		}
	}
	<-a.done
	if got := folders(t, task); len(got) > 2 {
		t.Fatalf("the bucket ends with %d checkpoints: %v", len(got), got)
	}
	commits := len(a.actions("committed"))
	saves := 0
	for _, l := range a.seen {
		if l.Saving > 0 {
			saves++
		}
	}
	t.Logf("%d saves, %d committed (the slow bucket skips the ones superseded while it uploads); trainer held at 3 folders: %v", saves, commits, waited)
	if commits >= saves {
		t.Fatalf("every one of %d saves was uploaded: the bucket was not slow enough to test the bound", saves)
	}
}
