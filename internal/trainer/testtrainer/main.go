// Command testtrainer is the test trainer of autoglm-flow: a stand-in for
// a real fine-tuning script, named as such, that meets the trainer
// contract (internal/trainer) with a real model: a character-level
// language model trained by gradient descent (Adam) on the text of the
// training file's messages, whose loss falls. It is deterministic: a run
// interrupted and resumed from its checkpoints ends with the same final
// weights, byte for byte, as a run that was not.
//
// Programmable faults, from the environment:
//
//	TESTTRAINER_CRASH_AT_STEP=N   exit 3 when step N is reached
//	TESTTRAINER_SLOW_SAVE=D       wait D between the files of a save
//	TESTTRAINER_IGNORE_SIGTERM=1  keep training on SIGTERM
//	TESTTRAINER_STEP_DELAY=D      wait D after every step
//	TESTTRAINER_HIDDEN=H          hidden layer width (default 64)
//	TESTTRAINER_GATE=path         after every step, wait while path exists
//	                              (a test's gate: it holds the trainer at a
//	                              step, and a stop told while held saves
//	                              that step)
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

func main() {
	if err := train(); err != nil {
		fmt.Fprintln(os.Stderr, "testtrainer:", err)
		os.Exit(1)
	}
}

// position is rng_state.json: where in the data the run is. Each epoch's
// order is a shuffle by a generator seeded with (seed, epoch), so the
// seed, the epoch and the index in it are the whole random state.
type position struct {
	Seed  int64 `json:"seed"`
	Epoch int   `json:"epoch"`
	Index int   `json:"index"`
}

type training struct {
	spec    trainer.Spec
	m       *model
	opt     adam
	data    []int
	pos     position
	step    int
	history []trainer.LogEntry
	steps   int // total
	perEp   int

	slowSave time.Duration
}

func train() error {
	spec, err := trainer.SpecFromEnv()
	if err != nil {
		return err
	}
	text, err := trainingText(spec.TrainingFile)
	if err != nil {
		return err
	}
	if len(text) < 2 {
		return errors.New("the training file holds no text")
	}
	hidden := envInt("TESTTRAINER_HIDDEN", 64)
	vocab := vocabOf(text)
	r := &training{spec: spec, data: encode(text, vocab), pos: position{Seed: spec.Seed}}
	r.m = newModel(vocab, hidden, rand.New(rand.NewPCG(uint64(spec.Seed), 0)))
	r.opt = adam{M: make([]float64, len(r.m.params)), V: make([]float64, len(r.m.params))}
	b := spec.Hyperparameters.BatchSize
	r.perEp = (len(r.data) + b - 1) / b
	r.steps = r.perEp * spec.Hyperparameters.NEpochs
	r.slowSave, _ = time.ParseDuration(os.Getenv("TESTTRAINER_SLOW_SAVE"))
	delay, _ := time.ParseDuration(os.Getenv("TESTTRAINER_STEP_DELAY"))
	crashAt := envInt("TESTTRAINER_CRASH_AT_STEP", -1)
	gate := os.Getenv("TESTTRAINER_GATE")

	if spec.ResumeFrom != "" {
		if err := r.load(spec.ResumeFrom); err != nil {
			return fmt.Errorf("resuming from %s: %w", spec.ResumeFrom, err)
		}
		say(map[string]any{"resumed_from": r.step})
	}

	var saveNow, stop atomic.Bool
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, trainer.SaveAndGoOn, trainer.SaveAndExit)
	ignoreTerm := os.Getenv("TESTTRAINER_IGNORE_SIGTERM") == "1"
	go func() {
		for s := range sigs {
			switch {
			case s == trainer.SaveAndGoOn:
				saveNow.Store(true)
			case !ignoreTerm:
				stop.Store(true)
			}
		}
	}()

	lr := 0.01 * spec.Hyperparameters.LearningRateMultiplier
	grad := make([]float64, len(r.m.params))
	var order []int
	orderEpoch := -1
	for r.step < r.steps {
		if r.pos.Index >= len(r.data) {
			r.pos.Epoch, r.pos.Index = r.pos.Epoch+1, 0
		}
		if orderEpoch != r.pos.Epoch {
			order, orderEpoch = shuffle(len(r.data), r.pos), r.pos.Epoch
		}
		end := min(r.pos.Index+b, len(order))
		clear(grad)
		loss := r.m.step(r.data, order[r.pos.Index:end], grad)
		r.opt.apply(r.m.params, grad, lr)
		r.pos.Index = end
		r.step++
		epoch := float64(r.step) / float64(r.perEp)
		r.history = append(r.history, trainer.LogEntry{Step: r.step, Epoch: epoch, Loss: &loss})
		say(trainer.Progress{Step: r.step, Epoch: epoch, Loss: loss})
		if r.step == crashAt {
			fmt.Fprintf(os.Stderr, "testtrainer: crashing at step %d as told\n", r.step)
			os.Exit(3)
		}
		if r.step == r.steps {
			break
		}
		if r.step%spec.SaveSteps == 0 || saveNow.Swap(false) || stop.Load() {
			if err := r.save(); err != nil {
				return err
			}
		}
		if stop.Load() {
			return nil
		}
		for gate != "" && exists(gate) && !stop.Load() {
			time.Sleep(20 * time.Millisecond)
		}
		if stop.Load() {
			return r.save()
		}
		time.Sleep(delay)
	}
	return r.saveFinal()
}

