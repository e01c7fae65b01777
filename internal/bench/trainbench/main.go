// Command trainbench measures the fine-tuning runner (internal/trainer) on
// a MinIO of its own, and prints
//
//	BENCH name=train_steps_autosave_5s value=… unit=steps/s baseline=… ratio=… goal=0.95
//	BENCH name=checkpoint_upload_throughput value=… unit=MiB/s baseline=… ratio=… goal=0.9
//	BENCH name=train_resume_after_node_death value=… unit=s baseline=<heartbeat timeout> ratio=…
//
// The first runs the test trainer (a real character-level model, its
// hidden layer wide enough that a step is real work) through the runner
// with a checkpoint asked every 5 seconds, uploaded with its manifest and
// committed, against the same run with auto-save off: saving must not
// stall training. The second uploads one checkpoint folder with
// Checkpoints.Upload (Put, a Stat that checks size and sha256, the
// manifest) against minio-go PutObject of the same files, nothing
// checked, with the same number of files in flight. The two training runs
// of a round run at the same time (the machine's other load slows both
// alike); the uploads alternate. Each figure is the median of the rounds.
// The third (death.go) SIGKILLs the node training a job on the real stack
// and measures the time until the job's next attempt starts on the other
// node, against the heartbeat timeout that bounds it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

const bucket = "bench"

func main() {
	rounds := flag.Int("rounds", 3, "runs per side")
	uploadRounds := flag.Int("upload-rounds", 6, "uploads per side")
	epochs := flag.Int("epochs", 4, "epochs of each training run")
	mib := flag.Int("mib", 128, "size of the uploaded checkpoint in MiB (4 files)")
	only := flag.String("only", "", "run one figure: train, upload or death (default: all)")
	cpuProfile := flag.String("cpuprofile", "", "write the bench process's CPU profile (the runner's side: uploads, commits) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "train bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *rounds, *uploadRounds, *epochs, *mib, *only); err != nil {
		fmt.Fprintln(os.Stderr, "train bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(ctx context.Context, rounds, uploadRounds, epochs, mib int, only string) error {
	bin, err := devstack.BinDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "train-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tt := filepath.Join(dir, "testtrainer")
	build := exec.CommandContext(ctx, "go", "build", "-o", tt, "./internal/trainer/testtrainer")
	build.Dir = filepath.Dir(bin)
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the test trainer: %v\n%s", err, out)
	}
	death := only == "" || only == "death"
	st, err := devstack.Start(ctx, devstack.Options{Dir: dir + "/stack", BinDir: bin, NoTemporal: !death, Buckets: []string{bucket}})
	if err != nil {
		return err
	}
	defer st.Stop()
	store, err := storage.Open(ctx, storage.Config{Driver: storage.DriverMinIO, Endpoint: st.S3Endpoint, Bucket: bucket, Insecure: true, AccessKey: st.AccessKey, SecretKey: st.SecretKey})
	if err != nil {
		return err
	}
	raw, err := st.S3Client()
	if err != nil {
		return err
	}
	data, err := trainingFile(dir)
	if err != nil {
		return err
	}

	if only == "" || only == "train" {
		if err := trainFigure(ctx, store, tt, data, dir, rounds, epochs); err != nil {
			return err
		}
	}
	if only == "" || only == "upload" {
		if err := uploadFigure(ctx, store, raw, dir, uploadRounds, mib); err != nil {
			return err
		}
	}
	if death {
		d, from, err := resumeAfterDeath(ctx, st, filepath.Dir(bin), dir, tt, data)
		if err != nil {
			return err
		}
		fmt.Printf("BENCH name=train_resume_after_node_death value=%.1f unit=s baseline=%.1f ratio=%.2f resumed_from_step=%d\n",
			d.Seconds(), heartbeatTimeout.Seconds(), d.Seconds()/heartbeatTimeout.Seconds(), from)
	}
	return nil
}

// trainFigure is train_steps_autosave_5s.
func trainFigure(ctx context.Context, store storage.Store, tt, data, dir string, rounds, epochs int) error {
	// The two sides of a round run at the same time, so that whatever
	// else the machine runs slows both alike.
	var saving, plain []float64
	var saves int
	var stalled, stalledPlain time.Duration
	for i := range rounds {
		var v, p trained
		var errSave, errPlain error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			v, errSave = train(ctx, store, tt, data, dir, fmt.Sprintf("save-%d", i), epochs, 5*time.Second)
		}()
		go func() {
			defer wg.Done()
			p, errPlain = train(ctx, store, tt, data, dir, fmt.Sprintf("plain-%d", i), epochs, 0)
		}()
		wg.Wait()
		if err := errors.Join(errSave, errPlain); err != nil {
			return err
		}
		saving, plain, saves = append(saving, v.stepsPerSecond), append(plain, p.stepsPerSecond), saves+v.commits
		stalled, stalledPlain = stalled+v.stalled, stalledPlain+p.stalled
	}
	v, b := median(saving), median(plain)
	fmt.Printf("BENCH name=train_steps_autosave_5s value=%.1f unit=steps/s baseline=%.1f ratio=%.3f goal=0.95 checkpoints=%d stalled_ms=%d baseline_stalled_ms=%d\n",
		v, b, v/b, saves, stalled.Milliseconds(), stalledPlain.Milliseconds())
	return nil
}

