// Package cluster tests the product on a real Temporal cluster
// (internal/cluster): PostgreSQL 15, Temporal server v1.29.1 as five
// processes (frontend, matching, worker, two history processes), versitygw,
// `autoglm setup`, the API server and three worker nodes, each a process
// stopped by its PID. The faults are the cluster's own: a history process
// killed, the frontend killed and started again, PostgreSQL restarted,
// the matching service killed. The model server is the one stand-in
// (internal/llm/testmodel, served from this test process).
//
// `make test-cluster` runs them; `make test` leaves them out.
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/cluster"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

const (
	tenant = "demo" // the default policy's tenant; bob reviews
	model  = "glm-4-test"
)

var suite struct {
	*testenv.Env // Dir, Root, Bin, CLI, Temporal, Store, Signer: the cluster's
	cl           *cluster.Cluster
	tasks        *taskclient.Client
	started      time.Duration // from cluster.Start to a cluster that answers
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) (code int) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("cluster: skipped in -short mode: these tests start PostgreSQL, five Temporal processes, versitygw, the API server and worker nodes")
		return 0
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "autoglm-cluster-")
	if err != nil {
		return fail(err)
	}
	defer func() {
		if code == 0 {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintln(os.Stderr, "cluster: the cluster's data and logs are kept in", dir)
		}
	}()
	bin, err := devstack.BinDir()
	if err != nil {
		return fail(err)
	}
	e := &testenv.Env{Ctx: ctx, Dir: dir, Bin: bin, Root: filepath.Dir(bin), CLI: filepath.Join(dir, "autoglm"), Bucket: cluster.Bucket}
	if err := build(ctx, e.Root, e.CLI); err != nil {
		return fail(err)
	}
	start := time.Now()
	cl, err := cluster.Start(ctx, cluster.Options{
		Dir: filepath.Join(dir, "cluster"), Root: e.Root, BinDir: bin, CLI: e.CLI,
		ModelLatency: 20 * time.Millisecond,
		// Checkpoints every few seconds, so that Prometheus sees their age.
		NodeEnv: []string{"AUTOGLM_CHECKPOINT_INTERVAL=5s"},
	})
	if err != nil {
		return fail(fmt.Errorf("starting the cluster: %w", err))
	}
	suite.started = time.Since(start)
	fmt.Printf("cluster: the cluster answers %.1f s after the start (PostgreSQL, 5 Temporal processes, versitygw, setup, API server, 3 nodes)\n", suite.started.Seconds())
	defer func() {
		pids := cl.PIDs()
		if err := cl.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: stopping the cluster: %v\n", err)
			code = 1
		}
		// Every process the cluster started is gone: signal 0 probes.
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				fmt.Fprintf(os.Stderr, "cluster: process %d still runs after Stop\n", pid)
				code = 1
			}
		}
		fmt.Printf("cluster: %d processes stopped by PID\n", len(pids))
	}()
	suite.cl = cl
	for _, kv := range cl.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	if err := dial(ctx, e); err != nil {
		return fail(err)
	}
	defer e.Temporal.Close()
	suite.Env = e
	suite.tasks = &taskclient.Client{Temporal: e.Temporal, Store: e.Store, Signer: e.Signer}

	done := make(chan int, 1)
	go func() { done <- m.Run() }()
	select {
	case code = <-done:
		return code
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "cluster: interrupted; stopping the cluster")
		return 130
	}
}

func build(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./starter")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the CLI: %v\n%s", err, b)
	}
	return nil
}

// dial opens the Temporal client and the bucket as the break-glass path
// does, and signs with the key the nodes trust.
func dial(ctx context.Context, e *testenv.Env) error {
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	topts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		return err
	}
	if e.Temporal, err = client.DialContext(ctx, topts); err != nil {
		return fmt.Errorf("connecting to Temporal: %w", err)
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	if e.Store, err = storage.Open(ctx, cfg.S3); err != nil {
		return fmt.Errorf("opening the bucket: %w", err)
	}
	b, err := os.ReadFile(suite.cl.AssertionKeyFile())
	if err != nil {
		return err
	}
	k, err := assertion.ParsePrivateKey(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	e.Signer = assertion.NewSigner(k)
	return nil
}

// input is a batch file of n requests.
type input struct {
	path string
	ids  []string
}

func writeBatch(t *testing.T, prefix string, n int) input {
	t.Helper()
	in := input{path: filepath.Join(t.TempDir(), prefix+".jsonl")}
	var buf bytes.Buffer
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s-%05d", prefix, i)
		body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "Question " + id}}})
		line, _ := json.Marshal(batch.Request{CustomID: id, Method: "POST", URL: batch.ChatCompletionsURL, Body: body})
		buf.Write(append(line, '\n'))
		in.ids = append(in.ids, id)
	}
	if err := os.WriteFile(in.path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return in
}

