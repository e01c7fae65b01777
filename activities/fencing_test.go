package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// attemptOf is the sink of attempt n (named id) of tenant acme's task
// taskID, or of its piece; every attempt's activity was scheduled at the
// same time, so their numbers order them.
func attemptOf(a *Activities, taskID string, piece *Piece, n int32, id string) *bucketSink {
	s := newSink(a, "acme", taskID, piece)
	s.me = batch.Attempt{Scheduled: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Number: n, ID: id}
	return s
}

// The fence on a real MinIO, step by step: attempt 2 claims the head over
// attempt 1, which then records nothing; attempt 1 started again (a poll
// a frozen worker received) refuses to resume; an attempt whose heartbeat
// the server refused writes nothing either; attempt 2 records on. Every
// record names its writer, and only attempt 2 wrote after it claimed.
func TestStaleAttemptsCommitNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, store := startMinIO(t, ctx)
	a := &Activities{Store: store}
	attempt := func(n int32, id string) *bucketSink { return attemptOf(a, "t1", nil, n, id) }
	seal := func(s *bucketSink, cp *batch.Checkpoint) error {
		p, err := s.SealPart(ctx, batch.Part{Seq: len(cp.Parts) + 1, FirstLine: cp.Line + 1, LastLine: cp.Line + 10, Completed: 10}, []byte(fmt.Sprintf("answers by %s\n", s.me.ID)), nil)
		if err != nil {
			return err
		}
		next := *cp
		next.Parts = append(append([]batch.Part(nil), cp.Parts...), p)
		next.Sealed, next.Seq, next.Line = &p, cp.Seq+1, p.LastLine
		if err := s.SaveCheckpoint(ctx, next); err != nil {
			return err
		}
		*cp = next
		return nil
	}

	first := attempt(1, "a1")
	cp1, err := first.claim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := seal(first, &cp1); err != nil {
		t.Fatal(err)
	}

	second := attempt(2, "a2")
	cp2, err := second.claim(ctx)
	if err != nil || cp2.Seq != 1 || second.attempts != 2 {
		t.Fatalf("attempt 2 claimed at checkpoint %d, counting %d attempts (%v); want 1 and 2", cp2.Seq, second.attempts, err)
	}
	if err := seal(first, &cp1); !errors.Is(err, batch.ErrFenced) || first.fencedBy != "a newer attempt" {
		t.Fatalf("attempt 1 recording after attempt 2 claimed: %v (fenced by %q); want Fenced by a newer attempt", err, first.fencedBy)
	}

	again := attempt(1, "a1-again")
	if _, err := again.claim(ctx); !errors.Is(err, batch.ErrFenced) {
		t.Fatalf("attempt 1 started after attempt 2 claimed: %v; want Fenced before it resumes", err)
	}

	refused := attempt(3, "a3")
	refused.live = func() error { return fmt.Errorf("%w: the server refused this attempt's heartbeat", batch.ErrFenced) }
	if _, err := refused.claim(ctx); !errors.Is(err, batch.ErrFenced) {
		t.Fatalf("an attempt whose heartbeat was refused claimed the head: %v", err)
	}

	if err := seal(second, &cp2); err != nil {
		t.Fatalf("attempt 2, the live one, could not record: %v", err)
	}
	recs, err := second.records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var writers []string
	for _, k := range recs {
		var rec batch.Checkpoint
		if err := a.getJSON(ctx, k, &rec); err != nil {
			t.Fatal(err)
		}
		writers = append(writers, rec.Attempt.ID)
	}
	if fmt.Sprint(writers) != "[a1 a2]" {
		t.Errorf("the records were written by %v; want [a1 a2]", writers)
	}
	h, _, err := second.readHead(ctx)
	if err != nil || h.Attempt.ID != "a2" || h.Seq != 2 {
		t.Errorf("the head is %+v (%v); want attempt a2 at checkpoint 2", h, err)
	}
	parts, err := store.List(ctx, storage.TaskPrefix(storage.Checkpoint, "acme", "t1")+"parts/")
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 6 {
		t.Errorf("%d part objects; want 6: two halves each of a1's counted part, a1's fenced part (named by no record), a2's part", len(parts))
	}
}

