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