// trainingText is the text of every message of the training file, one
// message a line.
func trainingText(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var text []byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ex struct {
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if json.Unmarshal(sc.Bytes(), &ex) != nil {
			continue
		}
		for _, m := range ex.Messages {
			text = append(text, m.Content...)
			text = append(text, '\n')
		}
	}
	return text, sc.Err()
}

// shuffle is the order of an epoch's examples.
func shuffle(n int, p position) []int {
	rng := rand.New(rand.NewPCG(uint64(p.Seed), uint64(p.Epoch)+1))
	return rng.Perm(n)
}

func say(v any) {
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// save writes checkpoint-<step>/, waiting first while the output folder
// holds as many checkpoint folders as the runner allows.
func (r *training) save() error {
	dir := filepath.Join(r.spec.OutputDir, trainer.CheckpointDir(r.step))
	if _, err := os.Stat(dir); err == nil {
		return nil // saved at this step already
	}
	for {
		n, err := trainer.CountCheckpoints(r.spec.OutputDir)
		if err != nil {
			return err
		}
		if n < r.spec.MaxLocal {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	n, _ := trainer.CountCheckpoints(r.spec.OutputDir)
	say(map[string]any{"saving": r.step, "folders": n})
	cfg, err := r.m.config()
	if err != nil {
		return err
	}
	pos, _ := json.Marshal(r.pos)
	writes := []func() error{
		func() error { return writeFloats(filepath.Join(dir, "model.bin"), r.m.params) },
		func() error { return writeFloats(filepath.Join(dir, "optimizer.bin"), r.opt.M, r.opt.V) },
		func() error { return os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644) },
		func() error { return os.WriteFile(filepath.Join(dir, "rng_state.json"), pos, 0o644) },
		func() error { return r.writeState(dir, map[string]any{"adam_t": r.opt.T}) },
	}
	for _, w := range writes {
		if err := w(); err != nil {
			return err
		}
		time.Sleep(r.slowSave)
	}
	return os.WriteFile(filepath.Join(dir, trainer.CompleteMarker), []byte(strconv.Itoa(r.step)), 0o644)
}

func (r *training) writeState(dir string, extra map[string]any) error {
	st := map[string]any{
		"global_step": r.step,
		"epoch":       float64(r.step) / float64(r.perEp),
		"max_steps":   r.steps,
		"log_history": r.history,
	}
	for k, v := range extra {
		st[k] = v
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, trainer.StateFile), b, 0o644)
}

// saveFinal writes the trained model to final/.
func (r *training) saveFinal() error {
	dir := filepath.Join(r.spec.OutputDir, trainer.FinalDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := r.m.config()
	if err != nil {
		return err
	}
	if err := writeFloats(filepath.Join(dir, "model.bin"), r.m.params); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		return err
	}
	if err := r.writeState(dir, nil); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, trainer.CompleteMarker), []byte(strconv.Itoa(r.step)), 0o644)
}

// load restores everything a checkpoint holds: weights, optimizer state,
// the data position and the loss history.
func (r *training) load(dir string) error {
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	if err := r.m.sameVocab(cfg); err != nil {
		return err
	}
	if err := readFloats(filepath.Join(dir, "model.bin"), r.m.params); err != nil {
		return err
	}
	if err := readFloats(filepath.Join(dir, "optimizer.bin"), r.opt.M, r.opt.V); err != nil {
		return err
	}
	pos, err := os.ReadFile(filepath.Join(dir, "rng_state.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(pos, &r.pos); err != nil {
		return err
	}
	var st struct {
		GlobalStep int                `json:"global_step"`
		AdamT      int                `json:"adam_t"`
		LogHistory []trainer.LogEntry `json:"log_history"`
	}
	b, err := os.ReadFile(filepath.Join(dir, trainer.StateFile))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	r.step, r.opt.T, r.history = st.GlobalStep, st.AdamT, st.LogHistory
	return nil
}
