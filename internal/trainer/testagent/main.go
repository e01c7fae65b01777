// Command testagent is the smallest node agent that runs a fine-tuning
// attempt: the real runner (internal/trainer) with the real bucket named
// by AUTOGLM_S3_*, and no Temporal. The fault tests start it, SIGKILL or
// SIGSTOP it, and start it again, as a node dies or hangs under a worker;
// its trainer dies with it (the runner asks the kernel for that).
//
// It prints one JSON object a line: {"progress":…}, {"action":…}, the
// trainer's own lines as {"log":"…"}, and last {"result":…} or
// {"error":"…","type":"…"}. Exit status: 0 done, 2 fenced, 3 stopped by
// SIGTERM after its checkpoint, 1 anything else.
//
//	testagent -task ft-1 -attempt a1 -workdir DIR -training-file F [flags] -- trainer argv…
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"

	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

func main() {
	os.Exit(run())
}

var out sync.Mutex

func say(v any) {
	b, _ := json.Marshal(v)
	out.Lock()
	os.Stdout.Write(append(b, '\n'))
	out.Unlock()
}

// lines turns the trainer's log into {"log":…} lines.
type lines struct{ buf []byte }

func (l *lines) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		say(map[string]string{"log": string(l.buf[:i])})
		l.buf = l.buf[i+1:]
	}
}

func run() int {
	var (
		tenant     = flag.String("tenant", "acme", "tenant")
		taskID     = flag.String("task", "", "fine-tuning job id")
		attempt    = flag.String("attempt", "", "attempt name (letters and digits)")
		workdir    = flag.String("workdir", "", "this node's folder for the job")
		training   = flag.String("training-file", "", "training file (chat JSONL)")
		seed       = flag.Int64("seed", 42, "seed")
		epochs     = flag.Int("epochs", 1, "n_epochs")
		batch      = flag.Int("batch-size", 8, "batch_size")
		saveSteps  = flag.Int("save-steps", 50, "the trainer saves every this many steps")
		interval   = flag.Duration("interval", 0, "ask for a checkpoint this often (0: off)")
		maxKeep    = flag.Int("max-keep", 2, "checkpoints kept in the bucket and on disk")
		slowUpload = flag.Duration("slow-upload", 0, "wait this long before every object written: a slow bucket")
		stopAfter  = flag.Duration("stop-timeout", time.Minute, "how long a stopping trainer has to save")
	)
	flag.Parse()
	cfg, err := config.FromEnv()
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	store, err := storage.Open(ctx, cfg.S3)
	if err != nil {
		return fail(err)
	}
	if *slowUpload > 0 {
		store = slowStore{store, *slowUpload}
	}
	r := &trainer.Runner{
		Config: trainer.Config{
			Command: flag.Args(), WorkDir: *workdir, Interval: *interval,
			SaveSteps: *saveSteps, MaxKeep: *maxKeep, StopTimeout: *stopAfter,
		},
		Checkpoints: &trainer.Checkpoints{Store: store, Tenant: *tenant, TaskID: *taskID, Attempt: *attempt},
		Progress:    func(p trainer.Progress) { say(map[string]any{"progress": p}) },
		Actions:     func(a trainer.Action) { say(a) },
		Log:         &lines{},
	}
	job := trainer.Job{
		TrainingFile:    *training,
		TrainingSHA256:  "test",
		Hyperparameters: trainer.Resolved{NEpochs: *epochs, BatchSize: *batch, LearningRateMultiplier: 1},
		Seed:            *seed,
	}
	res, err := r.Run(ctx, job)
	switch {
	case errors.Is(err, trainer.ErrFenced):
		say(map[string]string{"error": err.Error(), "type": "Fenced"})
		return 2
	case err != nil && ctx.Err() != nil:
		say(map[string]string{"error": err.Error(), "type": "Stopped"})
		return 3
	case err != nil:
		return fail(err)
	}
	say(map[string]any{"result": res})
	return 0
}

func fail(err error) int {
	say(map[string]string{"error": err.Error()})
	return 1
}

// slowStore is the real bucket behind a slow link: every write waits
// first.
type slowStore struct {
	storage.Store
	wait time.Duration
}

func (s slowStore) Put(ctx context.Context, key string, r io.Reader, size int64, o storage.PutOptions) (storage.Info, error) {
	select {
	case <-time.After(s.wait):
	case <-ctx.Done():
		return storage.Info{}, ctx.Err()
	}
	return s.Store.Put(ctx, key, r, size, o)
}
