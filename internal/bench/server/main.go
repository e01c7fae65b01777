// Command server measures the front door: one-prompt tasks submitted and
// waited on through `autoglm server` (HTTP, the native API), against bare
// one-activity workflows on the same Temporal dev server in the same run.
// It prints BENCH lines as internal/bench does:
//
//	BENCH name=<name> value=<number> unit=<unit> baseline=<number> ratio=<value/baseline> goal=<number>
//
// The bare workflow makes the same call to the test model server as a
// task's inference, so the ratio is the cost of everything a task adds:
// the server, authorization, screening, dispatch, the bucket, the archive.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/worker"
)

const bareQueue = "bench-bare"

// cpuProfile, when set, is where the throughput run through the server
// writes its CPU profile: to see where the queueing's CPU goes.
var cpuProfile string

// timeline, when set, prints the last one-prompt task's and bare
// workflow's history events with their times, to see where the latency goes.
var timeline bool

func main() {
	sequential := flag.Int("sequential", 20, "one-prompt tasks run one after another for the latency figure")
	tasks := flag.Int("tasks", 1000, "one-prompt tasks for the throughput figure (0 skips it)")
	inflight := flag.Int("inflight", 100, "tasks in flight for the throughput figure")
	latency := flag.Duration("latency", 20*time.Millisecond, "the test model server's latency")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (server and worker) during the server's throughput run to this file")
	flag.BoolVar(&timeline, "timeline", false, "print the last task's and bare workflow's history events with their times")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *sequential, *tasks, *inflight, *latency); err != nil {
		fmt.Fprintln(os.Stderr, "bench server:", err)
		os.Exit(1)
	}
}

func report(name string, value float64, unit string, baseline, goal float64) {
	fmt.Printf("BENCH name=%s value=%.1f unit=%s baseline=%.1f ratio=%.3f goal=%g\n", name, value, unit, baseline, value/baseline, goal)
}

