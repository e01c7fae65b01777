// Command bench measures the batch engine through the whole stack and
// prints one BENCH line per figure, each against a baseline measured in the
// same run (the machine is shared and noisy, so only ratios compare across
// runs):
//
//	BENCH name=<name> value=<number> unit=<unit> baseline=<number> ratio=<value/baseline> goal=<number>
//
// It starts the real Temporal dev server and MinIO (devstack), the test
// model server, and the worker, and stops them all at the end.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// benchPolicy approves any batch by rule, so that approval waits are not
// part of the figures.
const benchPolicy = `tenants:
  bench:
    models: [glm-4-test]
    users: {bench: [submitter]}
    auto_approve_max_requests: 1000000
    quotas: {max_batch_requests: 1000000}
`

func main() {
	items := flag.Int("items", 10000, "requests in the throughput batch (0 skips the throughput and overhead figures)")
	inflight := flag.Int("inflight", 32, "requests in flight")
	latency := flag.Duration("latency", 20*time.Millisecond, "the test model server's latency")
	rssItems := flag.Int("rss-items", 100000, "requests in the memory batch (0 skips it)")
	flag.StringVar(&profileDir, "heap-profiles", "", "a folder where the memory batches' workers keep a heap profile of their peak (heap-<items>.pprof)")
	flag.StringVar(&cpuProfileDir, "cpu-profiles", "", "a folder for CPU profiles of the overhead figure: the worker's (cpu-worker.pprof) and the plain loop's (cpu-plain.pprof)")
	flag.BoolVar(&overheadOnly, "overhead-only", false, "measure only the engine's overhead figures")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *items, *inflight, *latency, *rssItems); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// profileDir, if set, is where peakRSS's workers write heap profiles.
var profileDir string

// cpuProfileDir, if set, is where engineOverhead writes CPU profiles.
var cpuProfileDir string

var overheadOnly bool

type bench struct {
	dir   string
	stack *devstack.Stack
	model *testmodel.Server
	tc    *taskclient.Client
	env   []string
}

func run(ctx context.Context, items, inflight int, latency time.Duration, rssItems int) error {
	b, err := setUp(ctx, latency)
	if err != nil {
		return err
	}
	defer b.tearDown()

	if overheadOnly {
		return b.engineOverhead(ctx, 20000, 64, 5*time.Millisecond)
	}
	if items > 0 {
		if err := b.throughput(ctx, items, inflight); err != nil {
			return err
		}
	}
	if rssItems > 0 {
		return b.memory(ctx, rssItems, latency)
	}
	return nil
}

// throughput: the same client and concurrency, first in a plain loop,
// then through submit -> workflow -> worker -> COMPLETED.
func (b *bench) throughput(ctx context.Context, items, inflight int) error {
	file, err := b.batchFile("throughput", items)
	if err != nil {
		return err
	}
	base := plainLoop(ctx, b.model.URL(), items, inflight)
	st, elapsed, err := b.throughWorkflow(ctx, file, inflight)
	if err != nil {
		return err
	}
	// Throughput is the rate of the inference stage (RUNNING to ARCHIVING
	// in the audit trail); end to end adds the upload, screening, dispatch
	// and archive, a fixed cost that shrinks as batches grow.
	running, archiving := st.EnteredAt(task.Running), st.EnteredAt(task.Archiving)
	report("batch_throughput", float64(items)/archiving.Sub(running).Seconds(), "req/s", base, 0.95)
	report("batch_end_to_end", float64(items)/elapsed.Seconds(), "req/s", base, 0)

	// The engine's own overhead where the model is fast: the same figure
	// at 20,000 items, 64 in flight, the model at 5 ms.
	return b.engineOverhead(ctx, 20000, 64, 5*time.Millisecond)
}

