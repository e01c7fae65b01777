package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// The demo's node: a worker process of its own, so that it can be killed.
const (
	demoNode      = "demo-gpu"
	demoBaseModel = "glm-4-test"
	// demoKillAt is the step after which the demo kills the node: past a
	// few checkpoints (the trainer saves every demoSaveSteps).
	demoKillAt    = 45
	demoSaveSteps = 10
	// demoHeartbeat is how soon Temporal gives up the killed attempt and
	// retries it; the demo's control plane records it for the job.
	demoHeartbeat = "10s"
)

func (c *cli) demoFinetuneCmd() *cobra.Command {
	var f localFlags
	cmd := &cobra.Command{
		Use:   "finetune",
		Short: "Fine-tune on the test trainer, kill its worker mid-run, resume from the checkpoint, and run a batch on the tuned model",
		Long: `Runs on the local stack (as autoglm demo does): a fine-tuning job on the
test trainer (a stand-in trainer that follows the trainer contract) on
node ` + demoNode + `, a worker process of its own, which the demo SIGKILLs once
mid-run and starts again; the job resumes from its newest verified
checkpoint. The node then loads the tuned model into the model server (the
built-in test model server, through vLLM's load_lora_adapter) and a small
batch runs on it. The test trainer is built into ./bin on first use.`,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			began := time.Now()
			trainerBin, err := testTrainerBin(ctx)
			if err != nil {
				return err
			}
			// The in-process worker runs the control plane; the node is a
			// process of its own, so that it can be killed.
			setDefault("AUTOGLM_WORKER_ROLE", "control")
			setDefault("AUTOGLM_HEARTBEAT_TIMEOUT", demoHeartbeat)
			l, err := startLocal(ctx, f)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, l.close()) }()
			if l.model == nil {
				return errors.New("the fine-tuning demo runs on the built-in test model server: unset AUTOGLM_LLM_BASE_URL")
			}
			fmt.Println(l.describe())
			d := &ftDemo{cli: c, l: l, dir: f.dir, trainer: trainerBin}
			defer d.stopNode()
			if err := d.run(ctx); err != nil {
				return err
			}
			fmt.Printf("\ndemo finetune done in %s. The data stays in %s: `make dev` brings the stack back to browse it.\n", time.Since(began).Round(time.Second), f.dir)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func setDefault(key, value string) {
	if os.Getenv(key) == "" {
		os.Setenv(key, value)
	}
}

// testTrainerBin is the test trainer next to the other tools (./bin),
// built there with `go build` when it is missing.
func testTrainerBin(ctx context.Context) (string, error) {
	dir, err := devstack.BinDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "testtrainer")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Println("building the test trainer into " + bin)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/autoglm-flow/autoglm-flow/internal/trainer/testtrainer")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the test trainer (run `make demo-finetune` from the repository): %v\n%s", err, out)
	}
	return bin, nil
}

// ftDemo is one run of the fine-tuning demo.
type ftDemo struct {
	*cli
	l       *local
	dir     string
	trainer string
	node    *devstack.Process
	alice   *apiclient.Client
}