func run(ctx context.Context, sequential, tasks, inflight int, latency time.Duration) error {
	// The bench before this one in `make bench` leaves gigabytes to write
	// back; flushed during the run, they would slow whichever side syncs
	// more (a task's bucket writes and history) by the previous bench's
	// leftovers, not by its own cost.
	syscall.Sync()
	dir, err := os.MkdirTemp("", "autoglm-bench-server-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := devstack.BinDir()
	if err != nil {
		return err
	}
	stack, err := devstack.Start(ctx, devstack.Options{Dir: dir, BinDir: bin, Buckets: []string{"bench"}})
	if err != nil {
		return err
	}
	defer stack.Stop()
	model := testmodel.New(testmodel.Options{Faults: testmodel.Faults{Latency: latency}})
	if err := model.Start(); err != nil {
		return err
	}
	defer model.Close()

	key, entry, err := authz.NewAPIKey("bench", "bench", "bench")
	if err != nil {
		return err
	}
	policy := fmt.Sprintf(`tenants:
  bench:
    models: [glm-4-test]
    users: {bench: [submitter]}
    auto_approve_max_requests: 1000000
api_keys:
  - {user: bench, tenant: bench, sha256: %s}
`, entry.SHA256)
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		return err
	}
	_, priv, err := assertion.GenerateKey()
	if err != nil {
		return err
	}
	signer := assertion.NewSigner(priv)
	env := append(stack.Env("bench"), "AUTOGLM_LLM_BASE_URL="+model.URL(), "AUTOGLM_POLICY_FILE="+policyFile,
		"AUTOGLM_ASSERTION_PUBLIC_KEYS="+assertion.EncodePublic(signer.Public()), "AUTOGLM_NODE=bench",
		fmt.Sprintf("AUTOGLM_MAX_PIECES=%d", inflight), "AUTOGLM_LOG_LEVEL=warn")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	opts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		return err
	}
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		return err
	}
	defer tc.Close()
	store, err := storage.Open(ctx, cfg.S3)
	if err != nil {
		return err
	}

	// The task worker, in this process, as `autoglm worker` runs it.
	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() { workerDone <- worker.Run(wctx, cfg, log) }()
	defer func() { stopWorker(); <-workerDone }()

	// The bare workflow's worker: one activity, the same model call.
	chat := llm.New(llm.Config{BaseURL: model.URL(), MaxIdleConnsPerHost: inflight})
	bare := sdkworker.New(tc, bareQueue, sdkworker.Options{})
	bare.RegisterWorkflowWithOptions(bareWorkflow, workflow.RegisterOptions{Name: "BareWorkflow"})
	bare.RegisterActivityWithOptions(func(ctx context.Context, prompt string) (string, error) {
		body, _ := json.Marshal(map[string]any{"model": "glm-4-test", "messages": []map[string]string{{"role": "user", "content": prompt}}})
		_, err := chat.Chat(ctx, body)
		return "ok", err
	}, activityOptions)
	if err := bare.Start(); err != nil {
		return err
	}
	defer bare.Stop()

	src, err := authz.Load(policyFile)
	if err != nil {
		return err
	}
	srv := &server.Server{Tasks: &taskclient.Client{Temporal: tc, Store: store, Signer: signer}, Policy: src, TempDir: dir, Log: log}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	api := apiclient.New("http://"+ln.Addr().String(), key)
	api.HTTP.Transport = &http.Transport{MaxIdleConnsPerHost: inflight}

	var lastTask, lastBare atomic.Value // workflow IDs, for the history cost
	viaServer := func(i int) error {
		sub, err := api.Submit(ctx, taskclient.SubmitRequest{Model: "glm-4-test", Prompt: fmt.Sprintf("question number %d", i)}, nil)
		if err != nil {
			return err
		}
		lastTask.Store(task.WorkflowID(sub.ID))
		res, err := api.Wait(ctx, sub.ID)
		if err == nil && res.State != task.Completed {
			err = fmt.Errorf("task %s ended %s: %s", sub.ID, res.State, res.Reason)
		}
		return err
	}
	viaBare := func(i int) error {
		run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("bare-%d-%d", time.Now().UnixNano(), i), TaskQueue: bareQueue}, "BareWorkflow", fmt.Sprintf("question number %d", i))
		if err != nil {
			return err
		}
		lastBare.Store(run.GetID())
		return run.Get(ctx, nil)
	}
	// The same task, submitted and awaited with taskclient itself, as the
	// server does: what the server adds is the difference.
	direct := &taskclient.Client{Temporal: tc, Store: store, Signer: signer}
	viaDirect := func(i int) error {
		in, err := direct.Submit(ctx, taskclient.SubmitRequest{Tenant: "bench", Submitter: "bench", Model: "glm-4-test", Prompt: fmt.Sprintf("question number %d", i)})
		if err != nil {
			return err
		}
		res, err := direct.Wait(ctx, in.ID)
		if err == nil && res.State != task.Completed {
			err = fmt.Errorf("task %s ended %s: %s", in.ID, res.State, res.Reason)
		}
		return err
	}
	// Warm up both paths (connections, the worker's first poll, the node
	// record dispatch needs).
	if err := warmUp(ctx, viaServer, viaBare); err != nil {
		return err
	}

	// One of each in turn, so that the three medians see the same
	// background load on a shared machine.
	medians, err := interleavedMedians(sequential, viaServer, viaBare, viaDirect)
	if err != nil {
		return err
	}
	serverMedian, bareMedian, directMedian := medians[0], medians[1], medians[2]
	for _, w := range []struct {
		what string
		id   any
	}{{"a one-prompt task", lastTask.Load()}, {"a bare workflow", lastBare.Load()}} {
		if c, err := historyCost(ctx, tc, w.id.(string)); err == nil {
			fmt.Printf("bench server: %s's history: %s\n", w.what, c)
		}
		if timeline {
			printTimeline(ctx, tc, w.id.(string))
		}
	}
	report("server_prompt_latency", ms(serverMedian), "ms", ms(bareMedian), 1.3)
	report("server_prompt_latency_vs_taskclient", ms(serverMedian), "ms", ms(directMedian), 1.1)

	if tasks > 0 {
		stopProfile, err := startProfile(cpuProfile)
		if err != nil {
			return err
		}
		// The phases' times on stderr, to match with a CPU sampler's.
		phase := func(what string) {
			fmt.Fprintf(os.Stderr, "bench server: %s at %s\n", what, time.Now().UTC().Format(time.RFC3339Nano))
		}
		phase("throughput through the server starts")
		sRate, sFail := throughput(tasks, inflight, viaServer)
		stopProfile()
		phase("throughput of bare workflows starts")
		bRate, bFail := throughput(tasks, inflight, viaBare)
		phase("throughput through taskclient starts")
		dRate, _ := throughput(tasks/5, inflight, viaDirect)
		phase("throughput runs end")
		report(fmt.Sprintf("server_%d_prompts_%d_in_flight", tasks, inflight), sRate, "tasks/s", bRate, 0.65)
		report(fmt.Sprintf("server_%d_prompts_%d_in_flight_vs_taskclient", tasks, inflight), sRate, "tasks/s", dRate, 0.9)
		fmt.Printf("bench server: %d of %d tasks through the server failed, %d of %d bare workflows failed\n", sFail, tasks, bFail, tasks)
		if sFail+bFail > 0 {
			return fmt.Errorf("%d failures", sFail+bFail)
		}
	}
	return nil
}

