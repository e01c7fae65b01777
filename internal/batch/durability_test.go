package batch_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
)

// A stale attempt, resuming from a checkpoint another attempt has already
// extended, stops at its first record with ErrFenced and merges nothing.
func TestStaleAttemptIsFenced(t *testing.T) {
	srv := startModel(t, testmodel.Faults{})
	input := batchFile(200, nil)
	sink := newMemSink()
	cfg := batch.Config{Concurrency: 4, PartItems: 20}

	ctx, cancel := context.WithCancelCause(context.Background())
	e := engine(srv, sink, cfg)
	e.Progress = func(m batch.Mark) {
		if m.Seq >= 2 {
			cancel(batch.ErrStopped)
		}
	}
	stale, err := e.Run(ctx, strings.NewReader(input), batch.Checkpoint{})
	if !errors.Is(err, batch.ErrStopped) {
		t.Fatalf("first attempt: %v", err)
	}
	final, err := engine(srv, sink, cfg).Run(context.Background(), strings.NewReader(input), stale)
	if err != nil || !final.Done {
		t.Fatalf("the replacement: %+v, %v", final, err)
	}
	merged := sink.merged

	// The first attempt wakes up and goes on from where it was.
	_, err = engine(srv, sink, cfg).Run(context.Background(), strings.NewReader(input), stale)
	var fe *batch.FencedError
	if !errors.Is(err, batch.ErrFenced) || !errors.As(err, &fe) {
		t.Fatalf("the stale attempt got %v; want a FencedError", err)
	}
	// It is fenced at its first record, holding that part's answers.
	if fe.Unrecorded != cfg.PartItems {
		t.Errorf("the stale attempt held %d unrecorded answers; want the %d of its first part", fe.Unrecorded, cfg.PartItems)
	}
	if string(sink.merged[0]) != string(merged[0]) {
		t.Fatal("the stale attempt merged over the replacement's output")
	}
	_, ids := lines(t, merged[0])
	if len(ids) != 200 {
		t.Fatalf("the output has %d distinct lines; want 200", len(ids))
	}
}