// uploadFigure is checkpoint_upload_throughput.
func uploadFigure(ctx context.Context, store storage.Store, raw *minio.Client, dir string, rounds, mib int) error {
	folder, err := checkpointFolder(dir, mib)
	if err != nil {
		return err
	}
	var ours, rawRates []float64
	for i := range rounds {
		cp := &trainer.Checkpoints{Store: store, Tenant: "bench", TaskID: fmt.Sprintf("upload-%d", i), Attempt: "a1"}
		if _, err := cp.Claim(ctx); err != nil {
			return err
		}
		sides := []func() error{
			func() error {
				start := time.Now()
				if _, err := cp.Upload(ctx, folder, 1, false); err != nil {
					return err
				}
				ours = append(ours, float64(mib)/time.Since(start).Seconds())
				return nil
			},
			func() error {
				start := time.Now()
				if err := putAll(ctx, raw, folder, fmt.Sprintf("raw-%d/", i)); err != nil {
					return err
				}
				rawRates = append(rawRates, float64(mib)/time.Since(start).Seconds())
				return nil
			},
		}
		// Each side goes first in every other round: the one that goes
		// second finds the store's disk busier with the first's writes.
		if i%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			if err := side(); err != nil {
				return err
			}
		}
	}
	v, b := median(ours), median(rawRates)
	fmt.Printf("BENCH name=checkpoint_upload_throughput_%dMiB value=%.1f unit=MiB/s baseline=%.1f ratio=%.3f goal=0.9\n", mib, v, b, v/b)
	return nil
}

// trained is one training run as the bench saw it.
type trained struct {
	stepsPerSecond float64
	commits        int
	// stalled is the time the trainer's steps took beyond 3× the median
	// step, summed: how long saving (or anything else) held training up.
	stalled time.Duration
}

// train runs one job through the runner and returns its steps per second,
// from its first step to its last, how many checkpoints it committed and
// how long its steps stalled.
func train(ctx context.Context, store storage.Store, tt, data, dir, name string, epochs int, interval time.Duration) (trained, error) {
	var first, last time.Time
	var steps, commits int
	var gaps []float64
	r := &trainer.Runner{
		Config: trainer.Config{
			Command: []string{tt}, Env: []string{"TESTTRAINER_HIDDEN=512"},
			WorkDir: filepath.Join(dir, "nodes", name), Interval: interval, SaveSteps: 1 << 30,
		},
		Checkpoints: &trainer.Checkpoints{Store: store, Tenant: "bench", TaskID: name, Attempt: "a1"},
		Progress: func(p trainer.Progress) {
			if p.Step != steps {
				now := time.Now()
				if first.IsZero() {
					first = now
				} else {
					gaps = append(gaps, now.Sub(last).Seconds())
				}
				last, steps = now, p.Step
			}
		},
		Actions: func(e trainer.Action) {
			if e.Kind == "committed" {
				commits++
			}
		},
	}
	job := trainer.Job{TrainingFile: data, Hyperparameters: trainer.Resolved{NEpochs: epochs, BatchSize: 8, LearningRateMultiplier: 1}, Seed: 1}
	if _, err := r.Run(ctx, job); err != nil {
		return trained{}, err
	}
	med := median(gaps)
	var stalled float64
	for _, g := range gaps {
		stalled += max(0, g-3*med)
	}
	return trained{float64(steps-1) / last.Sub(first).Seconds(), commits - 1, time.Duration(stalled * float64(time.Second))}, nil
}

func trainingFile(dir string) (string, error) {
	f, err := os.Create(filepath.Join(dir, "train.jsonl"))
	if err != nil {
		return "", err
	}
	enc := json.NewEncoder(f)
	for i := range 60 {
		_ = enc.Encode(map[string]any{"messages": []map[string]string{
			{"role": "user", "content": fmt.Sprintf("What is %d times 3?", i)},
			{"role": "assistant", "content": fmt.Sprintf("%d times 3 is %d.", i, 3*i)},
		}})
	}
	return f.Name(), f.Close()
}

// checkpointFolder writes a complete checkpoint of four random files.
func checkpointFolder(dir string, mib int) (string, error) {
	folder := filepath.Join(dir, "checkpoint-1")
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return "", err
	}
	for i := range 4 {
		b := make([]byte, mib<<20/4)
		_, _ = rand.Read(b)
		if err := os.WriteFile(filepath.Join(folder, fmt.Sprintf("weights-%d.bin", i)), b, 0o644); err != nil {
			return "", err
		}
	}
	st := []byte(`{"global_step":1,"log_history":[]}`)
	if err := os.WriteFile(filepath.Join(folder, trainer.StateFile), st, 0o644); err != nil {
		return "", err
	}
	return folder, os.WriteFile(filepath.Join(folder, trainer.CompleteMarker), []byte("1"), 0o644)
}

// putAll is the baseline: every file of folder with PutObject, as many at
// once as Checkpoints.Upload sends, nothing hashed or checked.
func putAll(ctx context.Context, raw *minio.Client, folder, prefix string) error {
	entries, err := os.ReadDir(folder)
	if err != nil {
		return err
	}
	errs := make([]error, len(entries))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			f, err := os.Open(filepath.Join(folder, e.Name()))
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			fi, _ := f.Stat()
			_, errs[i] = raw.PutObject(ctx, bucket, prefix+e.Name(), f, fi.Size(), minio.PutObjectOptions{ContentType: "application/octet-stream"})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
