package durability

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	workflowpb "go.temporal.io/api/workflow/v1"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// splitBrainHeartbeatTimeout is short so that a frozen worker's attempt is
// retried within seconds; it stays above the SDK's heartbeat interval
// (0.8 of it) with room for a busy 2-core machine.
const splitBrainHeartbeatTimeout = 4 * time.Second

// Two worker processes serve one node. The one running the batch is
// frozen (SIGSTOP) past its heartbeat timeout; the retry runs on the
// other and records checkpoints; then the first is thawed (SIGCONT) and
// its stale attempt carries on where it was. The fence stops it: the task
// completes with every line exactly once. Five times in a row.
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
	t.Logf("split brain: %d lines, each once; task %s", res.Counts.Done(), res.State)
	if record {
		save(t, ctx, id, "split_brain")
	}
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
