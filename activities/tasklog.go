package activities

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TaskLogs writes each task's log to the bucket as the task runs. It is an
// activity interceptor: every activity of a TaskWorkflow gets a logger (the
// one activity.GetLogger returns) that also keeps its lines, as JSON, in a
// buffer of its own; the interceptor adds a line when the activity starts
// and one when it ends, and writes the buffer when the activity ends (or
// when it grows past FlushBytes) as a new object:
//
//	log/<hash>/<tenant>/<task>/<yyyymmdd>-<hhmmss>.<nanoseconds>.jsonl
//
// S3 has no append, so a log is a series of such chunks; LogArchiveWorkflow
// later packs a task's old chunks into one archive. Writing a log never
// fails an activity: a chunk the bucket does not take (an outage) is held
// and tried again, with backoff, until it is written or the worker stops;
// held lines are bounded (maxHeldLog), and only lines past the bound are
// dropped, with a line in the chunk saying how many.
type TaskLogs struct {
	// The base passes clients and workflows through untouched.
	interceptor.WorkerInterceptorBase

	Store storage.Store
	// Temporal finds the tenant of a task whose activity input does not
	// name it, from the workflow's search attributes; nil skips those.
	Temporal client.Client
	// Node is written on every line.
	Node string
	// FlushBytes writes a chunk early when the buffer grows past it;
	// 0 is 256 KiB.
	FlushBytes int

	mu      sync.Mutex
	tenants map[string]string // task ID -> tenant, learned on the way

	pmu sync.Mutex
	// held are the lines not written yet, by task ID: those of local
	// activities, and those the bucket did not take (see hold).
	held map[string]*heldLog
	// heldBytes is the size of every held line, bounded by maxHeldLog.
	heldBytes int
}

var _ interceptor.WorkerInterceptor = (*TaskLogs)(nil)

// maxTenantCache bounds TaskLogs' memory of tenants; it starts afresh when
// full.
const maxTenantCache = 10000

// maxLogBuffer bounds a buffer whose chunks cannot be written; newer lines
// are dropped past it, and the chunk says how many.
const maxLogBuffer = 4 << 20

// logSeqTries bounds the search for a free chunk name when activities of
// the same task (pieces on several nodes) write at the same instant.
const logSeqTries = 20

// InterceptActivity gives each activity execution its own log buffer.
func (l *TaskLogs) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &taskLogInbound{l: l}
	i.Next = next
	return i
}

// taskLogInbound is one activity execution.
type taskLogInbound struct {
	interceptor.ActivityInboundInterceptorBase
	l        *TaskLogs
	outbound interceptor.ActivityOutboundInterceptor // the SDK's, past ours
	buf      *logBuffer                              // nil when the activity is not a task's
}

func (i *taskLogInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	i.outbound = outbound
	o := &taskLogOutbound{in: i}
	o.Next = outbound
	return i.Next.Init(o)
}

func (i *taskLogInbound) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	info := activity.GetInfo(ctx)
	if info.WorkflowType == nil || info.WorkflowType.Name != task.WorkflowType {
		return i.Next.ExecuteActivity(ctx, in)
	}
	taskID := task.IDFromWorkflowID(info.WorkflowExecution.ID)
	tenant := i.l.tenant(ctx, taskID, info.WorkflowExecution, in.Args)
	if tenant == "" || storage.CheckID("tenant", tenant) != nil || storage.CheckID("task id", taskID) != nil {
		return i.Next.ExecuteActivity(ctx, in)
	}
	i.buf = &logBuffer{l: i.l, tenant: tenant, taskID: taskID, base: map[string]any{
		"task_id": taskID, "tenant": tenant, "activity": info.ActivityType.Name,
		"activity_id": info.ActivityID, "attempt": info.Attempt, "node": i.l.Node,
	}}
	start := time.Now()
	i.buf.add("info", "activity started", nil)
	res, err := i.Next.ExecuteActivity(ctx, in)
	fields := []any{"duration", time.Since(start).Round(time.Millisecond).String()}
	if err != nil {
		i.buf.add("error", "activity failed", append(fields, "error", err.Error()))
	} else {
		i.buf.add("info", "activity completed", fields)
	}
	// The activity's context may be cancelled; the log is still written.
	if info.IsLocalActivity {
		// The short control-plane stages of one workflow task share a
		// chunk, written with the task's next activity or a moment later:
		// one PUT instead of one each, and none on the workflow task's
		// path. A crash in that moment loses their lines; a crash before
		// the workflow task completed runs them again anyway.
		i.l.hold(i.buf.tenant, taskID, i.buf.take())
		return res, err
	}
	i.buf.prepend(i.l.takeHeld(taskID))
	if ferr := i.l.flushOrHold(ctx, i.buf); ferr != nil {
		i.outbound.GetLogger(ctx).Warn("task log not written yet; held for another try", "error", ferr)
	}
	return res, err
}

