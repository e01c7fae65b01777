package workflows

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// The log archive for real: the Temporal dev server and MinIO from
// devstack, a worker with the TaskLogs interceptor, tasks whose activities
// log, and LogArchiveWorkflow run directly (with Now moved 8 days on) and
// through its Schedule.

// logNoteInput is the input of the stand-in task's activity: it names the
// tenant the way the real activities do.
type logNoteInput struct {
	Tenant string   `json:"tenant"`
	TaskID string   `json:"task_id"`
	Lines  []string `json:"lines"`
}

// note logs each line through the activity logger, as task activities do.
func logNote(ctx context.Context, in logNoteInput) error {
	for i, l := range in.Lines {
		activity.GetLogger(ctx).Info(l, "n", i)
	}
	return nil
}

// anonymous logs without naming its tenant (like dispatch): TaskLogs
// finds the tenant from the workflow's search attribute.
func logAnonymous(ctx context.Context, taskID string) error {
	activity.GetLogger(ctx).Info("no tenant in my input", "task", taskID)
	return nil
}

// logStandInTask is registered as TaskWorkflow on the test worker: two
// activities that log, one with and one without a tenant in its input.
func logStandInTask(ctx workflow.Context, in logNoteInput) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	if err := workflow.ExecuteActivity(ctx, logNote, in).Get(ctx, nil); err != nil {
		return err
	}
	return workflow.ExecuteActivity(ctx, logAnonymous, in.TaskID).Get(ctx, nil)
}

type logArchiveStack struct {
	t      *testing.T
	stack  *devstack.Stack
	tc     client.Client
	store  storage.Store
	tenant string
}

const e2eBucket = "logs"

