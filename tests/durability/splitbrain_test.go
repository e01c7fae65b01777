package durability

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	workflowpb "go.temporal.io/api/workflow/v1"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// splitBrainHeartbeatTimeout is short so that a frozen worker's attempt is
// retried within seconds; it stays above the SDK's heartbeat interval
// (0.8 of it) with room for a busy 2-core machine.
const splitBrainHeartbeatTimeout = 4 * time.Second

// Two worker processes serve one node. The one running the batch is
// frozen (SIGSTOP) past its heartbeat timeout; the retry runs on the
// other and records checkpoints; then the first is thawed (SIGCONT) and
// its stale attempt carries on where it was, and any attempt its poll
// received while frozen starts. The fence stops them: no checkpoint record
// is written by an attempt older than one that recorded before it, the
// live attempt is never fenced (the items fencing made it redo are
// printed; the goal is 0), and the task completes with every line exactly
// once. Five times in a row.
func TestSplitBrainFencesTheStaleAttempt(t *testing.T) {
	m := startModel(t, 20*time.Millisecond, "")
	node := "sb-" + randHex(3)
	opts := workerOptions{node: node, modelURL: m.URL(), concurrency: 2, heartbeatTimeout: splitBrainHeartbeatTimeout, checkpointInterval: time.Second}
	ws := []*worker{startWorker(t, opts), startWorker(t, opts)}
	for run := 1; run <= 5; run++ {
		t.Run(fmt.Sprintf("run%d", run), func(t *testing.T) { splitBrain(t, ws, run == 1) })
		if t.Failed() {
			return
		}
	}
}

func splitBrain(t *testing.T, ws []*worker, record bool) {
	ctx := testCtx(t, 3*time.Minute)
	in := writeBatch(t, "sb", 600)
	id := submitApproved(t, ctx, "sb", in)

	// Freeze the worker running the first attempt once it has answered
	// some lines and recorded a checkpoint.
	var pa *workflowpb.PendingActivityInfo
	eventually(t, ctx, "the first attempt to record a checkpoint", func() (bool, error) {
		var err error
		pa, err = pendingInfer(ctx, id)
		return err == nil && pa != nil && pa.GetLastWorkerIdentity() != "" && head(ctx, id) >= 1, err
	})
	victim, other := byIdentity(t, ws, pa.GetLastWorkerIdentity())
	victim.Signal(t, syscall.SIGSTOP)
	frozenAt := head(ctx, id)
	t.Logf("worker %d frozen (SIGSTOP) at checkpoint %d; worker %d takes over", victim.PID(), frozenAt, other.PID())

	// The retry runs on the other worker and records past the frozen one.
	eventually(t, ctx, "the retry to run on the other worker and record checkpoints", func() (bool, error) {
		pa, err := pendingInfer(ctx, id)
		if err != nil || pa == nil {
			return false, err
		}
		return pa.GetAttempt() >= 2 && pidOf(pa.GetLastWorkerIdentity()) == other.PID() && head(ctx, id) >= frozenAt+2, nil
	})
	victim.Signal(t, syscall.SIGCONT)
	t.Logf("worker %d thawed (SIGCONT) with the replacement at checkpoint %d", victim.PID(), head(ctx, id))

	res := exact(t, ctx, id, in)
	if st, err := suite.tasks.Status(ctx, id); err == nil && st.Attempts < 2 {
		t.Errorf("the status counts %d attempts; want at least 2", st.Attempts)
	}
	recs := records(t, ctx, id)
	for i := 1; i < len(recs); i++ {
		if recs[i].Attempt.Before(recs[i-1].Attempt) {
			t.Errorf("checkpoint %d was written by %s, older than %s, which wrote checkpoint %d", recs[i].Seq, recs[i].Attempt, recs[i-1].Attempt, recs[i-1].Seq)
		}
	}
	// The thawed worker's attempt ends fenced; wait for its line in the
	// task log, so that every fenced attempt is counted.
	var f fencings
	eventually(t, ctx, "the thawed worker's attempt to end fenced", func() (bool, error) {
		f = fenced(t, ctx, id)
		return f.stale > 0, nil
	})
	t.Logf("split brain: %d lines, each once; task %s; %d checkpoint records, none by an older attempt than the one before", res.Counts.Done(), res.State, len(recs))
	t.Logf("split brain: items fencing made the live attempt redo: %d (goal 0); stale attempts fenced: %d, holding %d unrecorded answer(s); fenced by: %v", f.liveRedo, f.stale, f.staleUnrecorded, f.by)
	if f.liveRedo != 0 || f.liveFenced != 0 {
		t.Errorf("the live attempt was fenced %d time(s) by an older one and redid %d item(s); want 0", f.liveFenced, f.liveRedo)
	}
	if record {
		save(t, ctx, id, "split_brain")
	}
}