// flushOrHold writes an activity's lines as the task's next chunk when
// the activity ends (its context may be cancelled); when the bucket does
// not take them, they are held and tried again, not lost with the
// activity.
func (l *TaskLogs) flushOrHold(ctx context.Context, b *logBuffer) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := b.flush(fctx)
	if err != nil {
		b.mu.Lock()
		lines, dropped := bytes.Clone(b.lines.Bytes()), b.dropped
		b.lines.Reset()
		b.dropped = 0
		b.mu.Unlock()
		l.holdAgain(b.tenant, b.taskID, lines, dropped, 0)
	}
	return err
}

// taskLogOutbound hands the activity its tee logger.
type taskLogOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	in *taskLogInbound
}

func (o *taskLogOutbound) GetLogger(ctx context.Context) log.Logger {
	base := o.Next.GetLogger(ctx)
	if o.in.buf == nil {
		return base
	}
	return teeLogger{base: base, buf: o.in.buf}
}

// tenant is the tenant of a task: from the activity's input (every task
// activity but dispatch names it), else from what an earlier activity of the
// task said, else from the workflow's Tenant search attribute.
func (l *TaskLogs) tenant(ctx context.Context, taskID string, wf workflow.Execution, args []any) string {
	for _, a := range args {
		if t := probeTenant(a); t != "" {
			l.remember(taskID, t)
			return t
		}
	}
	l.mu.Lock()
	t := l.tenants[taskID]
	l.mu.Unlock()
	if t != "" || l.Temporal == nil {
		return t
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d, err := l.Temporal.DescribeWorkflowExecution(dctx, wf.ID, wf.RunID)
	if err != nil {
		return ""
	}
	if p := d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[task.AttrTenant.GetName()]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &t)
	}
	if t != "" {
		l.remember(taskID, t)
	}
	return t
}

func (l *TaskLogs) remember(taskID, tenant string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tenants == nil || len(l.tenants) >= maxTenantCache {
		l.tenants = map[string]string{}
	}
	l.tenants[taskID] = tenant
}

// probeTenant finds "tenant" in an activity input as JSON: at its top
// level (InferInput, CollectInput) or under "task" or "status"
// (AuthorizeInput, ScreenInput, ArchiveInput).
func probeTenant(arg any) string {
	b, err := json.Marshal(arg)
	if err != nil {
		return ""
	}
	var p struct {
		Tenant string `json:"tenant"`
		Task   struct {
			Tenant string `json:"tenant"`
		} `json:"task"`
		Status struct {
			Tenant string `json:"tenant"`
		} `json:"status"`
	}
	if json.Unmarshal(b, &p) != nil {
		return ""
	}
	for _, t := range []string{p.Tenant, p.Task.Tenant, p.Status.Tenant} {
		if t != "" {
			return t
		}
	}
	return ""
}

// teeLogger logs to the worker's log and to the task's buffer.
type teeLogger struct {
	base   log.Logger
	buf    *logBuffer
	fields []any
}

var (
	_ log.Logger          = teeLogger{}
	_ log.WithLogger      = teeLogger{}
	_ log.WithSkipCallers = teeLogger{}
)

func (t teeLogger) Debug(msg string, kv ...any) { t.base.Debug(msg, kv...); t.add("debug", msg, kv) }
func (t teeLogger) Info(msg string, kv ...any)  { t.base.Info(msg, kv...); t.add("info", msg, kv) }
func (t teeLogger) Warn(msg string, kv ...any)  { t.base.Warn(msg, kv...); t.add("warn", msg, kv) }
func (t teeLogger) Error(msg string, kv ...any) { t.base.Error(msg, kv...); t.add("error", msg, kv) }

func (t teeLogger) add(level, msg string, kv []any) {
	t.buf.add(level, msg, append(append([]any(nil), t.fields...), kv...))
}

// With binds fields for every later line.
func (t teeLogger) With(kv ...any) log.Logger {
	return teeLogger{base: log.With(t.base, kv...), buf: t.buf, fields: append(append([]any(nil), t.fields...), kv...)}
}