func startLogArchiveStack(t *testing.T) *logArchiveStack {
	if testing.Short() {
		t.Skip("-short: no Temporal dev server and MinIO")
	}
	bin, err := devstack.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{Dir: dir, BinDir: bin, Buckets: []string{e2eBucket}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(st.LogDir + "/temporal.log")
			t.Logf("temporal.log:\n%s", b)
		}
	})
	tc, err := client.Dial(client.Options{HostPort: st.TemporalAddress, Namespace: st.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	store, err := storage.Open(ctx, storage.Config{Endpoint: st.S3Endpoint, Bucket: e2eBucket, Insecure: true, AccessKey: st.AccessKey, SecretKey: st.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.EnsureBucket(ctx, store); err != nil {
		t.Fatal(err)
	}
	w := worker.New(tc, task.TaskQueue, worker.Options{
		Interceptors: []interceptor.WorkerInterceptor{&activities.TaskLogs{Store: store, Temporal: tc, Node: "e2e"}},
	})
	w.RegisterWorkflowWithOptions(logStandInTask, workflow.RegisterOptions{Name: task.WorkflowType})
	w.RegisterWorkflowWithOptions(LogArchiveWorkflow, workflow.RegisterOptions{Name: task.LogArchiveWorkflowType})
	w.RegisterActivity(logNote)
	w.RegisterActivity(logAnonymous)
	w.RegisterActivity(&activities.Activities{Store: store})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return &logArchiveStack{t: t, stack: st, tc: tc, store: store, tenant: "acme"}
}

func (e *logArchiveStack) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	e.t.Cleanup(cancel)
	return ctx
}

// runTask runs the stand-in task with the tenant as search attribute, as
// taskclient.Submit starts real ones.
func (e *logArchiveStack) runTask(taskID string, lines ...string) {
	e.t.Helper()
	run, err := e.tc.ExecuteWorkflow(e.ctx(), client.StartWorkflowOptions{
		ID: task.WorkflowID(taskID), TaskQueue: task.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(task.AttrTenant.ValueSet(e.tenant)),
	}, task.WorkflowType, logNoteInput{Tenant: e.tenant, TaskID: taskID, Lines: lines})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := run.Get(e.ctx(), nil); err != nil {
		e.t.Fatal(err)
	}
}

func (e *logArchiveStack) archive(in task.LogArchiveInput) task.LogArchiveResult {
	e.t.Helper()
	run, err := e.tc.ExecuteWorkflow(e.ctx(), client.StartWorkflowOptions{ID: task.LogArchiveWorkflowID + "-test-" + fmt.Sprint(time.Now().UnixNano()), TaskQueue: task.TaskQueue}, task.LogArchiveWorkflowType, in)
	if err != nil {
		e.t.Fatal(err)
	}
	var res task.LogArchiveResult
	if err := run.Get(e.ctx(), &res); err != nil {
		e.t.Fatal(err)
	}
	h := e.replay(run.GetID(), run.GetRunID())
	if *recordLogArchive != "" && res.Chunks > 0 {
		b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(*recordLogArchive, b, 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	return res
}

// recordLogArchive, when set, saves the history of the run that archives
// to that file, for logarchive_replay_test.go:
//
//	go test ./workflows -run OnDevServer -record-logarchive testdata/logarchive_archived.json
var recordLogArchive = flag.String("record-logarchive", "", "save the history of the archiving run to this JSON file")

// replay checks the recorded history of a run against the workflow code.
func (e *logArchiveStack) replay(wid, rid string) *historypb.History {
	e.t.Helper()
	iter := e.tc.GetWorkflowHistory(e.ctx(), wid, rid, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			e.t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(LogArchiveWorkflow, workflow.RegisterOptions{Name: task.LogArchiveWorkflowType})
	if err := r.ReplayWorkflowHistory(nil, h); err != nil {
		e.t.Errorf("replaying %s: %v", wid, err)
	}
	return h
}

// chunks are the names of a task's log chunks in the bucket.
func (e *logArchiveStack) chunks(taskID string) []string {
	e.t.Helper()
	list, err := e.store.List(e.ctx(), storage.TaskPrefix(storage.Log, e.tenant, taskID))
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, in := range list {
		names = append(names, storage.NameOf(in.Key))
	}
	return names
}

// archived reads the task's archive of today: member name -> content.
func (e *logArchiveStack) archived(taskID string) (map[string]string, []string) {
	e.t.Helper()
	key, _ := storage.Key(storage.Archive, e.tenant, taskID, "logs/"+time.Now().UTC().Format("20060102")+".tar.gz")
	rc, info, err := e.store.Get(e.ctx(), key)
	if err != nil {
		e.t.Fatalf("archive of %s: %v", taskID, err)
	}
	defer rc.Close()
	if info.ContentType != "application/gzip" {
		e.t.Errorf("archive content type %q", info.ContentType)
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		e.t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	members := map[string]string{}
	var order []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			e.t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		members[h.Name] = string(b)
		order = append(order, h.Name)
	}
	return members, order
}

func TestLogArchiveOnDevServer(t *testing.T) {
	e := startLogArchiveStack(t)
	e.runTask("t1", "loading the batch", "answer 1 of 2")
	e.runTask("t2", "only line")

	// Each activity of a task wrote one chunk of JSON lines.
	t1 := e.chunks("t1")
	if len(t1) != 2 || len(e.chunks("t2")) != 2 {
		t.Fatalf("log chunks t1 %q, t2 %q; want two each (one per activity)", t1, e.chunks("t2"))
	}
	lines := e.lines("t1", t1)
	for _, want := range []string{"activity started", "loading the batch", "answer 1 of 2", "activity completed", "no tenant in my input"} {
		if !slices.ContainsFunc(lines, func(l map[string]any) bool { return l["msg"] == want }) {
			t.Errorf("the log of t1 has no line %q: %v", want, lines)
		}
	}
	for _, l := range lines {
		if l["task_id"] != "t1" || l["tenant"] != e.tenant || l["node"] != "e2e" || l["time"] == nil || l["level"] == nil {
			t.Errorf("log line without its task, tenant, node, time or level: %v", l)
		}
	}

	// Today's logs are not 7 days old: nothing moves.
	if res := e.archive(task.LogArchiveInput{}); res.Chunks != 0 || len(e.chunks("t1")) != 2 {
		t.Fatalf("archiving fresh logs: %+v, chunks left %q; want nothing archived", res, e.chunks("t1"))
	}
	// Eight days on, they are.
	res := e.archive(task.LogArchiveInput{Now: time.Now().Add(8 * 24 * time.Hour)})
	if res.Tasks != 2 || res.Chunks != 4 || res.Failed != 0 || res.Bytes == 0 {
		t.Errorf("archiving 8 days on: %+v; want 2 tasks, 4 chunks", res)
	}
	if left := append(e.chunks("t1"), e.chunks("t2")...); len(left) != 0 {
		t.Errorf("chunks left after archiving: %q", left)
	}
	members, _ := e.archived("t1")
	for _, name := range t1 {
		if members[name] == "" {
			t.Errorf("the archive of t1 lacks %s: has %v", name, memberNames(members))
		}
	}
	e.checkArchiveTagged("t1")

	// More log, then the Schedule's own run (it archives what is older
	// than a millisecond): the day's archive grows, nothing twice.
	e.runTask("t1", "second run")
	if _, err := taskclient.InstallLogArchiveSchedule(e.ctx(), e.tc, taskclient.LogArchiveSchedule{Every: time.Hour, OlderThan: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	info, err := taskclient.DescribeLogArchiveSchedule(e.ctx(), e.tc)
	if err != nil || info.Every != time.Hour || info.OlderThan != time.Millisecond || len(info.NextRuns) == 0 {
		t.Fatalf("schedule read back: %+v, %v", info, err)
	}
	if created, err := taskclient.InstallLogArchiveSchedule(e.ctx(), e.tc, taskclient.LogArchiveSchedule{Every: time.Hour, OlderThan: time.Millisecond}); err != nil || created {
		t.Fatalf("installing again: created %t, %v; want an update", created, err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := taskclient.TriggerLogArchive(e.ctx(), e.tc); err != nil {
		t.Fatal(err)
	}
	e.waitForScheduledRun()
	members, order := e.archived("t1")
	if len(members) != 4 || len(order) != 4 || len(e.chunks("t1")) != 0 {
		t.Errorf("after the scheduled run the archive of t1 has %v (chunks left %q); want the 4 chunks once each", order, e.chunks("t1"))
	}
	if err := taskclient.DeleteLogArchiveSchedule(e.ctx(), e.tc); err != nil {
		t.Fatal(err)
	}
	if _, err := taskclient.DescribeLogArchiveSchedule(e.ctx(), e.tc); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("describing a deleted schedule: %v, want NotFound", err)
	}
}

func memberNames(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// lines reads the named chunks of a task's log as JSON lines.
func (e *logArchiveStack) lines(taskID string, names []string) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, n := range names {
		key, _ := storage.Key(storage.Log, e.tenant, taskID, n)
		rc, _, err := e.store.Get(e.ctx(), key)
		if err != nil {
			e.t.Fatal(err)
		}
		dec := json.NewDecoder(rc)
		for {
			var l map[string]any
			if err := dec.Decode(&l); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				e.t.Fatalf("%s is not JSON lines: %v", key, err)
			}
			out = append(out, l)
		}
		rc.Close()
	}
	return out
}

// checkArchiveTagged wants the archive tagged for log retention.
func (e *logArchiveStack) checkArchiveTagged(taskID string) {
	e.t.Helper()
	mc, err := e.stack.S3Client()
	if err != nil {
		e.t.Fatal(err)
	}
	key, _ := storage.Key(storage.Archive, e.tenant, taskID, "logs/"+time.Now().UTC().Format("20060102")+".tar.gz")
	tags, err := mc.GetObjectTagging(e.ctx(), e2eBucket, key, minio.GetObjectTaggingOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if got := tags.ToMap()[storage.TagKind]; got != storage.KindLogArc {
		e.t.Errorf("archive tags %v, want %s=%s", tags.ToMap(), storage.TagKind, storage.KindLogArc)
	}
}

// waitForScheduledRun waits for the schedule's run to finish.
func (e *logArchiveStack) waitForScheduledRun() {
	e.t.Helper()
	ctx := e.ctx()
	for {
		d, err := e.tc.ScheduleClient().GetHandle(ctx, task.LogArchiveScheduleID).Describe(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if n := len(d.Info.RecentActions); n > 0 {
			wf := d.Info.RecentActions[n-1].StartWorkflowResult
			if err := e.tc.GetWorkflow(ctx, wf.WorkflowID, wf.FirstExecutionRunID).Get(ctx, nil); err != nil {
				e.t.Fatal(err)
			}
			if !strings.HasPrefix(wf.WorkflowID, task.LogArchiveWorkflowID) {
				e.t.Errorf("the scheduled run is %s, want an ID starting with %s", wf.WorkflowID, task.LogArchiveWorkflowID)
			}
			return
		}
		select {
		case <-ctx.Done():
			e.t.Fatal("the schedule did not start a run")
		case <-time.After(100 * time.Millisecond):
		}
	}
}