// memory reports the worker's peak RSS and the history's length for a
// large batch against one a hundredth its size, each on a fresh worker.
func (b *bench) memory(ctx context.Context, rssItems int, latency time.Duration) error {
	b.model.SetFaults(testmodel.Faults{Latency: latency})
	small, smallID, err := b.peakRSS(ctx, rssItems/100, 64)
	if err != nil {
		return err
	}
	large, largeID, err := b.peakRSS(ctx, rssItems, 64)
	if err != nil {
		return err
	}
	// Goal: memory flat in the batch size, at most 1.3 times the
	// small batch's.
	report(fmt.Sprintf("worker_peak_rss_%dk_items", rssItems/1000), large, "MiB", small, 1.3)
	// History: a fixed number of events whatever the batch's size or
	// duration (progress travels in heartbeats, not signals).
	smallEvents, err := b.historyEvents(ctx, smallID)
	if err != nil {
		return err
	}
	largeEvents, err := b.historyEvents(ctx, largeID)
	if err != nil {
		return err
	}
	report(fmt.Sprintf("history_events_%dk_items", rssItems/1000), largeEvents, "events", smallEvents, 200)
	return nil
}

// engineOverhead reports the engine's own rate against the plain loop,
// both on a model server of their own at latency. The engine's window is
// the Infer activity's start (from the history) to its last sealed part
// (that checkpoint record's time): reading, asking, writing answers in
// order, sealing parts and checkpoints, which the plain loop does not do.
// The merge of the parts into output.jsonl that follows is a stage of its
// own, proportional to the output's bytes, not to the requests: it is
// reported apart (engine_merge), and the whole stage as the audit trail
// shows it (RUNNING to ARCHIVING, which adds the merge, the final
// checkpoint and a workflow task) as inference_stage.
func (b *bench) engineOverhead(ctx context.Context, items, inflight int, latency time.Duration) error {
	fast := testmodel.New(testmodel.Options{Faults: testmodel.Faults{Latency: latency}})
	if err := fast.Start(); err != nil {
		return err
	}
	defer fast.Close()
	file, err := b.batchFile("overhead", items)
	if err != nil {
		return err
	}
	var env []string
	stopCPU := func() {}
	if cpuProfileDir != "" {
		env = append(env, "AUTOGLM_CPU_PROFILE="+filepath.Join(cpuProfileDir, "cpu-worker.pprof"))
		f, err := os.Create(filepath.Join(cpuProfileDir, "cpu-plain.pprof"))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
	}
	base := plainLoop(ctx, fast.URL(), items, inflight)
	stopCPU()
	w, err := b.startWorker(ctx, inflight, append(env, "AUTOGLM_LLM_BASE_URL="+fast.URL())...)
	if err != nil {
		return err
	}
	defer w.stop()
	st, id, err := b.runTask(ctx, file)
	if err != nil {
		return err
	}
	started, _, err := b.inferWindow(ctx, id)
	if err != nil {
		return err
	}
	lastSeal, final, err := b.lastRecords(ctx, id)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%dk_%d_inflight_%s", items/1000, inflight, latency)
	report("engine_overhead_"+name, float64(items)/lastSeal.Sub(started).Seconds(), "req/s", base, 0.95)
	// The merge against the time the plain loop takes for the same items:
	// the share of the stage that is not the engine's.
	report("engine_merge_"+name, float64(final.Sub(lastSeal).Milliseconds()), "ms", 1000*float64(items)/base, 0)
	running, archiving := st.EnteredAt(task.Running), st.EnteredAt(task.Archiving)
	report("inference_stage_"+name, float64(items)/archiving.Sub(running).Seconds(), "req/s", base, 0)
	return nil
}

// inferWindow is when the task's Infer activity started and completed,
// from its workflow history.
func (b *bench) inferWindow(ctx context.Context, id string) (started, completed time.Time, err error) {
	var scheduled int64
	it := b.tc.Temporal.GetWorkflowHistory(ctx, task.WorkflowID(id), "", false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return started, completed, err
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
		return started, completed, fmt.Errorf("task %s: no completed Infer activity in its history", id)
	}
	return started, completed, nil
}

