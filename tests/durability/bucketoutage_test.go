package durability

import (
	"context"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// bucketOutage is how long the bucket is away.
const bucketOutage = 20 * time.Second

// MinIO is stopped by its PID mid-batch and started again, on the same
// port and data folder, bucketOutage later. The engine holds its answers
// in memory while the bucket is away, as it holds for a model server, and
// writes them when it is back: the status says since when the task waits
// for the bucket and names the node that runs it, and the task completes
// with every line answered once, the model server asked once per line
// (nothing redone).
func TestBucketOutageHoldsTheAnswers(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	m := startModel(t, 20*time.Millisecond, "")
	node := "bucket-" + randHex(3)
	startWorker(t, workerOptions{node: node, modelURL: m.URL(), concurrency: 4, checkpointInterval: time.Second})

	in := writeBatch(t, "bucket", 1500)
	id := submitApproved(t, ctx, "bucket", in)
	waitDone(t, ctx, id, 200)
	if err := suite.Stack.StopS3(); err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	up := false
	t.Cleanup(func() {
		if !up {
			_ = suite.Stack.RestartS3(context.Background())
		}
	})
	t.Logf("bucket down (MinIO stopped) after %d answers", m.Stats().OK)

	var st task.Status
	eventually(t, ctx, "the status to say the task waits for the bucket", func() (bool, error) {
		var err error
		st, err = suite.tasks.Status(ctx, id)
		return err == nil && !st.Progress.StoreWaitingSince.IsZero(), err
	})
	if st.State != task.Running || st.Node != node {
		t.Errorf("task %s is %s on %q during the outage; want RUNNING on %s", id, st.State, st.Node, node)
	}
	t.Logf("status: waiting for the bucket since %s, %d answered, on node %s", st.Progress.StoreWaitingSince.Format(time.RFC3339), st.Progress.Done(), st.Node)

	// The outage is the scenario, not a wait for a condition.
	time.Sleep(time.Until(downAt.Add(bucketOutage)))
	if err := suite.Stack.RestartS3(ctx); err != nil {
		t.Fatal(err)
	}
	up = true
	t.Logf("bucket back on %s after %s", suite.Stack.S3Endpoint, time.Since(downAt).Round(time.Second))

	exact(t, ctx, id, in)
	if served := int(m.Stats().OK); served != len(in.ids) {
		t.Errorf("the model server answered %d times for %d lines: %d answer(s) redone; want none", served, len(in.ids), served-len(in.ids))
	}
}
