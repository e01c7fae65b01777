package server

import (
	"context"
	"sync"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// Event is one thing a watcher learns about a task: its state changed,
// its progress moved, or it ended (then Result is set).
type Event struct {
	// Seq orders events; a client asks for those after the last it saw.
	// It is a clock reading in nanoseconds, so it keeps growing when the
	// server starts following a task anew (after idling, or a restart):
	// the client then sees the current state once more, never misses one.
	Seq      int64          `json:"seq"`
	Time     time.Time      `json:"time"`
	State    task.State     `json:"state"`
	Progress *task.Progress `json:"progress,omitempty"`
	Result   *task.Result   `json:"result,omitempty"`
	// Transitions are the entries of the task's audit trail from index
	// AuditFrom on, read once per state change for every watcher, so a
	// watcher shows each transition's actor, reason and own time without
	// asking a worker itself. Empty when no worker answered in time.
	Transitions []task.Transition `json:"transitions,omitempty"`
	AuditFrom   int               `json:"audit_from,omitempty"`
}

// Events is the answer of the events endpoint: what happened after the
// seq the client gave, and whether the task has ended.
type Events struct {
	Events []Event `json:"events"`
	Final  bool    `json:"final"`
}

// hub feeds the events endpoint. One follower per watched task, however
// many clients watch it, reads what the Temporal server already has:
// the TaskState search attribute (DescribeWorkflowExecution) and the
// workflow's result (a long poll). Neither needs a worker, so watchers do
// not compete with the work for workflow slots, and a slow or restarting
// worker only delays progress figures, which come from a status query at
// most every few seconds and are skipped when it times out.
type hub struct {
	tasks     *taskclient.Client
	mu        sync.Mutex
	tasksByID map[string]*follower
}

func newHub(tc *taskclient.Client) *hub {
	return &hub{tasks: tc, tasksByID: map[string]*follower{}}
}

type follower struct {
	mu       sync.Mutex
	events   []Event
	final    bool
	changed  chan struct{} // closed and replaced on every new event
	watchers int
	poke     chan struct{}
}

const (
	describeEvery = 500 * time.Millisecond
	progressEvery = 2 * time.Second
	// auditWait bounds the one status query per state change that
	// gives watchers the transitions' actors and reasons; a busy worker
	// only costs them those.
	auditWait = 2 * time.Second
	// idleStop ends a follower nobody has asked about for this long.
	idleStop = 30 * time.Second
)

func (h *hub) follow(id string) *follower {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.tasksByID[id]
	if f == nil {
		f = &follower{changed: make(chan struct{}), poke: make(chan struct{}, 1)}
		h.tasksByID[id] = f
		go h.run(id, f)
	}
	return f
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

// wait returns the events after seq, blocking until there is one or ctx
// ends.
func (h *hub) wait(ctx context.Context, id string, after int64) ([]Event, bool) {
	f := h.follow(id)
	f.mu.Lock()
	f.watchers++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.watchers--
		f.mu.Unlock()
	}()
	for {
		f.mu.Lock()
		var out []Event
		for _, e := range f.events {
			if e.Seq > after {
				out = append(out, e)
			}
		}
		final, ch := f.final, f.changed
		f.mu.Unlock()
		if len(out) > 0 || final {
			return out, final
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-ch:
		}
	}
}

func (f *follower) add(e Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e.Time = time.Now().UTC()
	e.Seq = e.Time.UnixNano()
	if n := len(f.events); n > 0 && e.Seq <= f.events[n-1].Seq {
		e.Seq = f.events[n-1].Seq + 1
	}
	f.events = append(f.events, e)
	if e.Result != nil || e.State.Final() {
		f.final = true
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (h *hub) run(id string, f *follower) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer func() {
		h.mu.Lock()
		delete(h.tasksByID, id)
		h.mu.Unlock()
		// Anyone still waiting looks again, and starts a new follower.
		f.mu.Lock()
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}()
	ended := make(chan task.Result, 1)
	go func() {
		// The result long poll: answered by the Temporal server when the
		// workflow closes. It is retried until it answers or the follower
		// stops.
		for ctx.Err() == nil {
			res, err := h.tasks.Wait(ctx, id)
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
	}()
	var state task.State
	var progress task.Counts
	audit := 0 // audit entries sent so far
	lastProgress, idleSince := time.Time{}, time.Now()
	tick := time.NewTicker(describeEvery)
	defer tick.Stop()
	for {
		select {
		case res := <-ended:
			f.add(Event{State: res.State, Result: &res})
			// Late callers get the end from here, for a while.
			select {
			case <-ctx.Done():
			case <-time.After(idleStop):
			}
			return
		case <-tick.C:
		case <-f.poke:
		}
		f.mu.Lock()
		watched := f.watchers > 0
		f.mu.Unlock()
		if watched {
			idleSince = time.Now()
		} else if time.Since(idleSince) > idleStop {
			return
		}
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := h.tasks.Temporal.DescribeWorkflowExecution(dctx, task.WorkflowID(id), "")
		dcancel()
		if err != nil {
			continue
		}
		var s string
		if p := d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[task.AttrState.GetName()]; p != nil {
			_ = decodePayload(p, &s)
		}
		if task.State(s) != state && s != "" {
			state = task.State(s)
			e := Event{State: state, AuditFrom: audit}
			qctx, qcancel := context.WithTimeout(ctx, auditWait)
			st, err := h.tasks.Status(qctx, id)
			qcancel()
			if err == nil && len(st.Audit) > audit {
				e.Transitions = st.Audit[audit:]
				audit = len(st.Audit)
			}
			f.add(e)
		}
		if state == task.Running && time.Since(lastProgress) >= progressEvery {
			lastProgress = time.Now()
			qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := h.tasks.Status(qctx, id)
			qcancel()
			if err == nil && st.Progress.Counts != progress && st.State == task.Running {
				progress = st.Progress.Counts
				p := st.Progress
				f.add(Event{State: state, Progress: &p})
			}
		}
	}
}
