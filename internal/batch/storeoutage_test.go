package batch_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// downSink is a memSink whose store goes away after its first checkpoint
// and takes no write for the next fails tries.
type downSink struct {
	*memSink
	mu       sync.Mutex
	fails    int
	refused  int
	recorded bool
}

func (s *downSink) down() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recorded || s.refused >= s.fails {
		return nil
	}
	s.refused++
	return fmt.Errorf("%w: connection refused", batch.ErrStoreUnavailable)
}

func (s *downSink) SealPart(ctx context.Context, p batch.Part, out, errs []byte) (batch.Part, error) {
	if err := s.down(); err != nil {
		return p, err
	}
	return s.memSink.SealPart(ctx, p, out, errs)
}

func (s *downSink) SaveCheckpoint(ctx context.Context, cp batch.Checkpoint) error {
	if err := s.down(); err != nil {
		return err
	}
	err := s.memSink.SaveCheckpoint(ctx, cp)
	s.mu.Lock()
	s.recorded = true
	s.mu.Unlock()
	return err
}

func (s *downSink) Merge(ctx context.Context, parts []batch.Part) (task.ObjectRef, task.ObjectRef, error) {
	if err := s.down(); err != nil {
		return task.ObjectRef{}, task.ObjectRef{}, err
	}
	return s.memSink.Merge(ctx, parts)
}

func (s *downSink) Finish(ctx context.Context, cp batch.Checkpoint, out, errs []byte) (batch.Checkpoint, error) {
	if err := s.down(); err != nil {
		return cp, err
	}
	return s.memSink.Finish(ctx, cp, out, errs)
}

// The bucket refuses every write for a while after the first checkpoint:
// the engine holds its answers, says since when it waits for the bucket,
// and writes them once it takes writes again. Every line is answered once
// and the model server is asked once per line.
func TestStoreOutageHoldsTheAnswers(t *testing.T) {
	srv := startModel(t, testmodel.Faults{Latency: time.Millisecond})
	sink := &downSink{memSink: newMemSink(), fails: 6}
	e := engine(srv, sink, batch.Config{Concurrency: 4, PartItems: 50, ProbeBase: time.Millisecond, ProbeMax: 5 * time.Millisecond})
	var mu sync.Mutex
	var waited bool
	e.Progress = func(m batch.Mark) {
		mu.Lock()
		defer mu.Unlock()
		waited = waited || !m.StoreWaitingSince.IsZero()
	}
	cp, err := e.Run(context.Background(), strings.NewReader(batchFile(300, nil)), batch.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	_, ids := lines(t, sink.merged[0])
	if len(ids) != 300 || cp.Counts.Completed != 300 {
		t.Fatalf("%d distinct lines, counts %+v; want 300", len(ids), cp.Counts)
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("%s answered %d times", id, n)
		}
	}
	if ok := srv.Stats().OK; ok != 300 {
		t.Errorf("the model server answered %d times for 300 lines; want each once", ok)
	}
	if sink.refused != sink.fails || !waited {
		t.Errorf("the store refused %d of %d writes and the progress said it waited: %v; want all refused and said", sink.refused, sink.fails, waited)
	}
}

// brokenReader ends in a cut stream instead of EOF.
type brokenReader struct {
	r io.Reader
}

func (b *brokenReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// The input stream breaks halfway (the bucket went away mid-read): the
// engine opens it again and goes on after the last line it read, keeping
// what is in flight. Every line is answered once.
func TestBrokenInputIsReopened(t *testing.T) {
	srv := startModel(t, testmodel.Faults{Latency: time.Millisecond})
	sink := newMemSink()
	e := engine(srv, sink, batch.Config{Concurrency: 4, PartItems: 50})
	input := batchFile(200, nil)
	reopened := 0
	e.Reopen = func(context.Context) (io.ReadCloser, error) {
		reopened++
		if reopened == 1 {
			return nil, fmt.Errorf("%w: connection refused", batch.ErrStoreUnavailable)
		}
		return io.NopCloser(strings.NewReader(input)), nil
	}
	cut := len(input) / 2
	cp, err := e.Run(context.Background(), &brokenReader{strings.NewReader(input[:cut])}, batch.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	_, ids := lines(t, sink.merged[0])
	if len(ids) != 200 || cp.Counts.Completed != 200 || reopened != 2 {
		t.Fatalf("%d distinct lines, counts %+v, %d reopen(s); want 200 lines after a refused reopen and one that worked", len(ids), cp.Counts, reopened)
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("%s answered %d times", id, n)
		}
	}
	if ok := srv.Stats().OK; ok != 200 {
		t.Errorf("the model server answered %d times for 200 lines; want each once", ok)
	}
}