func (d *ftDemo) run(ctx context.Context) error {
	if d.l.keys["alice"] == "" {
		return fmt.Errorf("the demo runs as alice with her dev key, which %s has not: run it without AUTOGLM_POLICY_FILE", d.dir)
	}
	d.alice = apiclient.New(d.l.server, d.l.keys["alice"])
	tc, err := d.client(ctx)
	if err != nil {
		return err
	}
	if err := d.startNode(); err != nil {
		return err
	}
	if err := wait(ctx, "node "+demoNode+" to announce that it serves "+demoBaseModel, time.Minute, func(ctx context.Context) error { return tc.WaitServed(ctx, demoBaseModel) }); err != nil {
		return err
	}

	train := filepath.Join(d.dir, "demo-finetune", "train.jsonl")
	if err := writeDemoTraining(train, 10); err != nil {
		return err
	}
	sub, err := d.alice.FineTune(ctx, taskclient.SubmitRequest{
		Model: demoBaseModel, File: train,
		FineTune: &task.FineTune{Suffix: "demo", Seed: 7, Hyperparameters: task.Hyperparameters{NEpochs: task.Number(1), BatchSize: task.Number(4)}},
	})
	if err != nil {
		return err
	}
	fmt.Printf("\nalice submitted fine-tuning job %s: %s on %s (10 examples, auto-approved by policy)\n", sub.ID, demoBaseModel, train)
	fmt.Printf("  autoglm finetune status %s\n", sub.ID)

	st, err := d.trainUntil(ctx, sub.ID, func(st task.Status) bool { return fineTune(st).Step >= demoKillAt })
	if err != nil {
		return err
	}
	killedAt, pid := fineTune(st).Step, d.node.PID()
	d.node.Kill()
	fmt.Printf("\nSIGKILL to the worker of node %s (pid %d), its last heartbeat at step %d: no time to save; its trainer dies with it\n", demoNode, pid, killedAt)
	if err := d.startNode(); err != nil {
		return err
	}
	fmt.Printf("started node %s again (pid %d); Temporal retries the training once the lost attempt misses its heartbeat (%s)\n", demoNode, d.node.PID(), demoHeartbeat)
	st, err = d.trainUntil(ctx, sub.ID, func(task.Status) bool { return false })
	if err != nil {
		return err
	}
	ft := fineTune(st)
	if st.State != task.Completed || ft.FineTunedModel == "" {
		return fmt.Errorf("%w: fine-tuning job %s ended %s: %s", errNotCompleted, sub.ID, st.State, st.LastError)
	}
	fmt.Printf("\nthe next attempt resumed from the newest verified checkpoint, step %d (not from step 0): only the steps after it were trained again\n", ft.ResumedFrom)
	fmt.Printf("the job COMPLETED at step %d, loss %.3f, after %d attempt(s)\n", ft.Step, ft.Loss, st.Attempts)
	fmt.Printf("the tuned model: %s\n  s3://%s/%s\n", ft.FineTunedModel, tc.Store.Bucket(), task.FineTunedPrefix("demo", ft.FineTunedModel))
	return d.batch(ctx, tc, ft.FineTunedModel)
}

