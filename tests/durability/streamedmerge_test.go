package durability

import (
	"bytes"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A batch whose output is several upload parts (past 5 MiB) is merged as
// a stream, holding no part in memory. A sealed part beyond the first
// upload part is overwritten while the task is paused: the streamed merge
// stops at it and aborts, the engine answers that part's lines again, and
// the task completes exactly.
func TestStreamedMergeRecomputesACorruptPart(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	m := startModel(t, 10*time.Millisecond, "")
	startWorker(t, workerOptions{node: "stream-" + randHex(3), modelURL: m.URL(), concurrency: 16, checkpointInterval: time.Second})

	in := writeBatch(t, "stream", 24000)
	id := submitApproved(t, ctx, "stream", in)
	// Part 16 ends past the first 5 MiB of output.jsonl.
	const corrupt = 16
	eventually(t, ctx, "checkpoint 17", func() (bool, error) { return head(ctx, id) >= corrupt+1, nil })
	if _, err := suite.tasks.Decide(ctx, id, task.UpdatePause, task.DecisionRequest{Actor: "olga"}); err != nil {
		t.Fatalf("olga's pause: %v", err)
	}
	eventually(t, ctx, "the inference to stop", func() (bool, error) {
		pa, err := pendingInfer(ctx, id)
		return err == nil && pa == nil, err
	})
	if st, err := suite.tasks.Status(ctx, id); err != nil || st.State != task.Paused {
		t.Fatalf("the task must be paused before its merge: %s, %v", st.State, err)
	}

	// A pause that comes while a part is being recorded records it whole:
	// the head names a written record.
	stoppedAt := record(t, ctx, id, head(ctx, id)).Line
	part := record(t, ctx, id, corrupt).Sealed
	if part == nil || part.Completed == 0 {
		t.Fatalf("checkpoint record %d of %s holds no part", corrupt, id)
	}
	garbage := bytes.Repeat([]byte("x"), int(part.Output.Size))
	if _, err := suite.Store.Put(ctx, part.Output.Key, bytes.NewReader(garbage), int64(len(garbage)), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	before := m.Stats().Requests
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateResume, task.DecisionRequest{Actor: "olga"}); err != nil {
		t.Fatalf("olga's resume: %v", err)
	}
	res := exact(t, ctx, id, in)
	if res.Output.Size <= 5<<20 {
		t.Fatalf("output.jsonl is %d bytes: the test needs more than one 5 MiB upload part", res.Output.Size)
	}
	// Resume answers the lines after the pause's checkpoint; the
	// recompute adds the corrupt part's.
	rest := int64(len(in.ids) - stoppedAt)
	if sent := m.Stats().Requests - before; sent < rest+int64(part.Completed) {
		t.Errorf("after the resume the model server got %d requests; want the %d after line %d plus the %d of part %d", sent, rest, stoppedAt, part.Completed, corrupt)
	}
	t.Logf("output.jsonl: %d bytes; part %d (lines %d-%d) recomputed", res.Output.Size, corrupt, part.FirstLine, part.LastLine)
}
