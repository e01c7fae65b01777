package logging

import (
	"sync"

	"github.com/sirupsen/logrus"
)

// Recent is a logrus hook that keeps the last lines of the log, formatted
// as the logger writes them, so that a fleet command can collect a node's
// log without knowing where its stdout goes.
type Recent struct {
	mu    sync.Mutex
	lines [][]byte
	next  int
	full  bool
}

// NewRecent keeps the last n lines.
func NewRecent(n int) *Recent { return &Recent{lines: make([][]byte, max(n, 1))} }

// Levels are all levels: what the logger lets through is kept.
func (r *Recent) Levels() []logrus.Level { return logrus.AllLevels }

// Fire keeps one line.
func (r *Recent) Fire(e *logrus.Entry) error {
	b, err := e.Bytes()
	if err != nil {
		return nil // a line that cannot be formatted is not worth failing the log
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines[r.next] = b
	r.next = (r.next + 1) % len(r.lines)
	r.full = r.full || r.next == 0
	return nil
}

// Bytes are the kept lines, oldest first.
func (r *Recent) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []byte
	if r.full {
		for _, l := range r.lines[r.next:] {
			out = append(out, l...)
		}
	}
	for _, l := range r.lines[:r.next] {
		out = append(out, l...)
	}
	return out
}
