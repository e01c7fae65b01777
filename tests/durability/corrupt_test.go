package durability

import (
	"bytes"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A sealed part is overwritten in the bucket while the task is paused,
// before the merge. The merge finds that its sha256 is not the one
// recorded, the engine answers that part's lines again, and the task
// completes exactly.
func TestCorruptedPartIsRecomputed(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	m := startModel(t, 20*time.Millisecond, "")
	startWorker(t, workerOptions{node: "corrupt-" + randHex(3), modelURL: m.URL(), concurrency: 2, checkpointInterval: time.Second})

	in := writeBatch(t, "corrupt", 800)
	id := submitApproved(t, ctx, "corrupt", in)
	eventually(t, ctx, "two checkpoints", func() (bool, error) { return head(ctx, id) >= 2, nil })
	if _, err := suite.tasks.Decide(ctx, id, task.UpdatePause, task.DecisionRequest{Actor: "olga"}); err != nil {
		t.Fatalf("olga's pause: %v", err)
	}
	eventually(t, ctx, "the inference to stop", func() (bool, error) {
		pa, err := pendingInfer(ctx, id)
		return err == nil && pa == nil, err
	})

	// A pause that comes while a part is being recorded records it whole:
	// the head names a written record.
	stoppedAt := record(t, ctx, id, head(ctx, id)).Line
	part := record(t, ctx, id, 1).Sealed
	if part == nil || part.Completed == 0 {
		t.Fatalf("checkpoint record 1 of %s holds no part", id)
	}
	garbage := bytes.Repeat([]byte("x"), int(part.Output.Size))
	if _, err := suite.Store.Put(ctx, part.Output.Key, bytes.NewReader(garbage), int64(len(garbage)), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	before := m.Stats().Requests
	t.Logf("part 1 (lines %d-%d, %s) overwritten with %d bytes of garbage", part.FirstLine, part.LastLine, part.Output.Key, len(garbage))

	if _, err := suite.tasks.Decide(ctx, id, task.UpdateResume, task.DecisionRequest{Actor: "olga"}); err != nil {
		t.Fatalf("olga's resume: %v", err)
	}
	exact(t, ctx, id, in)
	save(t, ctx, id, "corrupt_part_recomputed")
	// Resume answers the lines after the pause's checkpoint; the
	// recompute adds part 1's.
	rest := int64(len(in.ids) - stoppedAt)
	if sent := m.Stats().Requests - before; sent < rest+int64(part.Completed) {
		t.Errorf("after the resume the model server got %d requests; want the %d after line %d plus the %d of the corrupted part", sent, rest, stoppedAt, part.Completed)
	}
}