// lastRecords are the times of a batch's last two checkpoint records: the
// one after its last sealed part, and the final one, after the merge.
func (b *bench) lastRecords(ctx context.Context, id string) (lastSeal, final time.Time, err error) {
	infos, err := b.tc.Store.List(ctx, storage.TaskPrefix(storage.Checkpoint, "bench", id)+"checkpoints/")
	if err != nil {
		return lastSeal, final, err
	}
	var keys []string
	for _, in := range infos {
		if strings.HasSuffix(in.Key, "/metadata.json") {
			keys = append(keys, in.Key)
		}
	}
	sort.Strings(keys)
	if len(keys) < 2 {
		return lastSeal, final, fmt.Errorf("task %s: %d checkpoint record(s), want at least 2", id, len(keys))
	}
	read := func(key string) (time.Time, error) {
		rc, _, err := b.tc.Store.Get(ctx, key)
		if err != nil {
			return time.Time{}, err
		}
		defer rc.Close()
		var rec struct {
			Time time.Time `json:"time"`
		}
		return rec.Time, json.NewDecoder(rc).Decode(&rec)
	}
	if lastSeal, err = read(keys[len(keys)-2]); err != nil {
		return lastSeal, final, err
	}
	final, err = read(keys[len(keys)-1])
	return lastSeal, final, err
}

// historyEvents counts the events in a task's workflow history.
func (b *bench) historyEvents(ctx context.Context, id string) (float64, error) {
	n := 0
	it := b.tc.Temporal.GetWorkflowHistory(ctx, task.WorkflowID(id), "", false, 0)
	for it.HasNext() {
		if _, err := it.Next(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n), nil
}

// report prints one BENCH line; a goal of 0 means the figure has none.
func report(name string, value float64, unit string, baseline, goal float64) {
	line := fmt.Sprintf("BENCH name=%s value=%.1f unit=%s baseline=%.1f ratio=%.3f", name, value, unit, baseline, value/baseline)
	if goal > 0 {
		line += fmt.Sprintf(" goal=%g", goal)
	}
	fmt.Println(line)
}

func setUp(ctx context.Context, latency time.Duration) (*bench, error) {
	bin, err := devstack.BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "autoglm-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{dir: dir}
	if b.stack, err = devstack.Start(ctx, devstack.Options{Dir: dir, BinDir: bin, Buckets: []string{"bench"}}); err != nil {
		return nil, err
	}
	b.model = testmodel.New(testmodel.Options{Faults: testmodel.Faults{Latency: latency}})
	if err := b.model.Start(); err != nil {
		b.tearDown()
		return nil, err
	}
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(benchPolicy), 0o644); err != nil {
		b.tearDown()
		return nil, err
	}
	// The workers run only starts signed by a key they trust.
	_, priv, err := assertion.GenerateKey()
	if err != nil {
		b.tearDown()
		return nil, err
	}
	signer := assertion.NewSigner(priv)
	b.env = append(b.stack.Env("bench"), "AUTOGLM_LLM_BASE_URL="+b.model.URL(), "AUTOGLM_POLICY_FILE="+policy,
		"AUTOGLM_ASSERTION_PUBLIC_KEYS="+assertion.EncodePublic(signer.Public()),
		"AUTOGLM_LOG_LEVEL=warn", "AUTOGLM_CHECKPOINT_INTERVAL=10s")
	for _, kv := range b.env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	cfg, err := config.FromEnv()
	if err != nil {
		b.tearDown()
		return nil, err
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	opts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		b.tearDown()
		return nil, err
	}
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		b.tearDown()
		return nil, err
	}
	store, err := storage.Open(ctx, cfg.S3)
	if err != nil {
		b.tearDown()
		return nil, err
	}
	b.tc = &taskclient.Client{Temporal: tc, Store: store, Signer: signer}
	return b, nil
}

func (b *bench) tearDown() {
	if b.tc != nil {
		b.tc.Temporal.Close()
	}
	if b.model != nil {
		b.model.Close()
	}
	if b.stack != nil {
		b.stack.Stop()
	}
	os.RemoveAll(b.dir)
}

