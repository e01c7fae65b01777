package activities

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

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
	scheduled := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	attempt := func(n int32, id string) *bucketSink {
		s := newSink(a, "acme", "t1", nil)
		s.me = batch.Attempt{Scheduled: scheduled, Number: n, ID: id}
		return s
	}
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