// A batch answered within one part is written straight to its final files
// (Finish), fenced as every record is: of two attempts on a fresh batch,
// the one that moves the head first writes the files and the record, and
// the other writes neither. A later attempt resumes from the final record,
// and partial output collected after a cancel is those files, for a batch
// run whole and for a finished piece beside an unfinished one.
func TestFinishInOnePartIsFenced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, store := startMinIO(t, ctx)
	a := &Activities{Store: store}
	attempt := func(piece *Piece, n int32, id string) *bucketSink { return attemptOf(a, "t2", piece, n, id) }
	final := batch.Checkpoint{Seq: 1, Line: 3, Counts: task.Counts{Total: 3, Completed: 2, Failed: 1}, Done: true}
	read := func(key string) string {
		rc, _, err := store.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return string(b)
	}

	first, second := attempt(nil, 1, "a1"), attempt(nil, 2, "a2")
	for _, s := range []*bucketSink{first, second} {
		if _, err := s.claim(ctx); err != nil {
			t.Fatal(err)
		}
	}
	done, err := second.Finish(ctx, final, []byte("answers by a2\n"), []byte("error by a2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Finish(ctx, final, []byte("answers by a1\n"), nil); !errors.Is(err, batch.ErrFenced) || first.fencedBy != "a newer attempt" {
		t.Fatalf("attempt 1 finishing after attempt 2: %v (fenced by %q); want Fenced by a newer attempt", err, first.fencedBy)
	}
	if got := read(done.Output.Key); got != "answers by a2\n" || done.Output.Key != storage.TaskPrefix(storage.Data, "acme", "t2")+NameOutput {
		t.Fatalf("%s holds %q; want attempt 2's answers in the task's output.jsonl", done.Output.Key, got)
	}
	resumed, err := attempt(nil, 3, "a3").claim(ctx)
	if err != nil || !resumed.Done || resumed.Output != done.Output || resumed.Attempt.ID != "a2" {
		t.Fatalf("attempt 3 resumed from %+v (%v); want attempt 2's final record", resumed, err)
	}
	whole, err := a.Collect(ctx, CollectInput{TaskID: "t2", Tenant: "acme"})
	if err != nil || whole.Output != done.Output || whole.Counts.Done() != 3 {
		t.Fatalf("collected %+v (%v); want the final files as they are", whole, err)
	}

	// Pieces: piece 0 finished in one part, piece 1 sealed one part and
	// was stopped.
	p0 := attempt(&Piece{Index: 0}, 1, "p0")
	if _, err := p0.claim(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p0.Finish(ctx, final, []byte("piece 0\n"), nil); err != nil {
		t.Fatal(err)
	}
	p1 := attempt(&Piece{Index: 1}, 1, "p1")
	if _, err := p1.claim(ctx); err != nil {
		t.Fatal(err)
	}
	part, err := p1.SealPart(ctx, batch.Part{Seq: 1, FirstLine: 4, LastLine: 4, Completed: 1}, []byte("piece 1\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.SaveCheckpoint(ctx, batch.Checkpoint{Seq: 1, Line: 4, Counts: task.Counts{Completed: 1}, Parts: []batch.Part{part}, Sealed: &part}); err != nil {
		t.Fatal(err)
	}
	pieces, err := a.Collect(ctx, CollectInput{TaskID: "t2", Tenant: "acme", Pieces: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(pieces.Output.Key); got != "piece 0\npiece 1\n" || pieces.Counts.Done() != 4 {
		t.Fatalf("collected %q, %+v; want both pieces' answers in order", got, pieces.Counts)
	}
}