// records are the task's checkpoint records, in sequence order.
func records(t *testing.T, ctx context.Context, id string) []batch.Checkpoint {
	t.Helper()
	infos, err := suite.Store.List(ctx, checkpointDir(id))
	if err != nil {
		t.Fatal(err)
	}
	var recs []batch.Checkpoint
	for _, in := range infos {
		if !strings.HasSuffix(in.Key, "/metadata.json") {
			continue
		}
		var cp batch.Checkpoint
		if err := getJSON(ctx, in.Key, &cp); err != nil {
			t.Fatalf("checkpoint record %s: %v", in.Key, err)
		}
		if cp.Attempt.IsZero() {
			t.Errorf("checkpoint record %s names no attempt", in.Key)
		}
		recs = append(recs, cp)
	}
	slices.SortFunc(recs, func(a, b batch.Checkpoint) int { return a.Seq - b.Seq })
	return recs
}

// fencings are what the task log says of the attempts that ended fenced.
type fencings struct {
	// liveFenced and liveRedo: attempts fenced by an older attempt (a
	// live attempt that lost to a stale one), and the answers they held
	// that no record names, which the next attempt answers again.
	liveFenced, liveRedo int
	// stale and staleUnrecorded: attempts fenced by a newer attempt or by
	// the server, and the answers they held.
	stale, staleUnrecorded int
	// by counts the fenced attempts by what fenced them.
	by map[string]int
}

// fenced reads the task's log for the lines "attempt fenced".
func fenced(t *testing.T, ctx context.Context, id string) fencings {
	t.Helper()
	infos, err := suite.Store.List(ctx, storage.TaskPrefix(storage.Log, tenant, id))
	if err != nil {
		t.Fatal(err)
	}
	f := fencings{by: map[string]int{}}
	for _, in := range infos {
		rc, _, err := suite.Store.Get(ctx, in.Key)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(rc)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l struct {
				Msg        string `json:"msg"`
				By         string `json:"fenced_by"`
				Unrecorded int    `json:"unrecorded"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "attempt fenced" {
				continue
			}
			f.by[l.By]++
			if l.By == "an older attempt" {
				f.liveFenced++
				f.liveRedo += l.Unrecorded
			} else {
				f.stale++
				f.staleUnrecorded += l.Unrecorded
			}
		}
		rc.Close()
	}
	return f
}

// pendingInfer is the task's pending inference activity, nil if none.
func pendingInfer(ctx context.Context, id string) (*workflowpb.PendingActivityInfo, error) {
	d, err := suite.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
	if err != nil {
		return nil, err
	}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityType().GetName() == "Infer" {
			return pa, nil
		}
	}
	return nil, nil
}

// pidOf reads the PID from an SDK worker identity ("pid@host@...").
func pidOf(identity string) int {
	pid, _ := strconv.Atoi(strings.SplitN(identity, "@", 2)[0])
	return pid
}

func byIdentity(t *testing.T, ws []*worker, identity string) (running, other *worker) {
	t.Helper()
	pid := pidOf(identity)
	switch pid {
	case ws[0].PID():
		return ws[0], ws[1]
	case ws[1].PID():
		return ws[1], ws[0]
	}
	t.Fatalf("the inference runs on %q, neither worker %d nor %d", identity, ws[0].PID(), ws[1].PID())
	return nil, nil
}