// A part whose stored bytes changed after it was sealed is found at the
// merge and its lines answered again; the output is exact.
func TestCorruptPartIsRecomputed(t *testing.T) {
	srv := startModel(t, testmodel.Faults{})
	input := batchFile(100, nil)
	sink := newMemSink()
	var once sync.Once
	var corrupted batch.Part
	sink.onSave = func(cp batch.Checkpoint) {
		if cp.Seq == 4 {
			once.Do(func() {
				sink.mu.Lock()
				corrupted = cp.Parts[1]
				sink.objects[corrupted.Output.Key] = []byte("{\"not\":\"the answers\"}\n")
				sink.mu.Unlock()
			})
		}
	}
	e := engine(srv, sink, batch.Config{Concurrency: 4, PartItems: 10})
	e.Reopen = func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(input)), nil }
	cp, err := e.Run(context.Background(), strings.NewReader(input), batch.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	if corrupted.Seq != 2 {
		t.Fatal("the test did not corrupt part 2")
	}
	out, ids := lines(t, sink.merged[0])
	if len(out) != 100 || len(ids) != 100 || cp.Counts.Completed != 100 {
		t.Fatalf("want 100 unique answers, got %d lines, %d ids, counts %+v", len(out), len(ids), cp.Counts)
	}
	for i, ol := range out {
		if want := "req-" + itoa(i+1); ol.CustomID != want {
			t.Fatalf("line %d is %s; want %s", i, ol.CustomID, want)
		}
	}
	if got := srv.Stats().Requests; got != 110 {
		t.Errorf("the model server got %d requests; want 110 (the 10 of part 2 twice)", got)
	}
	if p := cp.Parts[1]; p.Output.Key == corrupted.Output.Key || p.FirstLine != corrupted.FirstLine || p.LastLine != corrupted.LastLine {
		t.Errorf("part 2 was not replaced by a recomputed part of the same lines: %+v", p)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// outageChatter is the model server with an outage: from request down on,
// every request fails as a refused connection would, for the time given.
type outageChatter struct {
	next       batch.Chatter
	down       int64
	lasts      time.Duration
	n, refused atomic.Int64
	mu         sync.Mutex
	downAt     time.Time
}

func (c *outageChatter) Chat(ctx context.Context, body json.RawMessage) (*llm.Response, error) {
	if n := c.n.Add(1); n >= c.down {
		c.mu.Lock()
		if c.downAt.IsZero() {
			c.downAt = time.Now()
		}
		out := time.Since(c.downAt) < c.lasts
		c.mu.Unlock()
		if out {
			c.refused.Add(1)
			return nil, &llm.Error{Kind: llm.UpstreamUnavailable, Message: "connect: connection refused"}
		}
	}
	return c.next.Chat(ctx, body)
}

// While the model server refuses every connection, the engine holds: no
// item fails for it, one probe at a time goes out, the progress says since
// when it waits, and every line is answered once the server is back.
func TestOutageHoldsInsteadOfFailingItems(t *testing.T) {
	srv := startModel(t, testmodel.Faults{})
	sink := newMemSink()
	e := engine(srv, sink, batch.Config{Concurrency: 8, PartItems: 50, MaxAttempts: 3, ProbeBase: time.Millisecond, ProbeMax: 5 * time.Millisecond})
	oc := &outageChatter{next: e.Client, down: 100, lasts: 2500 * time.Millisecond}
	e.Client = oc
	var waited atomic.Bool
	e.Progress = func(m batch.Mark) {
		if !m.WaitingSince.IsZero() {
			waited.Store(true)
		}
	}
	cp, err := e.Run(context.Background(), strings.NewReader(batchFile(300, nil)), batch.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Counts.Completed != 300 || cp.Counts.Failed != 0 {
		t.Fatalf("counts %+v; want 300 completed, none failed", cp.Counts)
	}
	// Held, the engine sends one probe at a time with a growing wait, not
	// every item's every try.
	if r := oc.refused.Load(); r == 0 || r > 2500 {
		t.Fatalf("%d requests were refused during the outage; want some, and no flood", r)
	}
	if !waited.Load() {
		t.Error("the progress never said the engine was waiting for the model server")
	}
	_, ids := lines(t, sink.merged[0])
	if len(ids) != 300 {
		t.Errorf("%d distinct answers; want 300", len(ids))
	}
}

// A model server that stays down past HandBackAfter ends the run with a
// HandBackError after a checkpoint of what was answered; a run from that
// checkpoint against a server that answers completes exactly.
func TestLongOutageHandsTheWorkBack(t *testing.T) {
	srv := startModel(t, testmodel.Faults{})
	sink := newMemSink()
	cfg := batch.Config{Concurrency: 4, PartItems: 20, MaxAttempts: 3, ProbeBase: time.Millisecond, ProbeMax: 5 * time.Millisecond, HandBackAfter: 200 * time.Millisecond}
	input := batchFile(300, nil)
	e := engine(srv, sink, cfg)
	e.Client = &outageChatter{next: e.Client, down: 100, lasts: time.Hour}
	cp, err := e.Run(context.Background(), strings.NewReader(input), batch.Checkpoint{})
	var hb *batch.HandBackError
	if !errors.As(err, &hb) || hb.Since.IsZero() {
		t.Fatalf("Run returned %v; want a HandBackError", err)
	}
	if cp.Done || cp.Counts.Failed != 0 || cp.Counts.Completed < 50 || cp.Line != cp.Counts.Completed {
		t.Fatalf("the hand-back's checkpoint %+v: want not done, nothing failed, the answers before the outage recorded", cp)
	}
	final, err := engine(srv, sink, cfg).Run(context.Background(), strings.NewReader(input), cp)
	if err != nil || !final.Done || final.Counts.Completed != 300 || final.Counts.Failed != 0 {
		t.Fatalf("the run after the hand-back: %+v, %v", final.Counts, err)
	}
	if _, ids := lines(t, sink.merged[0]); len(ids) != 300 {
		t.Errorf("%d distinct answers; want 300", len(ids))
	}
}

// An item the server refuses on its own (a 400) fails at once, and does
// not make the engine hold.
func TestItemErrorsAreNotAnOutage(t *testing.T) {
	srv := startModel(t, testmodel.Faults{BadRequest: 1})
	sink := newMemSink()
	e := engine(srv, sink, batch.Config{Concurrency: 4, PartItems: 50})
	var waited atomic.Bool
	e.Progress = func(m batch.Mark) {
		if !m.WaitingSince.IsZero() {
			waited.Store(true)
		}
	}
	cp, err := e.Run(context.Background(), strings.NewReader(batchFile(40, nil)), batch.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Counts.Failed != 40 || waited.Load() {
		t.Fatalf("counts %+v, waited %v; want 40 failed items and no hold", cp.Counts, waited.Load())
	}
}
