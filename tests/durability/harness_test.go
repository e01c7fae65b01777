// Package durability tests exactly-once inference under the faults an
// operator meets: a worker frozen past its heartbeat timeout beside its
// replacement (split brain), a model server that refuses connections for
// a minute, and a sealed part changed in the bucket before the merge.
//
// Real parts only: TestMain starts the Temporal dev server and MinIO
// through internal/devstack on free loopback ports and stops them by PID;
// workers are `autoglm worker` processes built from ./starter. The model
// server is the one stand-in: internal/llm/testmodel.
package durability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

const (
	bucket = "autoglm"
	tenant = "demo" // the default policy's tenant; bob reviews, olga operates
	model  = testmodel.DefaultModel
)

var suite struct {
	*testenv.Env // what testenv.Main started: Dir, Stack, CLI, Temporal, Store, Signer, …
	tasks        *taskclient.Client
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, "durability", testenv.Options{
		Skip:   "these tests start Temporal, MinIO and worker processes",
		Bucket: bucket,
	}, setUp))
}

// setUp takes what testenv.Main started; testenv stops the worker
// processes the tests start after them, before the stack.
func setUp(e *testenv.Env) error {
	suite.Env = e
	os.Setenv("AUTOGLM_LOG_LEVEL", "info")
	suite.tasks = &taskclient.Client{Signer: suite.Signer, Temporal: suite.Temporal, Store: suite.Store}
	return nil
}

// worker is `autoglm worker` as a process of its own.
type worker = testenv.Worker

type workerOptions struct {
	node               string
	modelURL           string
	concurrency        int
	heartbeatTimeout   time.Duration
	checkpointInterval time.Duration
	env                []string
}

// startWorker starts a worker process and waits until it has announced
// its node; the test's cleanup stops it.
func startWorker(t *testing.T, o workerOptions) *worker {
	t.Helper()
	env := []string{"AUTOGLM_LLM_BASE_URL=" + o.modelURL, "AUTOGLM_MODELS=" + model}
	if o.concurrency > 0 {
		env = append(env, "AUTOGLM_CONCURRENCY="+strconv.Itoa(o.concurrency))
	}
	if o.heartbeatTimeout > 0 {
		env = append(env, "AUTOGLM_HEARTBEAT_TIMEOUT="+o.heartbeatTimeout.String())
	}
	if o.checkpointInterval > 0 {
		env = append(env, "AUTOGLM_CHECKPOINT_INTERVAL="+o.checkpointInterval.String())
	}
	return suite.StartWorker(t, testenv.WorkerOptions{Node: o.node, Env: append(env, o.env...), Announce: time.Minute})
}

func getJSON(ctx context.Context, key string, v any) error {
	rc, _, err := suite.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return json.NewDecoder(rc).Decode(v)
}

// startModel starts a test model server answering in latency.
func startModel(t *testing.T, latency time.Duration, addr string) *testmodel.Server {
	t.Helper()
	m := testmodel.New(testmodel.Options{Addr: addr, Faults: testmodel.Faults{Latency: latency}})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
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

// submitApproved submits the batch and has bob approve it.
func submitApproved(t *testing.T, ctx context.Context, prefix string, in input) string {
	t.Helper()
	id := submit(t, ctx, prefix, in)
	waitState(t, ctx, id, task.AwaitingApproval)
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: "bob"}); err != nil {
		t.Fatalf("bob's approval of %s: %v", id, err)
	}
	return id
}

func waitState(t *testing.T, ctx context.Context, id string, state task.State) task.Status {
	t.Helper()
	return testenv.WaitState(t, ctx, suite.tasks, id, state)
}

// waitDone waits until the status shows at least n answered.
func waitDone(t *testing.T, ctx context.Context, id string, n int) task.Status {
	t.Helper()
	var st task.Status
	eventually(t, ctx, fmt.Sprintf("task %s to pass %d answered", id, n), func() (bool, error) {
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
func exact(t *testing.T, ctx context.Context, id string, in input) task.Result {
	t.Helper()
	res, err := suite.tasks.Wait(ctx, id)
	if err != nil {
		t.Fatalf("task %s: %v", id, err)
	}
	if res.State != task.Completed {
		t.Fatalf("task %s ended %s (%s); want COMPLETED", id, res.State, res.Reason)
	}
	out := outputLines(t, ctx, res.Output)
	errs := outputLines(t, ctx, res.Errors)
	if len(errs) != 0 {
		t.Errorf("errors.jsonl has %d lines, the first %+v; want none", len(errs), errs[0])
	}
	if len(out) != len(in.ids) {
		t.Errorf("output.jsonl has %d lines; want %d", len(out), len(in.ids))
	}
	for i, l := range out {
		if i >= len(in.ids) || l.CustomID != in.ids[i] {
			t.Fatalf("output line %d is %s; want %s, each line once in input order", i+1, l.CustomID, in.ids[min(i, len(in.ids)-1)])
		}
		if l.Response == nil || l.Response.StatusCode != 200 {
			t.Fatalf("output line %d (%s) is not an answer: %+v", i+1, l.CustomID, l)
		}
	}
	if res.Counts.Completed != len(in.ids) || res.Counts.Failed != 0 {
		t.Errorf("result counts %+v; want %d completed", res.Counts, len(in.ids))
	}
	return res
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

// checkpointDir is where a task's checkpoint records live.
func checkpointDir(id string) string {
	return storage.TaskPrefix(storage.Checkpoint, tenant, id) + "checkpoints/"
}

// head is the sequence number the task's checkpoint head names; 0 before
// the first record.
func head(ctx context.Context, id string) int {
	var h struct {
		Seq int `json:"seq"`
	}
	_ = getJSON(ctx, checkpointDir(id)+"head.json", &h)
	return h.Seq
}

// record is checkpoint record seq of a task run whole.
func record(t *testing.T, ctx context.Context, id string, seq int) batch.Checkpoint {
	t.Helper()
	var cp batch.Checkpoint
	if err := getJSON(ctx, fmt.Sprintf("%s%06d/metadata.json", checkpointDir(id), seq), &cp); err != nil {
		t.Fatalf("checkpoint record %d of %s: %v", seq, id, err)
	}
	return cp
}

// Shared with the other integration packages (internal/testenv).
var (
	testCtx    = testenv.Context
	eventually = func(t *testing.T, ctx context.Context, what string, cond func() (bool, error)) {
		t.Helper()
		testenv.Eventually(t, ctx, what, 100*time.Millisecond, cond)
	}
	randHex = testenv.RandHex
)
