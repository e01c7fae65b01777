package server

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// stepSource is a stand-in for Temporal's view of one task that a test
// steps: each State call returns the next of a counter's states, and can
// be made to panic once.
type stepSource struct {
	mu     sync.Mutex
	n      int
	calls  atomic.Int32
	panics atomic.Int32 // State panics while > 0, counting down
	end    chan task.Result
}

func (s *stepSource) State(ctx context.Context, id string) (task.State, error) {
	s.calls.Add(1)
	if s.panics.Load() > 0 {
		s.panics.Add(-1)
		panic("a follower's bug")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	// A new "state" on every call, so every look adds a change.
	if s.n%2 == 0 {
		return task.Running, nil
	}
	return task.Paused, nil
}

func (s *stepSource) Wait(ctx context.Context, id string) (task.Result, error) {
	select {
	case r := <-s.end:
		return r, nil
	case <-ctx.Done():
		return task.Result{}, ctx.Err()
	}
}

func (s *stepSource) Status(ctx context.Context, id string) (task.Status, error) {
	return task.Status{}, context.DeadlineExceeded
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetLevel(logrus.PanicLevel)
	return l
}

// However many changes a task has, its follower keeps the last maxChanges:
// a watcher far behind gets those, the newest among them.
func TestFollowerMemoryIsBounded(t *testing.T) {
	src := &stepSource{end: make(chan task.Result)}
	h := newHub(src, quietLog())
	var last int64
	for range 3 * maxChanges {
		evs, _ := h.wait(context.Background(), "t1", last)
		last = evs[len(evs)-1].Seq
		h.poke("t1")
	}
	f := h.join("t1")
	defer h.leave(f)
	evs, _, _ := f.since(0)
	if len(evs) != maxChanges || evs[len(evs)-1].Seq < last {
		t.Fatalf("the follower holds %d changes after %d looks, want the last %d, the newest seen (%d) among them", len(evs), src.calls.Load(), maxChanges, last)
	}
	f.mu.Lock()
	c := cap(f.changes)
	f.mu.Unlock()
	if c > 2*maxChanges {
		t.Fatalf("its array grew to %d", c)
	}
}

// Watchers of one task share one follower, so Temporal is asked once per
// look whatever their number; a follower that dies is replaced and its
// watchers carry on.
func TestFollowerIsSharedAndReplaced(t *testing.T) {
	src := &stepSource{end: make(chan task.Result)}
	h := newHub(src, quietLog())
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if evs, _ := h.wait(ctx, "t1", 0); len(evs) == 0 {
				t.Error("a watcher got no change")
			}
		}()
	}
	wg.Wait()
	h.mu.Lock()
	started := h.started
	h.mu.Unlock()
	if started != 1 {
		t.Fatalf("%d followers for 100 watchers of one task, want 1", started)
	}

	// The follower dies on its next look; a watcher waiting past the
	// last change gets the next one from its replacement.
	f := h.join("t1")
	evs, _, _ := f.since(0)
	h.leave(f)
	src.panics.Store(1)
	h.poke("t1")
	got, _ := h.wait(ctx, "t1", evs[len(evs)-1].Seq)
	<-f.done
	if len(got) == 0 {
		t.Fatal("no change after the follower died")
	}
	h.mu.Lock()
	started = h.started
	h.mu.Unlock()
	if started != 2 {
		t.Fatalf("%d followers started, want the replacement (2)", started)
	}

	// The task ends: every watcher, new or old, gets the result.
	src.end <- task.Result{ID: "t1", State: task.Completed}
	after := got[len(got)-1].Seq
	for {
		evs, final := h.wait(ctx, "t1", after)
		after = evs[len(evs)-1].Seq
		if final {
			if e := evs[len(evs)-1]; e.Result == nil || e.State != task.Completed {
				t.Fatalf("the last change %+v, want the result", e)
			}
			break
		}
	}
}

// setSource is a task whose state and counts the test sets; the status
// query always answers.
type setSource struct {
	mu     sync.Mutex
	state  task.State
	counts task.Counts
	end    chan task.Result
}

func (s *setSource) set(st task.State, c task.Counts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.counts = st, c
}

func (s *setSource) State(ctx context.Context, id string) (task.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, nil
}

func (s *setSource) Wait(ctx context.Context, id string) (task.Result, error) {
	return (&stepSource{end: s.end}).Wait(ctx, id)
}

func (s *setSource) Status(ctx context.Context, id string) (task.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := task.Status{ID: id, State: s.state}
	st.Progress.Counts = s.counts
	return st, nil
}

// waitFor returns the changes after after, up to the first that has,
// failing if the task ends before one does.
func waitFor(t *testing.T, h *hub, after int64, has func(Change) bool) []Change {
	t.Helper()
	var seen []Change
	for {
		evs, final := h.wait(context.Background(), "t1", after)
		for _, e := range evs {
			seen = append(seen, e)
			if has(e) {
				return seen
			}
			after = e.Seq
		}
		if final {
			t.Fatalf("the task ended without the change wanted; changes: %+v", seen)
		}
	}
}

// A run that stops between two progress looks (here: it reaches
// ARCHIVING, or ends outright) sends the counts it stopped with in the
// change that stops it, so a watcher's bar closes on them rather than on
// the last progress change; a change whose counts have not moved carries
// none.
func TestTheChangeThatStopsARunCarriesItsLastCounts(t *testing.T) {
	for _, archives := range []bool{true, false} {
		src := &setSource{end: make(chan task.Result)}
		h := newHub(src, quietLog())
		src.set(task.Running, task.Counts{Total: 10, Completed: 3})
		evs := waitFor(t, h, 0, func(e Change) bool { return e.Progress != nil })
		if p := evs[len(evs)-1].Progress; p.Completed != 3 {
			t.Fatalf("progress while running: %+v", p)
		}
		after := evs[len(evs)-1].Seq
		done := task.Counts{Total: 10, Completed: 9, Failed: 1}
		if archives {
			src.set(task.Archiving, done)
			h.poke("t1")
			evs = waitFor(t, h, after, func(e Change) bool { return e.State == task.Archiving })
			if p := evs[len(evs)-1].Progress; p == nil || p.Counts != done {
				t.Fatalf("the change into ARCHIVING carries progress %+v, want %+v", p, done)
			}
			after = evs[len(evs)-1].Seq
		}
		src.end <- task.Result{ID: "t1", State: task.Completed, Counts: done}
		evs = waitFor(t, h, after, func(e Change) bool { return e.Result != nil })
		end := evs[len(evs)-1]
		switch {
		case archives && end.Progress != nil:
			t.Fatalf("the end repeats counts already sent: %+v", end.Progress)
		case !archives && (end.Progress == nil || end.Progress.Counts != done):
			t.Fatalf("the end straight from RUNNING carries progress %+v, want %+v", end.Progress, done)
		}
	}
}
