package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// killHeartbeatTimeout is how soon the inference of a killed worker is
// retried in the kill test. Production keeps the default minute; a short
// one keeps the test short, and it stays well above the worker's 2 s
// heartbeat interval so a live, busy worker never times out.
const killHeartbeatTimeout = 10 * time.Second

// A 2,000-item batch survives its worker being killed with SIGKILL at a
// random point, twice: each replacement (same node name) resumes from the
// last checkpoint, and the output holds every custom_id exactly once.
func TestKilledWorkerLosesNothingAndDuplicatesNothing(t *testing.T) {
	ctx := testCtx(t, 150*time.Second)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("kill points drawn with seed %d", seed)

	m := testmodel.New(testmodel.Options{Faults: testmodel.Faults{Latency: killLatency}})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	opts := workerOptions{Node: newNode(t), Model: m, Concurrency: killConcurrency, CheckpointInterval: time.Second, HeartbeatTimeout: killHeartbeatTimeout}
	w := startProcWorker(t, opts)

	const total = 2000
	in := writeBatch(t, "kill", total)
	id := newID("kill")
	submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", File: in.path})
	waitState(t, ctx, id, task.AwaitingApproval)
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: "bob"}); err != nil {
		t.Fatalf("bob's approval: %v", err)
	}

	var killedAt []int
	past := 0
	for attempt := 1; attempt <= 2; attempt++ {
		// A point early in what is left after the last kill: the status
		// query's progress moves in steps of a few hundred items (the
		// worker reports every 2 s), and the batch must still be running
		// when it gets there.
		left := total - past
		target := past + left/20 + rng.IntN(left/4)
		n := waitProgress(t, ctx, id, attempt, target)
		// A random moment after that, so the kill falls anywhere between
		// two checkpoints.
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		answered := m.Stats().OK
		w.kill(t)
		killedAt = append(killedAt, n)
		cp := latestCheckpoint(t, ctx, id)
		if cp.Done {
			t.Fatalf("attempt %d finished the batch before it was killed", attempt)
		}
		t.Logf("attempt %d killed at %d answered by the status query (the model server had given %d answers in all); the last checkpoint holds line %d",
			attempt, n, answered, cp.Line)
		past = n
		w = startProcWorker(t, opts)
	}

	res := wait(t, ctx, id)
	if res.State != task.Completed {
		t.Fatalf("result %+v; want COMPLETED", res)
	}
	if res.Counts.Done() != total {
		t.Errorf("the result counts %d answered; want %d", res.Counts.Done(), total)
	}
	out := outputLines(t, download(t, ctx, res.Output))
	errs := outputLines(t, download(t, ctx, res.Errors))
	lost, dup := exactlyOnce(t, in.ids, customIDCounts(out, errs))
	if lines := len(out) + len(errs); lines != total {
		t.Errorf("output.jsonl and errors.jsonl hold %d lines; want %d", lines, total)
	}
	checkAnswers(t, out, in.bodies)
	st := status(t, ctx, id)
	if st.Attempts < 3 {
		t.Errorf("the status counts %d attempts; want at least 3 (two kills)", st.Attempts)
	}
	// Tokens too, across the kills: those of the output, none twice.
	if want := outputUsage(t, out); want.TotalTokens == 0 || res.Usage != want || st.Usage != want {
		t.Errorf("usage: result %+v, status %+v; the output's sum is %+v", res.Usage, st.Usage, want)
	}
	fmt.Printf("kill test: %d lines, %d lost, %d duplicated, killed at %d and %d\n", len(out)+len(errs), lost, dup, killedAt[0], killedAt[1])
}

// The kill test's model server answers in killLatency and its worker keeps
// killConcurrency requests in flight: more than one, so answers arrive out
// of order around a kill, and few enough (about 200 answers a second) that
// the batch runs for about 10 s, long enough to be killed twice.
const (
	killLatency     = 10 * time.Millisecond
	killConcurrency = 2
)

// waitProgress polls the status query until the inference attempt number
// attempt (or a later one) reports at least target answered, and returns
// the answered count it saw.
func waitProgress(t *testing.T, ctx context.Context, id string, attempt, target int) int {
	t.Helper()
	var done int
	eventually(t, ctx, fmt.Sprintf("attempt %d of task %s to pass %d answered", attempt, id, target), 50*time.Millisecond, func() (bool, error) {
		st, err := suite.tasks.Status(ctx, id)
		if err != nil {
			return false, err
		}
		if st.State.Final() || st.State == task.Archiving {
			t.Fatalf("task %s is %s before the progress reached %d: the batch ran too fast to be stopped mid-way", id, st.State, target)
		}
		done = st.Progress.Done()
		return st.State == task.Running && st.Attempts >= attempt && done >= target, nil
	})
	return done
}

