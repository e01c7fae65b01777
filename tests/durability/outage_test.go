package durability

import (
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// outage is how long the model server refuses connections.
const outage = 60 * time.Second

// The model server goes away mid-batch (its port refuses connections)
// for a minute and comes back on the same address. No item fails for it:
// the status says since when the task waits for the model server, and the
// task completes with every line answered once.
func TestModelServerOutageFailsNoItem(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	m := startModel(t, 20*time.Millisecond, "127.0.0.1:0")
	addr := strings.TrimSuffix(strings.TrimPrefix(m.URL(), "http://"), "/v1")
	startWorker(t, workerOptions{node: "outage-" + randHex(3), modelURL: m.URL(), concurrency: 4, checkpointInterval: time.Second})

	in := writeBatch(t, "outage", 1500)
	id := submitApproved(t, ctx, "outage", in)
	waitDone(t, ctx, id, 200)
	served := m.Stats().OK
	m.Close()
	downAt := time.Now()
	t.Logf("model server down after %d answers", served)

	var st task.Status
	eventually(t, ctx, "the status to say the task waits for the model server", func() (bool, error) {
		var err error
		st, err = suite.tasks.Status(ctx, id)
		return err == nil && !st.Progress.WaitingSince.IsZero(), err
	})
	if st.State != task.Running {
		t.Fatalf("task %s is %s during the outage; want RUNNING", id, st.State)
	}
	if st.Progress.Failed != 0 {
		t.Errorf("%d items failed during the outage; want none", st.Progress.Failed)
	}
	t.Logf("status: waiting for the model server since %s, %d answered", st.Progress.WaitingSince.Format(time.RFC3339), st.Progress.Done())

	// The outage is the scenario, not a wait for a condition.
	time.Sleep(time.Until(downAt.Add(outage)))
	m2 := startModel(t, 20*time.Millisecond, addr)
	t.Logf("model server back on %s after %s", addr, time.Since(downAt).Round(time.Second))

	exact(t, ctx, id, in)
	save(t, ctx, id, "model_outage")
	if m2.Stats().OK == 0 {
		t.Error("the restarted model server answered nothing")
	}
}
