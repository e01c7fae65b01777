// Command clusterbench measures the product on the real cluster
// (internal/cluster) and prints BENCH lines as internal/bench does, each
// against a baseline measured in the same run:
//
//   - batch throughput: a batch on one node of the cluster against the
//     same batch, node settings and test model server on the Temporal dev
//     server (goal 0.95): what PostgreSQL and five server processes cost;
//   - one-prompt tasks through the cluster's API server against bare
//     one-activity workflows making the same model call on the same
//     cluster.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/cluster"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

const (
	model     = "glm-4-test"
	bareQueue = "bench-bare"
)

func main() {
	items := flag.Int("items", 10000, "requests in the throughput batch (0 skips it)")
	inflight := flag.Int("inflight", 32, "requests in flight in the batch (AUTOGLM_CONCURRENCY)")
	tasks := flag.Int("tasks", 1000, "one-prompt tasks (0 skips them)")
	tasksInflight := flag.Int("tasks-inflight", 100, "one-prompt tasks in flight")
	latency := flag.Duration("latency", 20*time.Millisecond, "the test model server's latency")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *items, *inflight, *tasks, *tasksInflight, *latency); err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		os.Exit(1)
	}
}

func report(name string, value float64, unit string, baseline, goal float64) {
	line := fmt.Sprintf("BENCH name=%s value=%.1f unit=%s baseline=%.1f ratio=%.3f", name, value, unit, baseline, value/baseline)
	if goal > 0 {
		line += fmt.Sprintf(" goal=%g", goal)
	}
	fmt.Println(line)
}

func run(ctx context.Context, items, inflight, tasks, tasksInflight int, latency time.Duration) error {
	bin, err := devstack.BinDir()
	if err != nil {
		return err
	}
	root := filepath.Dir(bin)
	dir, err := os.MkdirTemp("", "autoglm-clusterbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cli := filepath.Join(dir, "autoglm")
	build := exec.CommandContext(ctx, "go", "build", "-o", cli, "./starter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the CLI: %v\n%s", err, out)
	}
	m := testmodel.New(testmodel.Options{Models: cluster.Models(), Faults: testmodel.Faults{Latency: latency}})
	if err := m.Start(); err != nil {
		return err
	}
	defer m.Close()
	cl, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Root: root, BinDir: bin, CLI: cli, ModelURL: m.URL(), NoNodes: true})
	if err != nil {
		return err
	}
	defer cl.Stop()
	nodeEnv := []string{fmt.Sprintf("AUTOGLM_CONCURRENCY=%d", inflight), "AUTOGLM_CHECKPOINT_INTERVAL=10s"}
	if _, err := cl.StartNode(ctx, cluster.Nodes[0], cli, nodeEnv...); err != nil {
		return err
	}
	on, err := open(ctx, cl.Env(), cl.AssertionKeyFile())
	if err != nil {
		return err
	}
	defer on.Temporal.Close()

	if items > 0 {
		file, err := batchFile(dir, items)
		if err != nil {
			return err
		}
		clusterRate, err := batchRate(ctx, on, file, items)
		if err != nil {
			return fmt.Errorf("the batch on the cluster: %w", err)
		}
		devRate, err := onDevServer(ctx, dir, bin, cli, m.URL(), cl, nodeEnv, file, items)
		if err != nil {
			return fmt.Errorf("the batch on the dev server: %w", err)
		}
		report(fmt.Sprintf("cluster_batch_%d_items_%d_in_flight", items, inflight), clusterRate, "items/s", devRate, 0.95)
	}
	if tasks > 0 {
		return prompts(ctx, on, cl, m.URL(), tasks, tasksInflight)
	}
	return nil
}