// checkpointRecords are the task's checkpoint records in the bucket,
// oldest first.
func checkpointRecords(t *testing.T, ctx context.Context, id string) []batch.Checkpoint {
	t.Helper()
	infos, err := suite.Store.List(ctx, storage.TaskPrefix(storage.Checkpoint, tenant, id)+"checkpoints/")
	if err != nil {
		t.Fatal(err)
	}
	var cps []batch.Checkpoint
	for _, in := range infos {
		if !strings.HasSuffix(in.Key, "/metadata.json") {
			continue
		}
		var cp batch.Checkpoint
		if err := getJSON(ctx, in.Key, &cp); err != nil {
			t.Fatalf("checkpoint record %s: %v", in.Key, err)
		}
		cps = append(cps, cp)
	}
	sort.Slice(cps, func(i, j int) bool { return cps[i].Seq < cps[j].Seq })
	return cps
}

func latestCheckpoint(t *testing.T, ctx context.Context, id string) batch.Checkpoint {
	t.Helper()
	cps := checkpointRecords(t, ctx, id)
	if len(cps) == 0 {
		return batch.Checkpoint{}
	}
	return cps[len(cps)-1]
}

// A worker told to stop (SIGTERM, as in a rolling deploy) records a
// checkpoint before it exits; its replacement resumes there and redoes no
// more than what was in flight, and the output is exact.
func TestGracefulStopCheckpointsAndResumesWhereItStopped(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	m := testmodel.New(testmodel.Options{Faults: testmodel.Faults{Latency: 20 * time.Millisecond}})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// The default checkpoint interval (30 s) and part size (1,000 items)
	// are both beyond this batch, so the only checkpoint before the end is
	// the one the stop records.
	const concurrency = 4
	opts := workerOptions{Node: newNode(t), Model: m, Concurrency: concurrency}
	w := startProcWorker(t, opts)

	const total = 800
	in := writeBatch(t, "graceful", total)
	id := newID("graceful")
	submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "dave", File: in.path})
	waitState(t, ctx, id, task.AwaitingApproval)
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: "rita"}); err != nil {
		t.Fatalf("rita's approval: %v", err)
	}
	waitProgress(t, ctx, id, 1, 1)
	if cps := checkpointRecords(t, ctx, id); len(cps) != 0 {
		t.Fatalf("%d checkpoint record(s) before the stop; the test wants the stop's to be the first", len(cps))
	}

	termAt := time.Now()
	exitAt := w.term(t, 60*time.Second)
	servedBefore := m.Stats().Requests
	cps := checkpointRecords(t, ctx, id)
	if len(cps) == 0 {
		t.Fatal("the stopping worker recorded no checkpoint")
	}
	cp := cps[len(cps)-1]
	if cp.Time.Before(termAt) || cp.Time.After(exitAt) {
		t.Errorf("the last checkpoint was recorded at %s, not between the SIGTERM (%s) and the exit (%s)", cp.Time, termAt, exitAt)
	}
	if cp.Line <= 0 || cp.Line >= total || cp.Done {
		t.Fatalf("the stop's checkpoint is at line %d (done %v); want a point inside the batch", cp.Line, cp.Done)
	}

	startProcWorker(t, opts)
	res := wait(t, ctx, id)
	if res.State != task.Completed {
		t.Fatalf("result %+v; want COMPLETED", res)
	}
	if res.Counts.Done() != total {
		t.Errorf("the result counts %d answered; want %d", res.Counts.Done(), total)
	}
	redone := m.Stats().Requests - servedBefore
	if bound := int64(total-cp.Line) + concurrency; redone > bound {
		t.Errorf("the second attempt sent %d requests; want at most %d (the %d after the checkpoint, plus %d in flight)", redone, bound, total-cp.Line, concurrency)
	}
	out := outputLines(t, download(t, ctx, res.Output))
	errs := outputLines(t, download(t, ctx, res.Errors))
	exactlyOnce(t, in.ids, customIDCounts(out, errs))
	if len(out) != total || len(errs) != 0 {
		t.Errorf("output.jsonl has %d lines and errors.jsonl %d; want %d and 0", len(out), len(errs), total)
	}
	checkAnswers(t, out, in.bodies)
	t.Logf("stopped at checkpoint line %d of %d; the second attempt sent %d requests", cp.Line, total, redone)
}
