package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// Change is one thing a watcher learns about a task: its state changed,
// its progress moved, or it ended (then Result is set).
type Change struct {
	// Seq orders changes; a client asks for those after the last it saw.
	// It is a clock reading in nanoseconds, so it keeps growing when the
	// server starts following a task anew (after idling, or a restart):
	// the client then sees the current state once more, never misses one.
	Seq      int64          `json:"seq"`
	Time     time.Time      `json:"time"`
	State    task.State     `json:"state"`
	Progress *task.Progress `json:"progress,omitempty"`
	// Training is a fine-tuning task's step, epoch and loss while it
	// trains.
	Training *task.FineTuneStatus `json:"training,omitempty"`
	Result   *task.Result         `json:"result,omitempty"`
	// Transitions are the entries of the task's audit trail from index
	// AuditFrom on, read once per state change for every watcher, so a
	// watcher shows each transition's actor, reason and own time without
	// asking a worker itself. Empty when no worker answered in time.
	Transitions []task.Transition `json:"transitions,omitempty"`
	AuditFrom   int               `json:"audit_from,omitempty"`
}

// Changes is the answer of the changes endpoint: what happened after the
// seq the client gave, and whether the task has ended.
type Changes struct {
	Changes []Change `json:"changes"`
	Final   bool     `json:"final"`
}

// taskSource is what a follower reads of a task: the Temporal server's
// own view, which needs no worker, and the status query, which does.
type taskSource interface {
	// State is the task's TaskState search attribute.
	State(ctx context.Context, id string) (task.State, error)
	// Wait long-polls the workflow's result.
	Wait(ctx context.Context, id string) (task.Result, error)
	// Status is the workflow's status query.
	Status(ctx context.Context, id string) (task.Status, error)
}

// temporalSource reads a task through taskclient.
type temporalSource struct{ tasks *taskclient.Client }

func (t temporalSource) State(ctx context.Context, id string) (task.State, error) {
	d, err := t.tasks.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
	if err != nil {
		return "", err
	}
	var s string
	if p := d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[task.AttrState.GetName()]; p != nil {
		_ = decodePayload(p, &s)
	}
	return task.State(s), nil
}

func (t temporalSource) Wait(ctx context.Context, id string) (task.Result, error) {
	return t.tasks.Wait(ctx, id)
}

func (t temporalSource) Status(ctx context.Context, id string) (task.Status, error) {
	return t.tasks.Status(ctx, id)
}

// hub feeds the changes endpoint. One follower per watched task, however
// many clients watch it, reads what the Temporal server already has:
// the TaskState search attribute (DescribeWorkflowExecution) and the
// workflow's result (a long poll). Its calls are shared by every watcher
// of the task. Neither needs a worker, so watchers do not compete with the
// work for workflow slots, and a slow or restarting worker only delays
// progress figures, which come from a status query at most every few
// seconds and are skipped when it times out.
//
// A follower keeps the last maxChanges changes only, so its memory and the
// scan of each wake-up stay bounded however long the task runs; a watcher
// that fell further behind gets those, the current state among them. A
// follower that stops (idle, or a panic) is replaced by the next watcher.
type hub struct {
	src       taskSource
	log       *logrus.Logger
	mu        sync.Mutex
	tasksByID map[string]*follower
	// started counts the followers ever started, for tests.
	started int
}

func newHub(src taskSource, log *logrus.Logger) *hub {
	return &hub{src: src, log: log, tasksByID: map[string]*follower{}}
}

type follower struct {
	mu      sync.Mutex
	changes []Change
	final   bool
	changed chan struct{} // closed and replaced on every new change
	// done is closed when the follower has stopped: its watchers go to
	// its replacement.
	done chan struct{}
	// watchers is guarded by hub.mu, so that a follower is never dropped
	// for idleness while a watcher is joining it.
	watchers int
	poke     chan struct{}
}

const (
	describeEvery = time.Second
	progressEvery = 2 * time.Second
	// auditWait bounds the one status query per state change that
	// gives watchers the transitions' actors and reasons; a busy worker
	// only costs them those.
	auditWait = 2 * time.Second
	// idleStop ends a follower nobody has asked about for this long.
	idleStop = 30 * time.Second
	// maxChanges is how many of a task's most recent changes its follower
	// keeps.
	maxChanges = 64
)

// join returns the live follower of id, starting one if there is none,
// counted as watched until leave.
func (h *hub) join(id string) *follower {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.tasksByID[id]
	if f == nil {
		f = &follower{changed: make(chan struct{}), done: make(chan struct{}), poke: make(chan struct{}, 1)}
		h.tasksByID[id] = f
		h.started++
		go h.run(id, f)
	}
	f.watchers++
	return f
}

func (h *hub) leave(f *follower) {
	h.mu.Lock()
	f.watchers--
	h.mu.Unlock()
}

// poke makes the follower of id, if any, look again now: the server just
// changed the task.
func (h *hub) poke(id string) {
	h.mu.Lock()
	f := h.tasksByID[id]
	h.mu.Unlock()
	if f != nil {
		select {
		case f.poke <- struct{}{}:
		default:
		}
	}
}

// wait returns the changes after seq, blocking until there is one or ctx
// ends.
func (h *hub) wait(ctx context.Context, id string, after int64) ([]Change, bool) {
	for {
		f := h.join(id)
		out, final, changed := f.since(after)
		if len(out) > 0 || final {
			h.leave(f)
			return out, final
		}
		select {
		case <-ctx.Done():
			h.leave(f)
			return nil, false
		case <-changed:
		case <-f.done:
		}
		h.leave(f)
	}
}

