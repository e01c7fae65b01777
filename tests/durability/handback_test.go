package durability

import (
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// handBackAfter is the workers' hold limit in this test
// (AUTOGLM_OUTAGE_HAND_BACK).
const handBackAfter = 5 * time.Second

// Two nodes serve the model. The batch runs on the first; its model
// server goes away for good. The first node holds for handBackAfter,
// records its checkpoint and hands the work back; the task is dispatched
// again to the second node, which resumes from that checkpoint as a new
// fenced attempt. No item fails for the outage, and the output holds
// every line once. The status names the node that runs the piece (not the
// model's queue) and counts the hand-back as an attempt.
func TestLongOutageHandsTheWorkToAnotherNode(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	env := []string{"AUTOGLM_OUTAGE_HAND_BACK=" + handBackAfter.String(), "AUTOGLM_OUTAGE_PROBE_MAX=1s"}
	ma := startModel(t, 20*time.Millisecond, "")
	a := startWorker(t, workerOptions{node: "hb-a-" + randHex(3), modelURL: ma.URL(), concurrency: 2, checkpointInterval: time.Second, env: env})

	in := writeBatch(t, "handback", 800)
	id := submitApproved(t, ctx, "handback", in)
	if st := waitDone(t, ctx, id, 100); st.Node != a.Node {
		t.Errorf("the status names node %q while the piece runs on %s", st.Node, a.Node)
	}
	if pa, err := pendingInfer(ctx, id); err != nil || pa == nil || pidOf(pa.GetLastWorkerIdentity()) != a.PID() {
		t.Fatalf("the inference is not running on node %s: %v, %v", a.Node, pa, err)
	}
	// The second node comes up only now, so the first dispatch could not
	// have picked it.
	mb := startModel(t, 20*time.Millisecond, "")
	b := startWorker(t, workerOptions{node: "hb-b-" + randHex(3), modelURL: mb.URL(), concurrency: 2, checkpointInterval: time.Second, env: env})
	ma.Close()
	t.Logf("node %s's model server down after %d answers; node %s stands by", a.Node, ma.Stats().OK, b.Node)

	eventually(t, ctx, "the status to say the task waits for the model server", func() (bool, error) {
		st, err := suite.tasks.Status(ctx, id)
		return err == nil && (!st.Progress.WaitingSince.IsZero() || st.Node == b.Node), err
	})
	exact(t, ctx, id, in)
	st, err := suite.tasks.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var why string
	for _, tr := range st.Audit {
		if tr.To == task.Dispatched && strings.Contains(tr.Reason, "down since") {
			why = tr.Reason
		}
	}
	if !strings.Contains(why, a.Node) {
		t.Errorf("no transition says node %s handed the work back:\n%s", a.Node, auditText(st))
	}
	if st.Attempts < 2 {
		t.Errorf("the status counts %d attempt(s); want 2 or more: the hand-back is one", st.Attempts)
	}
	if st.Node != b.Node || mb.Stats().OK == 0 {
		t.Errorf("the status shows node %q and node %s's model server answered %d; want the rest answered on %s", st.Node, b.Node, mb.Stats().OK, b.Node)
	}
	t.Logf("%s; node %s answered %d, node %s %d", why, a.Node, ma.Stats().OK, b.Node, mb.Stats().OK)
	save(t, ctx, id, "handed_back")
}