// trainUntil shows the job's progress until done says so or it ends.
func (d *ftDemo) trainUntil(ctx context.Context, id string, done func(task.Status) bool) (task.Status, error) {
	var last string
	for {
		s, err := d.alice.Status(ctx, id)
		if err != nil {
			return task.Status{}, err
		}
		st := s.Status
		line := fmt.Sprintf("  %-9s", st.State)
		if ft := fineTune(st); ft.Step > 0 {
			line += fmt.Sprintf(" step %4d  epoch %.2f  loss %.3f  on %s", ft.Step, ft.Epoch, ft.Loss, st.Node)
		}
		if line != last {
			fmt.Println(line)
			last = line
		}
		if st.State.Final() || done(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// batch waits until a node serves the tuned model, then runs a small
// batch on it as alice and shows where its output is.
func (d *ftDemo) batch(ctx context.Context, tc *taskclient.Client, model string) error {
	if err := wait(ctx, "node "+demoNode+" to fetch "+model+" into its cache, check it and load it into its model server", time.Minute,
		func(ctx context.Context) error { return tc.WaitServed(ctx, model) }); err != nil {
		return err
	}
	for _, l := range d.l.model.LoRALoads() {
		if l.Name == model {
			fmt.Printf("the model server was asked: POST /v1/load_lora_adapter {\"lora_name\": %q, \"lora_path\": %q}\n", l.Name, l.Path)
		}
	}
	file := filepath.Join(d.dir, "demo-finetune", "batch.jsonl")
	var b strings.Builder
	for i := 1; i <= 5; i++ {
		line, _ := json.Marshal(map[string]any{"custom_id": fmt.Sprintf("ft-%d", i), "method": "POST", "url": "/v1/chat/completions",
			"body": map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": fmt.Sprintf("What is %d plus %d?", i, i)}}}})
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		return err
	}
	in, err := d.alice.Submit(ctx, taskclient.SubmitRequest{File: file}, nil)
	if err != nil {
		return err
	}
	fmt.Printf("\nalice submitted batch %s: 5 requests to %s\n", in.ID, model)
	st, err := d.follow(ctx, tclient.Server{API: d.alice}, in.ID)
	if err != nil {
		return err
	}
	if err := d.printEnding(st); err != nil {
		return err
	}
	out, err := storage.Key(storage.Data, "demo", in.ID, "output.jsonl")
	if err != nil {
		return err
	}
	fmt.Printf("\nthe batch ran on node %s, which loaded the tuned model (a node that only serves %s never gets it)\n", st.Node, demoBaseModel)
	fmt.Printf("  output: s3://%s/%s\n  autoglm results %s\n", tc.Store.Bucket(), out, in.ID)
	return nil
}

// startNode starts the demo's node: a worker process serving the base
// model, running the test trainer, and loading tuned models into the test
// model server the vLLM way.
func (d *ftDemo) startNode() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// Absolute: the trainer runs in its job's folder, and the model server
	// reads the tuned model from the path the node gives it.
	work, err := filepath.Abs(filepath.Join(d.dir, "demo-finetune"))
	if err != nil {
		return err
	}
	d.node, err = devstack.StartProcess(devstack.ProcessOptions{
		Name: "worker " + demoNode, Bin: exe, Args: []string{"worker"},
		LogPath: filepath.Join(d.dir, "logs", "worker-"+demoNode+".log"),
		Env: []string{
			"AUTOGLM_NODE=" + demoNode, "AUTOGLM_WORKER_ROLE=node", "AUTOGLM_MODELS=" + demoBaseModel,
			"AUTOGLM_TRAINER_COMMAND=" + d.trainer, "AUTOGLM_TRAINER_DIR=" + filepath.Join(work, "training"),
			fmt.Sprintf("AUTOGLM_TRAINER_SAVE_STEPS=%d", demoSaveSteps),
			"AUTOGLM_CACHE_DIR=" + filepath.Join(work, "cache"), "AUTOGLM_LORA_ADAPTERS=" + llm.LoRAVLLM,
			"AUTOGLM_HEALTH_ADDR=", "AUTOGLM_LOG_LEVEL=info",
			// The test trainer's model is tiny; a pause per step makes the
			// run long enough to watch and to kill.
			"TESTTRAINER_STEP_DELAY=60ms",
		},
	})
	return err
}

func (d *ftDemo) stopNode() {
	if d.node != nil {
		_ = d.node.Stop(30 * time.Second)
	}
}

// wait runs f, saying first what it waits for, bounded by limit.
func wait(ctx context.Context, what string, limit time.Duration, f func(context.Context) error) error {
	fmt.Println("waiting for " + what + " …")
	began := time.Now()
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := f(wctx); err != nil {
		return fmt.Errorf("waiting %s for %s: %w", limit, what, err)
	}
	fmt.Printf("  done in %s\n", time.Since(began).Round(100*time.Millisecond))
	return nil
}

func fineTune(st task.Status) task.FineTuneStatus {
	if st.FineTune == nil {
		return task.FineTuneStatus{}
	}
	return *st.FineTune
}

// writeDemoTraining writes n examples in OpenAI's chat fine-tuning format.
func writeDemoTraining(path string, n int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	words := []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"}
	var b strings.Builder
	for i := range n {
		line, _ := json.Marshal(map[string]any{"messages": []map[string]string{
			{"role": "system", "content": "You answer sums in words."},
			{"role": "user", "content": fmt.Sprintf("What is %d plus %d?", i, i)},
			{"role": "assistant", "content": fmt.Sprintf("%d plus %d is %s.", i, i, words[2*i])},
		}})
		b.Write(line)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
