package activities

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// chunkStore records the chunks created in it; nothing else is called.
type chunkStore struct {
	storage.Store
	mu     sync.Mutex
	chunks map[string]string // key -> content
}

func (s *chunkStore) Create(_ context.Context, key string, r io.Reader, _ int64, _ storage.PutOptions) (storage.Info, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return storage.Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.chunks == nil {
		s.chunks = map[string]string{}
	}
	s.chunks[key] = string(b)
	return storage.Info{Key: key}, nil
}

// of returns the contents of the chunks written for task id.
func (s *chunkStore) of(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k, v := range s.chunks {
		if strings.Contains(k, "/"+id+"/") {
			out = append(out, v)
		}
	}
	return out
}

// The lines of a task's local activities are written once, in order:
// with the task's next chunk, on their own a moment later, or at Flush.
func TestHeldLinesOfLocalActivities(t *testing.T) {
	store := &chunkStore{}
	l := &TaskLogs{Store: store}

	l.hold("acme", "t1", []byte("authorize\n"))
	l.hold("acme", "t1", []byte("screen\n"))
	if got := string(l.takeHeld("t1")); got != "authorize\nscreen\n" {
		t.Errorf("held lines of t1 %q; want authorize then screen", got)
	}
	if got := l.takeHeld("t1"); len(got) != 0 {
		t.Errorf("t1's lines handed out twice: %q", got)
	}

	l.hold("acme", "t2", []byte("archive\n"))
	l.hold("acme", "t2", []byte("emit\n"))
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := store.of("t2"); len(got) != 1 || got[0] != "archive\nemit\n" {
		t.Errorf("Flush wrote %q for t2; want one chunk with both lines", got)
	}

	// Nobody takes t3's lines: they are written on their own.
	l.hold("acme", "t3", []byte("dispatch\n"))
	deadline := time.Now().Add(30 * time.Second)
	for len(store.of("t3")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := store.of("t3"); len(got) != 1 || got[0] != "dispatch\n" {
		t.Errorf("t3's held line was written as %q; want one chunk", got)
	}
	if len(store.of("t1")) != 0 {
		t.Errorf("t1's lines, taken by its next activity, were also written on their own: %q", store.of("t1"))
	}

	b := &logBuffer{l: l, tenant: "acme", taskID: "t4"}
	b.lines.WriteString("infer\n")
	b.prepend([]byte("authorize\n"))
	if got := string(b.take()); got != "authorize\ninfer\n" {
		t.Errorf("prepend then take gave %q; want the held line first", got)
	}
	if got := b.take(); len(got) != 0 {
		t.Errorf("take left %q in the buffer", got)
	}
}
