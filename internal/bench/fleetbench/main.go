// Command fleetbench measures what more nodes buy: the time from submit to
// a node starting the inference of a burst of batches on three nodes, against the same burst on
// one node, in the same run, on the real stack (devstack: the Temporal dev
// server and MinIO; `autoglm worker` processes; the test model server):
//
//	BENCH name=submit_to_running_3_nodes value=… unit=ms baseline=… ratio=…
//
// The baseline is one node; each node runs one batch at a time
// (AUTOGLM_MAX_PIECES=1), so with one node the burst queues behind itself
// and with three Temporal hands it to three pollers of the model's queue.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

const policy = `tenants:
  bench:
    models: [glm-4-test]
    users: {bench: [submitter]}
    auto_approve_max_requests: 1000000
`

func main() {
	burst := flag.Int("burst", 6, "batches submitted at once")
	items := flag.Int("items", 100, "requests per batch")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *burst, *items); err != nil {
		fmt.Fprintln(os.Stderr, "fleet bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, burst, items int) error {
	bin, err := devstack.BinDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fleet-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	stack, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(dir, "stack"), BinDir: bin, Buckets: []string{"bench"}})
	if err != nil {
		return err
	}
	defer stack.Stop()
	model := testmodel.New(testmodel.Options{Faults: testmodel.Faults{Latency: 20 * time.Millisecond}})
	if err := model.Start(); err != nil {
		return err
	}
	defer model.Close()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(policy), 0o644); err != nil {
		return err
	}
	// The workers accept only starts signed with this key, as behind a server.
	pub, priv, err := assertion.GenerateKey()
	if err != nil {
		return err
	}
	env := append(stack.Env("bench"), "AUTOGLM_LLM_BASE_URL="+model.URL(), "AUTOGLM_POLICY_FILE="+pol, "AUTOGLM_MODELS=glm-4-test",
		"AUTOGLM_LOG_LEVEL=warn", "AUTOGLM_MAX_PIECES=1", "AUTOGLM_CONCURRENCY=4",
		"AUTOGLM_ASSERTION_PUBLIC_KEYS="+assertion.EncodePublic(pub))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	exe := filepath.Join(dir, "autoglm")
	build := exec.CommandContext(ctx, "go", "build", "-o", exe, "./starter")
	build.Dir = filepath.Dir(bin)
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building autoglm: %v\n%s", err, out)
	}
	tc, err := clients(ctx)
	if err != nil {
		return err
	}
	defer tc.Temporal.Close()
	tc.Signer = assertion.NewSigner(priv)
	file := filepath.Join(dir, "batch.jsonl")
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	for i := range items {
		fmt.Fprintf(f, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"question %d"}]}}`+"\n", i, i)
	}
	f.Close()

	measure := func(nodes int) (time.Duration, error) {
		phase := time.Now()
		var procs []*exec.Cmd
		defer func() {
			for _, p := range procs {
				_ = p.Process.Signal(syscall.SIGTERM)
				_ = p.Wait()
			}
		}()
		for i := range nodes {
			cmd := exec.Command(exe, "worker")
			cmd.Env = append(os.Environ(), fmt.Sprintf("AUTOGLM_NODE=bench-%d-of-%d", i, nodes))
			logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d-of-%d.log", i, nodes)))
			if err != nil {
				return 0, err
			}
			defer logf.Close()
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			procs = append(procs, cmd)
		}
		// A warm-up task: every node is up and polling before the burst.
		if _, err := runOne(ctx, tc, file); err != nil {
			return 0, err
		}
		if err := waitPollers(ctx, tc, nodes, phase); err != nil {
			return 0, err
		}
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		var firstErr error
		for range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := runOne(ctx, tc, file)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, d)
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return 0, firstErr
		}
		slices.Sort(lat)
		return lat[len(lat)/2], nil
	}
	one, err := measure(1)
	if err != nil {
		return err
	}
	three, err := measure(3)
	if err != nil {
		return err
	}
	fmt.Printf("BENCH name=submit_to_running_3_nodes value=%d unit=ms baseline=%d ratio=%.2f\n",
		three.Milliseconds(), one.Milliseconds(), float64(three)/float64(one))
	return nil
}

// runOne submits a batch, waits for its end, and returns the time from
// its submission to when a node started its inference: the workflow's
// start to the Infer activity's start, as the history records them. (The
// RUNNING state is entered when inference is sent to the queue, before a
// node takes it, so it would not show the wait for a free node.)
func runOne(ctx context.Context, tc *taskclient.Client, file string) (time.Duration, error) {
	in, err := tc.Submit(ctx, taskclient.SubmitRequest{Tenant: "bench", Submitter: "bench", Model: "glm-4-test", File: file})
	if err != nil {
		return 0, err
	}
	if _, err := tc.Wait(ctx, in.ID); err != nil {
		return 0, err
	}
	iter := tc.Temporal.GetWorkflowHistory(ctx, task.WorkflowID(in.ID), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var submitted time.Time
	infer := map[int64]bool{}
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return 0, err
		}
		switch {
		case ev.GetWorkflowExecutionStartedEventAttributes() != nil:
			submitted = ev.GetEventTime().AsTime()
		case ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == "Infer":
			infer[ev.GetEventId()] = true
		case infer[ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId()]:
			return ev.GetEventTime().AsTime().Sub(submitted), nil
		}
	}
	return 0, fmt.Errorf("task %s has no inference in its history", in.ID)
}

// waitPollers waits until nodes workers have polled the model's queue
// since the phase began, so the burst finds every node ready.
func waitPollers(ctx context.Context, tc *taskclient.Client, nodes int, since time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		resp, err := tc.Temporal.DescribeTaskQueue(ctx, task.ModelQueue("glm-4-test"), enumspb.TASK_QUEUE_TYPE_ACTIVITY)
		if err != nil {
			return err
		}
		fresh := map[string]bool{}
		for _, p := range resp.GetPollers() {
			if p.GetLastAccessTime().AsTime().After(since) {
				fresh[p.GetIdentity()] = true
			}
		}
		if len(fresh) >= nodes {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d nodes poll %s", len(fresh), nodes, task.ModelQueue("glm-4-test"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func clients(ctx context.Context) (*taskclient.Client, error) {
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, err
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	opts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		return nil, err
	}
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, err
	}
	store, err := storage.Open(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	return &taskclient.Client{Temporal: tc, Store: store}, nil
}
