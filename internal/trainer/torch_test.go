package trainer_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// python is Debian's interpreter, the one python3-torch installs into.
const python = "/usr/bin/python3"

func TestPyTorchTrainerResumesFromItsCheckpoint(t *testing.T) {
	needStack(t)
	if out, err := exec.Command(python, "-c", "import torch").CombinedOutput(); err != nil {
		t.Skipf("the PyTorch trainer needs Debian's python3-torch (apt-get install python3-torch, as .ci/run does): %s -c 'import torch': %v: %s", python, err, out)
	}
	task := unique("ft-torch")
	script := []string{python, filepath.Join(root, "trainers", "torch", "charlm.py")}
	// A slow bucket and max_keep 2 pace the trainer by its uploads, so
	// the run is still going when the node dies.
	flags := jobFlags(t, "-save-steps", "10", "-slow-upload", "30ms")
	a := startAgent(t, agentOptions{task: task, attempt: "a1", flags: flags, command: script})
	c := a.waitFor("a committed checkpoint past step 20", func(l line) bool { return l.Action == "committed" && l.Step >= 20 })
	a.waitFor("steps past it", func(l line) bool { return l.Progress != nil && l.Progress.Step > c.Step+3 })
	a.kill()
	head := headRecord(t, task)
	losses := map[int]float64{}
	for _, l := range a.seen {
		if l.Progress != nil {
			losses[l.Progress.Step] = l.Progress.Loss
		}
	}

	b := startAgent(t, agentOptions{task: task, attempt: "a2", flags: flags, command: script})
	first := checkResume(t, b, killPoint{reached: a.lastStep(), committed: head.Step})
	if want, ok := losses[first.Progress.Step]; ok && first.Progress.Loss != want {
		t.Errorf("step %d's loss is %v after the resume, %v before the kill: the resumed run does not continue the same training", first.Progress.Step, first.Progress.Loss, want)
	}
	last, code := b.wait()
	if code != 0 || last.Result == nil {
		t.Fatalf("the resumed run failed (exit %d): %s", code, last.Error)
	}
	// The final trainer_state.json logs every step once, in order: the
	// history before the kill came back with the checkpoint.
	var m trainer.CheckpointManifest
	readJSON(t, last.Result.Final.Manifest.Key, &m)
	var st trainer.State
	for _, f := range m.Files {
		if f.Name == trainer.StateFile {
			rc, _, err := store.Get(context.Background(), f.Key)
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(rc).Decode(&st)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(st.LogHistory) != st.GlobalStep || st.GlobalStep == 0 {
		t.Fatalf("the final log history has %d entries for %d steps", len(st.LogHistory), st.GlobalStep)
	}
	for i, e := range st.LogHistory {
		if e.Step != i+1 || e.Loss == nil {
			t.Fatalf("log history entry %d is step %d (loss %v): not every step once, in order", i, e.Step, e.Loss)
		}
	}
	t.Logf("killed at step %d, resumed from step %d; loss %.3f at step 1, %.3f at step %d", a.lastStep(), head.Step, *st.LogHistory[0].Loss, st.LastLoss(), st.GlobalStep)
}