func (b *bench) batchFile(name string, n int) (string, error) {
	path := filepath.Join(b.dir, name+".jsonl")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	for i := range n {
		fmt.Fprintf(f, `{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"question number %d"}]}}`+"\n", i, i)
	}
	return path, f.Close()
}

// plainLoop is the baseline: the same client, the same concurrency, no
// Temporal, no bucket, no checkpoints. It returns requests per second.
func plainLoop(ctx context.Context, url string, n, inflight int) float64 {
	c := llm.New(llm.Config{BaseURL: url, MaxIdleConnsPerHost: inflight})
	work := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body, _ := json.Marshal(map[string]any{"model": "glm-4-test", "messages": []map[string]string{{"role": "user", "content": "question number " + strconv.Itoa(i)}}})
				_, _ = c.Chat(ctx, body)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// throughWorkflow runs the file as a task on a worker process and returns
// its final status and the time from submit to COMPLETED.
func (b *bench) throughWorkflow(ctx context.Context, file string, inflight int) (task.Status, time.Duration, error) {
	w, err := b.startWorker(ctx, inflight)
	if err != nil {
		return task.Status{}, 0, err
	}
	defer w.stop()
	start := time.Now()
	st, _, err := b.runTask(ctx, file)
	return st, time.Since(start), err
}

func (b *bench) runTask(ctx context.Context, file string) (task.Status, string, error) {
	in, err := b.tc.Submit(ctx, taskclient.SubmitRequest{Tenant: "bench", Submitter: "bench", File: file})
	if err != nil {
		return task.Status{}, "", err
	}
	res, err := b.tc.Wait(ctx, in.ID)
	if err != nil {
		return task.Status{}, in.ID, err
	}
	if res.State != task.Completed {
		return task.Status{}, in.ID, fmt.Errorf("task %s ended %s: %s", in.ID, res.State, res.Reason)
	}
	st, err := b.tc.Status(ctx, in.ID)
	return st, in.ID, err
}

// peakRSS runs an n-item batch on a fresh worker process and returns the
// process's peak resident set (VmHWM) in MiB, and the task's ID.
func (b *bench) peakRSS(ctx context.Context, n, inflight int) (float64, string, error) {
	file, err := b.batchFile(fmt.Sprintf("rss-%d", n), n)
	if err != nil {
		return 0, "", err
	}
	var env []string
	if profileDir != "" {
		env = append(env, "AUTOGLM_HEAP_PROFILE="+filepath.Join(profileDir, fmt.Sprintf("heap-%d.pprof", n)))
	}
	w, err := b.startWorker(ctx, inflight, env...)
	if err != nil {
		return 0, "", err
	}
	defer w.stop()
	_, id, err := b.runTask(ctx, file)
	if err != nil {
		return 0, id, err
	}
	mib, err := vmHWM(w.cmd.Process.Pid)
	return mib, id, err
}

type workerProc struct{ cmd *exec.Cmd }

// startWorker runs `autoglm worker` as its own process, built from this
// checkout, so its memory can be read apart from the bench's.
func (b *bench) startWorker(ctx context.Context, inflight int, env ...string) (*workerProc, error) {
	exe := filepath.Join(b.dir, "autoglm")
	if _, err := os.Stat(exe); err != nil {
		build := exec.CommandContext(ctx, "go", "build", "-o", exe, "./starter")
		build.Dir = moduleRoot()
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building autoglm: %v\n%s", err, out)
		}
	}
	cmd := exec.Command(exe, "worker")
	cmd.Env = append(os.Environ(), "AUTOGLM_CONCURRENCY="+strconv.Itoa(inflight), "AUTOGLM_NODE=bench")
	cmd.Env = append(cmd.Env, env...)
	logf, err := os.Create(filepath.Join(b.dir, "worker.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &workerProc{cmd: cmd}, nil
}

func (w *workerProc) stop() {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
	}
}

func vmHWM(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func moduleRoot() string {
	bin, err := devstack.BinDir()
	if err != nil {
		return "."
	}
	return filepath.Dir(bin)
}