// submitApproved submits the batch as alice and has bob approve it.
func submitApproved(t *testing.T, ctx context.Context, prefix string, in input) string {
	t.Helper()
	id := prefix + "-" + testenv.RandHex(4)
	if _, err := suite.tasks.Submit(ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", File: in.path}); err != nil {
		t.Fatalf("submitting %s: %v", id, err)
	}
	testenv.WaitState(t, ctx, suite.tasks, id, task.AwaitingApproval)
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: "bob"}); err != nil {
		t.Fatalf("bob's approval of %s: %v", id, err)
	}
	return id
}

// waitDone waits until the status shows at least n answered, and fails
// if the task got past RUNNING first: the fault must meet a running batch.
func waitDone(t *testing.T, ctx context.Context, id string, n int) task.Status {
	t.Helper()
	var st task.Status
	testenv.Eventually(t, ctx, fmt.Sprintf("task %s to pass %d answered", id, n), 100*time.Millisecond, func() (bool, error) {
		var err error
		if st, err = suite.tasks.Status(ctx, id); err != nil {
			return false, err
		}
		if st.State.Final() || st.State == task.Archiving {
			t.Fatalf("task %s is %s before %d were answered: the batch ran too fast", id, st.State, n)
		}
		return st.Progress.Done() >= n, nil
	})
	return st
}

// exact waits for the task to complete and checks output.jsonl holds
// every input line exactly once, in input order, and errors.jsonl none.
// It returns the count of output lines and of distinct custom_ids.
func exact(t *testing.T, ctx context.Context, id string, in input) (lines, unique int) {
	t.Helper()
	res, err := suite.tasks.Wait(ctx, id)
	if err != nil {
		t.Fatalf("task %s: %v", id, err)
	}
	if res.State != task.Completed {
		t.Fatalf("task %s ended %s (%s); want COMPLETED", id, res.State, res.Reason)
	}
	out := outputLines(t, ctx, res.Output)
	if errs := outputLines(t, ctx, res.Errors); len(errs) != 0 {
		t.Errorf("errors.jsonl has %d lines, the first %+v; want none", len(errs), errs[0])
	}
	seen := map[string]bool{}
	for i, l := range out {
		seen[l.CustomID] = true
		if i < len(in.ids) && l.CustomID != in.ids[i] {
			t.Errorf("output line %d is %s; want %s, each line once in input order", i+1, l.CustomID, in.ids[i])
			break
		}
		if l.Response == nil || l.Response.StatusCode != 200 {
			t.Fatalf("output line %d (%s) is not an answer: %+v", i+1, l.CustomID, l)
		}
	}
	if len(out) != len(in.ids) || len(seen) != len(in.ids) {
		t.Errorf("output.jsonl has %d lines, %d distinct custom_ids; want %d of each (0 lost, 0 duplicated)", len(out), len(seen), len(in.ids))
	}
	if res.Counts.Completed != len(in.ids) || res.Counts.Failed != 0 {
		t.Errorf("result counts %+v; want %d completed", res.Counts, len(in.ids))
	}
	return len(out), len(seen)
}

func outputLines(t *testing.T, ctx context.Context, ref task.ObjectRef) []batch.OutputLine {
	t.Helper()
	var b bytes.Buffer
	if err := suite.tasks.Download(ctx, ref, &b); err != nil {
		t.Fatalf("downloading %s: %v", ref.URI(), err)
	}
	var out []batch.OutputLine
	sc := bufio.NewScanner(&b)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l batch.OutputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("output line is not JSON: %v", err)
		}
		out = append(out, l)
	}
	return out
}
