package activities

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"time"
)

// heldLog is one task's lines waiting for the task's next chunk.
type heldLog struct {
	tenant string
	lines  bytes.Buffer
	// dropped counts the lines past the bound, noted when written.
	dropped int
	// tries counts the writes of these lines that failed.
	tries int
}

// logLinger is how long the lines of a task's local activities wait for
// the task's next chunk before they are written on their own.
const logLinger = time.Second

// maxHeldLog bounds the lines held for every task together while the
// bucket does not take them.
const maxHeldLog = 16 << 20

// maxLogRetry is the longest wait between two tries of held lines.
const maxLogRetry = 30 * time.Second

// hold keeps lines for the task's next chunk, and writes them after
// logLinger if no activity of the task comes first: the lines of local
// activities, and lines the bucket did not take.
func (l *TaskLogs) hold(tenant, taskID string, lines []byte) {
	l.holdAgain(tenant, taskID, lines, 0, 0)
}

// holdAgain holds lines (and a count of lines dropped before them) that
// have failed to be written tries times; the next try waits longer.
func (l *TaskLogs) holdAgain(tenant, taskID string, lines []byte, dropped, tries int) {
	if len(lines) == 0 && dropped == 0 {
		return
	}
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.held == nil {
		l.held = map[string]*heldLog{}
	}
	h := l.held[taskID]
	if h == nil {
		h = &heldLog{tenant: tenant, tries: tries}
		l.held[taskID] = h
		wait := min(logLinger<<min(tries, 6), maxLogRetry)
		time.AfterFunc(wait, func() { l.writeHeld(taskID, true) })
	}
	h.dropped += dropped
	if l.heldBytes+len(lines) > maxHeldLog {
		h.dropped += bytes.Count(lines, []byte("\n"))
		return
	}
	h.lines.Write(lines)
	l.heldBytes += len(lines)
}

// release removes the task's held lines from the held set; l.pmu is held.
func (l *TaskLogs) release(taskID string) *heldLog {
	h := l.held[taskID]
	delete(l.held, taskID)
	if h != nil {
		l.heldBytes -= h.lines.Len()
	}
	return h
}

// takeHeld returns the task's held lines, with a note of any dropped,
// which the caller writes.
func (l *TaskLogs) takeHeld(taskID string) []byte {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	h := l.release(taskID)
	if h == nil {
		return nil
	}
	return append(droppedNote(taskID, h.dropped), h.lines.Bytes()...)
}

// writeHeld writes the task's held lines as a chunk of their own; when
// again, lines the bucket did not take are held for another try.
func (l *TaskLogs) writeHeld(taskID string, again bool) error {
	l.pmu.Lock()
	h := l.release(taskID)
	l.pmu.Unlock()
	if h == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := l.writeChunk(ctx, h.tenant, taskID, append(droppedNote(taskID, h.dropped), h.lines.Bytes()...))
	if err != nil && again {
		l.holdAgain(h.tenant, taskID, h.lines.Bytes(), h.dropped, h.tries+1)
	}
	return err
}

// Flush writes every task's held lines: when the worker stops.
func (l *TaskLogs) Flush() error {
	l.pmu.Lock()
	ids := slices.Collect(maps.Keys(l.held))
	l.pmu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, l.writeHeld(id, false))
	}
	return errors.Join(errs...)
}