var activityOptions = activityRegisterOptions()

func bareWorkflow(ctx workflow.Context, prompt string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var out string
	err := workflow.ExecuteActivity(ctx, "BareChat", prompt).Get(ctx, &out)
	return out, err
}

func warmUp(ctx context.Context, fns ...func(int) error) error {
	for _, f := range fns {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			err := f(-1)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("warming up: %w", err)
			}
			time.Sleep(time.Second)
		}
	}
	return nil
}

// interleavedMedians runs each of fs n times, one call at a time, taking
// the fs in turn, and returns the median time of each.
func interleavedMedians(n int, fs ...func(int) error) ([]time.Duration, error) {
	times := make([][]time.Duration, len(fs))
	for i := range n {
		for j, f := range fs {
			start := time.Now()
			if err := f(i); err != nil {
				return nil, err
			}
			times[j] = append(times[j], time.Since(start))
		}
	}
	medians := make([]time.Duration, len(fs))
	for j := range fs {
		slices.Sort(times[j])
		medians[j] = times[j][len(times[j])/2]
	}
	return medians, nil
}

// throughput runs f n times, inflight at once, and returns the rate and
// the number of failures.
func throughput(n, inflight int, f func(int) error) (float64, int) {
	var failed atomic.Int32
	work := make(chan int)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := f(i); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "bench server: first failure:", err)
	}
	return float64(n) / time.Since(start).Seconds(), int(failed.Load())
}

// historyCost counts what one workflow cost the Temporal server: its
// history events, workflow tasks (each a round trip to a worker) and
// activity tasks (each another).
func historyCost(ctx context.Context, tc client.Client, id string) (string, error) {
	var events, wfts, acts, markers int
	it := tc.GetWorkflowHistory(ctx, id, "", false, 0)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return "", err
		}
		events++
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			wfts++
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			acts++
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			markers++
		}
	}
	return fmt.Sprintf("%d events, %d workflow tasks, %d activity tasks, %d markers", events, wfts, acts, markers), nil
}

func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func printTimeline(ctx context.Context, tc client.Client, id string) {
	it := tc.GetWorkflowHistory(ctx, id, "", false, 0)
	var first time.Time
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return
		}
		at := e.GetEventTime().AsTime()
		if first.IsZero() {
			first = at
		}
		fmt.Printf("  %7.1f ms  %s\n", ms(at.Sub(first)), e.GetEventType())
	}
}