// open dials Temporal and the bucket named by env, signing with the
// cluster's key.
func open(ctx context.Context, env []string, keyFile string) (*taskclient.Client, error) {
	get := func(k string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	tc, err := client.DialContext(ctx, client.Options{HostPort: get("TEMPORAL_ADDRESS"), Namespace: get("TEMPORAL_NAMESPACE"), Logger: devstack.QuietLogger{}})
	if err != nil {
		return nil, err
	}
	store, err := storage.Open(ctx, storage.Config{Endpoint: get("AUTOGLM_S3_ENDPOINT"), Bucket: get("AUTOGLM_S3_BUCKET"), AccessKey: get("AUTOGLM_S3_ACCESS_KEY"), SecretKey: get("AUTOGLM_S3_SECRET_KEY"), Insecure: true, StatBeforeReplace: get("AUTOGLM_S3_STAT_BEFORE_REPLACE") == "true"})
	if err != nil {
		tc.Close()
		return nil, err
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		tc.Close()
		return nil, err
	}
	k, err := assertion.ParsePrivateKey(strings.TrimSpace(string(b)))
	if err != nil {
		tc.Close()
		return nil, err
	}
	return &taskclient.Client{Temporal: tc, Store: store, Signer: assertion.NewSigner(k)}, nil
}

func batchFile(dir string, n int) (string, error) {
	path := filepath.Join(dir, "batch.jsonl")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	for i := range n {
		fmt.Fprintf(f, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"%s","messages":[{"role":"user","content":"question number %d"}]}}`+"\n", i, model, i)
	}
	return path, f.Close()
}

// batchRate runs the batch (approved by bob) and returns items per second
// over its inference: the Infer activity's start to its completion.
func batchRate(ctx context.Context, tc *taskclient.Client, file string, items int) (float64, error) {
	in, err := tc.Submit(ctx, taskclient.SubmitRequest{Tenant: "demo", Submitter: "alice", File: file})
	if err != nil {
		return 0, err
	}
	for {
		st, err := tc.Status(ctx, in.ID)
		if err == nil && st.State == task.AwaitingApproval {
			break
		}
		if err == nil && st.State.Final() {
			return 0, fmt.Errorf("task %s ended %s before its approval", in.ID, st.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := tc.Decide(ctx, in.ID, task.UpdateApprove, task.DecisionRequest{Actor: "bob"}); err != nil {
		return 0, err
	}
	res, err := tc.Wait(ctx, in.ID)
	if err != nil {
		return 0, err
	}
	if res.State != task.Completed || res.Counts.Completed != items {
		return 0, fmt.Errorf("task %s ended %s with %+v", in.ID, res.State, res.Counts)
	}
	var scheduled int64
	var started, completed time.Time
	it := tc.Temporal.GetWorkflowHistory(ctx, task.WorkflowID(in.ID), "", false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return 0, err
		}
		switch {
		case ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == "Infer":
			scheduled = ev.GetEventId()
		case scheduled != 0 && ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId() == scheduled:
			started = ev.GetEventTime().AsTime()
		case scheduled != 0 && ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId() == scheduled:
			completed = ev.GetEventTime().AsTime()
		}
	}
	if started.IsZero() || completed.IsZero() {
		return 0, fmt.Errorf("task %s: no completed Infer activity in its history", in.ID)
	}
	return float64(items) / completed.Sub(started).Seconds(), nil
}

// onDevServer runs the same batch on the Temporal dev server (devstack)
// with one worker of the same binary and settings, the cluster's policy
// and keys, the same model server.
func onDevServer(ctx context.Context, dir, bin, cli, modelURL string, cl *cluster.Cluster, nodeEnv []string, file string, items int) (float64, error) {
	st, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(dir, "dev"), BinDir: bin, Buckets: []string{cluster.Bucket}})
	if err != nil {
		return 0, err
	}
	defer st.Stop()
	env := st.Env(cluster.Bucket)
	for _, kv := range cl.Env() {
		if strings.HasPrefix(kv, "AUTOGLM_POLICY_FILE=") || strings.HasPrefix(kv, "AUTOGLM_ASSERTION_PUBLIC_KEYS=") {
			env = append(env, kv)
		}
	}
	env = append(env, "AUTOGLM_LLM_BASE_URL="+modelURL, "AUTOGLM_NODE=gpu-0", "AUTOGLM_MODELS="+model, "AUTOGLM_LOG_LEVEL=warn")
	p, err := devstack.StartProcess(devstack.ProcessOptions{Name: "autoglm worker (dev server)", Bin: cli, Args: []string{"worker"},
		Env: append(env, nodeEnv...), LogPath: filepath.Join(dir, "dev-worker.log")})
	if err != nil {
		return 0, err
	}
	defer p.Stop(30 * time.Second)
	tc, err := open(ctx, env, cl.AssertionKeyFile())
	if err != nil {
		return 0, err
	}
	defer tc.Temporal.Close()
	// Submit refuses a model no live node serves: wait for the worker.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := tc.WaitServed(wctx, model); err != nil {
		return 0, fmt.Errorf("the dev server's worker: %w\n%s", err, devstack.Tail(p.LogPath, 20))
	}
	return batchRate(ctx, tc, file, items)
}

// prompts: n one-prompt tasks through the cluster's API server, inflight
// at once, against bare one-activity workflows on the same cluster making
// the same model call.
func prompts(ctx context.Context, tc *taskclient.Client, cl *cluster.Cluster, modelURL string, n, inflight int) error {
	chat := llm.New(llm.Config{BaseURL: modelURL, MaxIdleConnsPerHost: inflight})
	bare := sdkworker.New(tc.Temporal, bareQueue, sdkworker.Options{})
	bare.RegisterWorkflowWithOptions(bareWorkflow, workflow.RegisterOptions{Name: "BareWorkflow"})
	bare.RegisterActivityWithOptions(func(ctx context.Context, prompt string) (string, error) {
		body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": prompt}}})
		_, err := chat.Chat(ctx, body)
		return "ok", err
	}, activity.RegisterOptions{Name: "BareChat"})
	if err := bare.Start(); err != nil {
		return err
	}
	defer bare.Stop()
	api := apiclient.New(cl.ServerURL, cl.Keys["alice"])
	viaServer := func(i int) error {
		sub, err := api.Submit(ctx, taskclient.SubmitRequest{Tenant: "demo", Model: model, Prompt: fmt.Sprintf("question number %d", i)}, nil)
		if err != nil {
			return err
		}
		res, err := api.Wait(ctx, sub.ID)
		if err == nil && res.State != task.Completed {
			err = fmt.Errorf("task %s ended %s: %s", sub.ID, res.State, res.Reason)
		}
		return err
	}
	viaBare := func(i int) error {
		run, err := tc.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("bare-%d-%d", time.Now().UnixNano(), i), TaskQueue: bareQueue}, "BareWorkflow", fmt.Sprintf("question number %d", i))
		if err != nil {
			return err
		}
		return run.Get(ctx, nil)
	}
	for _, f := range []func(int) error{viaServer, viaBare} {
		if err := f(-1); err != nil {
			return fmt.Errorf("warming up: %w", err)
		}
	}
	sRate, sFail := throughput(n, inflight, viaServer)
	bRate, bFail := throughput(n, inflight, viaBare)
	report(fmt.Sprintf("cluster_%d_prompts_%d_in_flight", n, inflight), sRate, "tasks/s", bRate, 0)
	if sFail+bFail > 0 {
		return fmt.Errorf("%d of %d tasks and %d of %d bare workflows failed", sFail, n, bFail, n)
	}
	return nil
}

func bareWorkflow(ctx workflow.Context, prompt string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var out string
	err := workflow.ExecuteActivity(ctx, "BareChat", prompt).Get(ctx, &out)
	return out, err
}

// throughput runs f n times, inflight at once, and returns the rate and
// the number of failures.
func throughput(n, inflight int, f func(int) error) (float64, int) {
	var failed atomic.Int32
	var firstErr atomic.Value
	work := make(chan int)
	var wg sync.WaitGroup
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
		fmt.Fprintln(os.Stderr, "clusterbench: first failure:", err)
	}
	return float64(n) / time.Since(start).Seconds(), int(failed.Load())
}