// since is the changes after seq, whether the task has ended, and the
// channel closed at the next change.
func (f *follower) since(after int64) ([]Change, bool, chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Change
	for _, e := range f.changes {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out, f.final, f.changed
}

func (f *follower) add(e Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e.Time = time.Now().UTC()
	e.Seq = e.Time.UnixNano()
	if n := len(f.changes); n > 0 && e.Seq <= f.changes[n-1].Seq {
		e.Seq = f.changes[n-1].Seq + 1
	}
	if len(f.changes) == maxChanges {
		// Shift rather than reslice, so the array does not creep forward
		// and keep growing underneath.
		copy(f.changes, f.changes[1:])
		f.changes = f.changes[:maxChanges-1]
	}
	f.changes = append(f.changes, e)
	if e.Result != nil || e.State.Final() {
		f.final = true
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// run follows task id until nobody watches it or, once it has ended, for
// idleStop more. Whatever ends it, the follower leaves the hub and its
// watchers move to a new one.
func (h *hub) run(id string, f *follower) {
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		if r := recover(); r != nil {
			h.log.WithField("task", id).WithField("panic", fmt.Sprint(r)).Error("the changes follower of a task stopped; the next watcher starts another")
		}
		h.mu.Lock()
		if h.tasksByID[id] == f {
			delete(h.tasksByID, id)
		}
		h.mu.Unlock()
		close(f.done)
	}()
	ended := make(chan task.Result, 1)
	go h.waitResult(ctx, id, ended)
	var state task.State
	var progress task.Counts
	step := 0  // the training step last sent
	audit := 0 // audit entries sent so far
	lastProgress, idleSince := time.Time{}, time.Now()
	tick := time.NewTicker(describeEvery)
	defer tick.Stop()
	for {
		select {
		case res := <-ended:
			// The end carries the audit lines not sent yet (ARCHIVING and
			// the final one), so a watcher shows them with their actors
			// rather than the bare final state.
			c := Change{State: res.State, Result: &res, AuditFrom: audit}
			qctx, qcancel := context.WithTimeout(ctx, auditWait)
			st, err := h.src.Status(qctx, id)
			qcancel()
			if err == nil && len(st.Audit) > audit {
				c.Transitions = st.Audit[audit:]
			}
			c.Progress = closingProgress(progress, task.Progress{Counts: res.Counts})
			f.add(c)
			// Late callers get the end from here, for a while.
			select {
			case <-ctx.Done():
			case <-time.After(idleStop):
			}
			return
		case <-tick.C:
		case <-f.poke:
		}
		if h.idle(id, f, &idleSince) {
			return
		}
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := h.src.State(dctx, id)
		dcancel()
		if err != nil {
			continue
		}
		if s != state && s != "" {
			state = s
			e := Change{State: state, AuditFrom: audit}
			qctx, qcancel := context.WithTimeout(ctx, auditWait)
			st, err := h.src.Status(qctx, id)
			qcancel()
			if err == nil && len(st.Audit) > audit {
				e.Transitions = st.Audit[audit:]
				audit = len(st.Audit)
			}
			if err == nil && state != task.Running {
				if e.Progress = closingProgress(progress, st.Progress); e.Progress != nil {
					progress = e.Progress.Counts
				}
			}
			f.add(e)
		}
		if state == task.Running && time.Since(lastProgress) >= progressEvery {
			lastProgress = time.Now()
			qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := h.src.Status(qctx, id)
			qcancel()
			if err == nil && st.Progress.Counts != progress && st.State == task.Running {
				progress = st.Progress.Counts
				p := st.Progress
				f.add(Change{State: state, Progress: &p})
			}
			if err == nil && st.FineTune != nil && st.FineTune.Step != step && st.State == task.Running {
				step = st.FineTune.Step
				f.add(Change{State: state, Training: st.FineTune})
			}
		}
	}
}

// closingProgress is the progress a change that ends a run carries, so
// a watcher's bar closes on the counts the run ended with rather than
// those of the last progress change: nil when no progress was sent
// (nothing to close) or the counts have not moved since.
func closingProgress(sent task.Counts, now task.Progress) *task.Progress {
	if sent.Total == 0 || now.Counts == sent || now.Total == 0 {
		return nil
	}
	return &now
}

// idle reports whether f has had no watcher for idleStop, and if so takes
// it out of the hub, in one step with the check, so that no watcher joins
// a follower about to stop.
func (h *hub) idle(id string, f *follower, since *time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f.watchers > 0 {
		*since = time.Now()
		return false
	}
	if time.Since(*since) <= idleStop {
		return false
	}
	delete(h.tasksByID, id)
	return true
}

// waitResult is the result long poll: answered by the Temporal server
// when the workflow closes, retried until it answers or ctx ends.
func (h *hub) waitResult(ctx context.Context, id string, ended chan<- task.Result) {
	for ctx.Err() == nil {
		res, err := h.src.Wait(ctx, id)
		if err == nil {
			ended <- res
			return
		}
		if t := errType(err); t != "" {
			ended <- task.Result{ID: id, State: task.Failed, Reason: string(t) + ": " + errMessage(err)}
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