// WithCallerSkip passes the skip on to the worker's log.
func (t teeLogger) WithCallerSkip(n int) log.Logger {
	if s, ok := t.base.(log.WithSkipCallers); ok {
		return teeLogger{base: s.WithCallerSkip(n), buf: t.buf, fields: t.fields}
	}
	return t
}

// logBuffer holds one activity's lines until they are written.
type logBuffer struct {
	l              *TaskLogs
	tenant, taskID string
	base           map[string]any

	mu      sync.Mutex
	lines   bytes.Buffer
	dropped int
}

// add appends one JSON line and, past FlushBytes, writes the chunk.
func (b *logBuffer) add(level, msg string, kv []any) {
	line := maps.Clone(b.base)
	for i := 0; i+1 < len(kv); i += 2 {
		k := fmt.Sprint(kv[i])
		if _, reserved := line[k]; reserved {
			k = "field." + k
		}
		line[k] = jsonValue(kv[i+1])
	}
	line["time"], line["level"], line["msg"] = time.Now().UTC().Format(time.RFC3339Nano), level, msg
	enc, err := json.Marshal(line)
	if err != nil {
		enc, _ = json.Marshal(map[string]any{"time": line["time"], "level": level, "msg": msg, "log_error": err.Error()})
	}
	b.mu.Lock()
	if b.lines.Len()+len(enc) > maxLogBuffer {
		b.dropped++
		b.mu.Unlock()
		return
	}
	b.lines.Write(enc)
	b.lines.WriteByte('\n')
	full := b.lines.Len() >= cmp.Or(b.l.FlushBytes, 256<<10)
	b.mu.Unlock()
	if full {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = b.flush(ctx) // kept for the next try if it fails
	}
}

// jsonValue keeps errors and durations readable in JSON.
func jsonValue(v any) any {
	switch x := v.(type) {
	case error:
		return x.Error()
	case time.Duration:
		return x.String()
	case fmt.Stringer:
		return x.String()
	}
	return v
}

// noteDropped adds a line saying how many lines were dropped since the
// last chunk, so a reader of the log knows it has a gap. b.mu is held.
func (b *logBuffer) noteDropped() {
	b.lines.Write(droppedNote(b.taskID, b.dropped))
	b.dropped = 0
}

// droppedNote is the line that says n lines were dropped; empty when
// none were.
func droppedNote(taskID string, n int) []byte {
	if n == 0 {
		return nil
	}
	return fmt.Appendf(nil, `{"time":%q,"level":"warn","msg":"log lines dropped: the bucket did not take them","dropped":%d,"task_id":%q}`+"\n",
		time.Now().UTC().Format(time.RFC3339Nano), n, taskID)
}

// flush writes the buffered lines as the task's next log chunk.
func (b *logBuffer) flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.noteDropped()
	if b.lines.Len() == 0 {
		return nil
	}
	if err := b.l.writeChunk(ctx, b.tenant, b.taskID, b.lines.Bytes()); err != nil {
		return err
	}
	b.lines.Reset()
	return nil
}

// take returns the buffered lines (with a note of any dropped) and empties
// the buffer.
func (b *logBuffer) take() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.noteDropped()
	out := bytes.Clone(b.lines.Bytes())
	b.lines.Reset()
	return out
}

// prepend puts earlier lines before the buffered ones.
func (b *logBuffer) prepend(earlier []byte) {
	if len(earlier) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	rest := bytes.Clone(b.lines.Bytes())
	b.lines.Reset()
	b.lines.Write(earlier)
	b.lines.Write(rest)
}

// chunkName is the name of a log chunk: the UTC time it was written, to the
// nanosecond, so that names sort in time order and are never reused, even
// after the archive took the chunks before them.
var chunkName = regexp.MustCompile(`^(\d{8})-\d{6}\.\d{9}\.jsonl$`)

const chunkLayout = "20060102-150405.000000000"

// writeChunk creates the task's next chunk. Creates are conditional, so
// two writers of the same task in the same nanosecond (pieces on two
// nodes) never share a name: the loser takes the next instant.
func (l *TaskLogs) writeChunk(ctx context.Context, tenant, taskID string, lines []byte) error {
	for range logSeqTries {
		key, err := storage.Key(storage.Log, tenant, taskID, time.Now().UTC().Format(chunkLayout)+".jsonl")
		if err != nil {
			return err
		}
		_, err = l.Store.Create(ctx, key, bytes.NewReader(lines), int64(len(lines)), storage.PutOptions{ContentType: "application/jsonl"})
		if !errors.Is(err, storage.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("task log of %s: no free chunk name after %d tries", taskID, logSeqTries)
}
