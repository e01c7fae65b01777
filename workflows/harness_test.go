package workflows_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/workflows"
)

// The task every test runs: alice submits a batch to the demo tenant of
// the embedded default policy.
const (
	tenant    = "demo"
	submitter = "alice"
	node      = "node-a"
)

// awaiting is a moment at which a task that needs a reviewer is certainly
// waiting for one: the stubbed stages before it take no time, and the
// default deadline is 24h. The test environment skips to it at once.
const awaiting = time.Hour

// demoRules are the limits Authorize takes from the demo tenant of the
// embedded default policy.
func demoRules() activities.AuthorizeResult {
	t := authz.Default().Tenants[tenant]
	return activities.AuthorizeResult{Quorum: t.Quorum, ApprovalDeadline: t.ApprovalDeadline}
}

// rolesOf are user's roles in the default policy's demo tenant.
func rolesOf(user string) []authz.Role {
	return authz.Default().Tenants[tenant].Users[user]
}

// harness runs TaskWorkflow in the SDK's test environment. The activities
// are registered from a real *activities.Activities and each is stubbed by
// a field a test may replace before run; the real activities are covered
// by the integration tests.
type harness struct {
	t    *testing.T
	env  *testsuite.TestWorkflowEnvironment
	acts *activities.Activities
	in   task.Input

	rules     activities.AuthorizeResult
	screening task.Screening
	cut       []activities.Piece // screening's pieces; nil runs the batch whole
	authorize func(context.Context, activities.AuthorizeInput) (activities.AuthorizeResult, error)
	dispatch  func(context.Context, activities.DispatchInput) (activities.DispatchResult, error)
	infer     func(context.Context, activities.InferInput) (activities.InferResult, error)
	merge     func(context.Context, activities.MergeInput) (activities.InferResult, error)
	collect   func(context.Context, activities.CollectInput) (activities.InferResult, error)
	archive   func(context.Context, activities.ArchiveInput) (activities.ArchiveResult, error)

	calls map[string]*atomic.Int32
	// onStart and onCancel run, in the test environment's main loop, when
	// the activity of that name starts or is cancelled: where a test sends
	// an update at a point that is not a moment in time, since the clock
	// does not skip while an activity runs.
	onStart  map[string]func(attempt int32)
	onCancel map[string]func()

	// firstStarted is the ActivityID of the first activity of each type
	// to start. The started listener sets it in the main loop, before
	// that activity's stub runs; stubs read it from their own goroutines.
	firstMu      sync.Mutex
	firstStarted map[string]string

	// cancelIdentity is who the stand-in for the history says requested a
	// cancellation through Temporal.
	cancelIdentity string

	// trail stands for the bucket's audit trail objects (KeepAudit),
	// shared by the runs of one task.
	trail *trailStore

	outcomes  []*outcome
	startedAt time.Time
	// unsigned sends updates as they are given, without the API server's
	// assertion that update adds otherwise; unsignedStart starts the
	// workflow with the input as given.
	unsigned, unsignedStart bool
}

// serverKey stands for the API server's signing key; the workflows of
// this test binary trust it as a worker trusts the configured one.
var serverKey = func() ed25519.PrivateKey {
	pub, priv, err := assertion.GenerateKey()
	if err != nil {
		panic(err)
	}
	workflows.SetAssertionKeys([]ed25519.PublicKey{pub})
	return priv
}()

// signer signs on the test environment's clock, which skips ahead of
// the wall clock while a task waits.
func (h *harness) signer() *assertion.Signer {
	s := assertion.NewSigner(serverKey)
	s.Now = h.env.Now
	return s
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))))
	h := &harness{
		t:    t,
		env:  suite.NewTestWorkflowEnvironment(),
		acts: &activities.Activities{},
		in: task.Input{
			ID: "t1", Tenant: tenant, Submitter: submitter, Model: "glm-4-test", Kind: task.KindBatch,
			Source: ref("input.jsonl"), Priority: 3,
		},
		rules: func() activities.AuthorizeResult {
			r := demoRules()
			// A short heartbeat timeout makes the SDK send heartbeats
			// often, so a cancel reaches a blocked inference stub within
			// a second.
			r.HeartbeatTimeout = time.Second
			return r
		}(),
		// 20 requests are over the demo tenant's auto-approve limit of 10.
		screening:    task.Screening{Requests: 20, Bytes: 4000, Reasons: []string{"20 requests, over the auto-approve limit of 10"}},
		calls:        map[string]*atomic.Int32{},
		onStart:      map[string]func(int32){},
		onCancel:     map[string]func(){},
		firstStarted: map[string]string{},
		trail:        &trailStore{objects: map[string][]task.Transition{}},
	}
	// A hang guard, not a deadline: the SDK's default (3 s of wall time)
	// is too short for the tests that wait on heartbeats under -race on a
	// busy machine.
	h.env.SetTestTimeout(15 * time.Second)
	h.answers()
	h.env.RegisterWorkflowWithOptions(workflows.TaskWorkflow, workflow.RegisterOptions{Name: task.WorkflowType})
	h.env.RegisterActivity(h.acts)
	h.stub()
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		h.count(info.ActivityType.Name)
		h.noteStarted(info)
		if f := h.onStart[info.ActivityType.Name]; f != nil {
			f(info.Attempt)
		}
	})
	h.env.SetOnActivityCanceledListener(func(info *activity.Info) {
		if f := h.onCancel[info.ActivityType.Name]; f != nil {
			f()
		}
	})
	// The short control-plane stages run as local activities: the same
	// listeners, so a test sees every stage whichever way it runs.
	h.env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) {
		h.count(info.ActivityType.Name)
		h.noteStarted(info)
		if f := h.onStart[info.ActivityType.Name]; f != nil {
			f(info.Attempt)
		}
	})
	h.env.SetOnLocalActivityCanceledListener(func(info *activity.Info) {
		if f := h.onCancel[info.ActivityType.Name]; f != nil {
			f()
		}
	})
	return h
}

// answers sets what the stubs answer unless a test says otherwise: a
// batch of 20 requests, 19 answered and 1 failed, on one node.
func (h *harness) answers() {
	h.authorize = func(context.Context, activities.AuthorizeInput) (activities.AuthorizeResult, error) {
		return h.rules, nil
	}
	h.dispatch = func(_ context.Context, in activities.DispatchInput) (activities.DispatchResult, error) {
		if in.Training {
			return activities.DispatchResult{Node: "any:" + in.Model, Queue: task.TrainingQueue(in.Model)}, nil
		}
		return activities.DispatchResult{Node: node, Queue: task.NodeQueue(node)}, nil
	}
	h.infer = func(context.Context, activities.InferInput) (activities.InferResult, error) {
		return activities.InferResult{
			Counts: task.Counts{Total: 20, Completed: 19, Failed: 1},
			Output: ref("output.jsonl"), Errors: ref("errors.jsonl"), Node: node,
		}, nil
	}
	h.merge = func(_ context.Context, in activities.MergeInput) (activities.InferResult, error) {
		res := activities.InferResult{Output: ref("output.jsonl"), Errors: ref("errors.jsonl"), Node: node}
		for _, s := range in.Pieces {
			res.Counts.Total += s.Counts.Total
			res.Counts.Completed += s.Counts.Completed
			res.Counts.Failed += s.Counts.Failed
		}
		return res, nil
	}
	h.collect = func(context.Context, activities.CollectInput) (activities.InferResult, error) {
		return activities.InferResult{
			Counts: task.Counts{Total: 7, Completed: 7},
			Output: ref("output.jsonl"), Errors: ref("errors.jsonl"), Node: node,
		}, nil
	}
	h.archive = func(context.Context, activities.ArchiveInput) (activities.ArchiveResult, error) {
		return activities.ArchiveResult{Report: ref("report.json"), Manifest: ref("manifest.json")}, nil
	}
}

// stub registers every activity the workflow may call. Each stub defers
// to the harness field of the same name, read at call time so a test can
// replace it after newHarness. The started listener, not the stub, counts
// the calls (see count).
func (h *harness) stub() {
	a, any2 := h.acts, []any{mock.Anything, mock.Anything}
	h.env.OnActivity(a.Authorize, any2...).Return(func(ctx context.Context, in activities.AuthorizeInput) (activities.AuthorizeResult, error) {
		return h.authorize(ctx, in)
	})
	h.env.OnActivity(a.Screen, any2...).Return(func(ctx context.Context, in activities.ScreenInput) (activities.ScreenResult, error) {
		return activities.ScreenResult{Source: ref("input.jsonl"), Screening: h.screening, Pieces: h.cut}, nil
	})
	h.env.OnActivity(a.Dispatch, any2...).Return(func(ctx context.Context, in activities.DispatchInput) (activities.DispatchResult, error) {
		return h.dispatch(ctx, in)
	})
	h.env.OnActivity(a.Infer, any2...).Return(func(ctx context.Context, in activities.InferInput) (activities.InferResult, error) {
		return h.infer(ctx, in)
	})
	h.env.OnActivity(a.MergePieces, any2...).Return(func(ctx context.Context, in activities.MergeInput) (activities.InferResult, error) {
		return h.merge(ctx, in)
	})
	h.env.OnActivity(a.Collect, any2...).Return(func(ctx context.Context, in activities.CollectInput) (activities.InferResult, error) {
		return h.collect(ctx, in)
	})
	h.env.OnActivity(a.Archive, any2...).Return(func(ctx context.Context, in activities.ArchiveInput) (activities.ArchiveResult, error) {
		return h.archive(ctx, in)
	})
	h.env.OnActivity(a.KeepAudit, any2...).Return(func(_ context.Context, in activities.KeepAuditInput) (task.EarlierAudit, error) {
		return h.trail.keep(in)
	})
	h.env.OnActivity(a.CancelRequester, mock.Anything).Return(func(context.Context) (activities.CancelRequest, error) {
		return activities.CancelRequest{Identity: h.cancelIdentity}, nil
	})
}

// noteStarted records info's activity if it is the first of its type to
// start. The listener runs in the main loop in the order the activities
// start, so "first" here is the order of the workflow's own steps.
func (h *harness) noteStarted(info *activity.Info) {
	h.firstMu.Lock()
	defer h.firstMu.Unlock()
	if _, ok := h.firstStarted[info.ActivityType.Name]; !ok {
		h.firstStarted[info.ActivityType.Name] = info.ActivityID
	}
}

// isFirstAttempt reports whether the activity running in ctx is the first
// attempt of the first activity of its type that the workflow started.
// Stubs use it to pick the call they treat specially by identity: the
// order in which stubs are called is the order in which the Go scheduler
// runs the activities' goroutines, not the order of the workflow.
func (h *harness) isFirstAttempt(ctx context.Context) bool {
	info := activity.GetInfo(ctx)
	h.firstMu.Lock()
	defer h.firstMu.Unlock()
	return info.Attempt == 1 && h.firstStarted[info.ActivityType.Name] == info.ActivityID
}

// count counts one attempt of the named activity. The started listener
// calls it, in the main loop, as the test environment starts the attempt:
// a stub runs later on the activity's own goroutine, which may reach it
// only after the workflow has moved on or even finished (a paused attempt
// cancelled at once), so counting there made the count a race.
// Activities the harness does not stub (the event emitter) are not
// counted.
func (h *harness) count(name string) {
	// h.calls is written only before run, from the test goroutine.
	if c := h.calls[name]; c != nil {
		c.Add(1)
	}
}

// called is how many times the named activity was started, retries
// included.
func (h *harness) called(name string) int { return int(h.calls[name].Load()) }

func ref(name string) task.ObjectRef {
	return task.ObjectRef{Bucket: "autoglm", Key: "data/demo/t1/" + name}
}

// at runs f when the workflow's clock reaches d after the start. While no
// activity runs the test environment skips time, so at(awaiting, …) runs
// f while the task waits for approval.
func (h *harness) at(d time.Duration, f func()) { h.env.RegisterDelayedCallback(f, d) }

// run executes the workflow to its end.
func (h *harness) run() {
	h.t.Helper()
	for _, name := range []string{"Authorize", "Screen", "Dispatch", "Infer", "MergePieces", "Collect", "Archive"} {
		h.calls[name] = &atomic.Int32{}
	}
	h.startedAt = h.env.Now()
	if h.in.Assertion == "" && len(h.in.Carry) == 0 && !h.unsignedStart {
		// The API server signs every start it sends.
		h.in.Assertion = h.signer().SignStart(assertion.StartOf(h.in), 0)
	}
	h.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: task.WorkflowID(h.in.ID)})
	h.env.ExecuteWorkflow(task.WorkflowType, h.in)
	if !h.env.IsWorkflowCompleted() {
		h.t.Fatal("the workflow did not complete")
	}
	for _, o := range h.outcomes {
		if !o.done {
			h.t.Errorf("update %s by %s: no outcome", o.name, o.req.Actor)
		}
	}
}

// result is the workflow's result; it fails the test if the workflow
// failed.
func (h *harness) result() task.Result {
	h.t.Helper()
	var res task.Result
	if err := h.env.GetWorkflowResult(&res); err != nil {
		if out, ok := task.Outcome(err); ok {
			return out
		}
		h.t.Fatalf("workflow failed: %v", err)
	}
	return res
}

// status answers the status query, with the audit trail whole, as
// taskclient reads it: the earlier runs' part from the bucket first.
func (h *harness) status() task.Status {
	h.t.Helper()
	st := h.rawStatus()
	if e := st.EarlierAudit; e != nil {
		earlier, ok := h.trail.read(e.Ref.Key)
		if !ok || len(earlier) != e.Transitions {
			h.t.Fatalf("the earlier audit trail %+v is not what KeepAudit kept", e)
		}
		st.Audit, st.EarlierAudit = append(earlier, st.Audit...), nil
	}
	return st
}

// trailStore keeps the audit trail objects KeepAudit writes, by key.
type trailStore struct {
	mu      sync.Mutex
	objects map[string][]task.Transition
	// down makes KeepAudit fail as when the bucket stays down past its
	// retries.
	down bool
}

func (s *trailStore) keep(in activities.KeepAuditInput) (task.EarlierAudit, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return task.EarlierAudit{}, temporal.NewNonRetryableApplicationError("the bucket is down", "BucketDown", nil)
	}
	var all []task.Transition
	if in.Earlier != nil {
		all = append(all, s.objects[in.Earlier.Ref.Key]...)
	}
	all = append(all, in.Transitions...)
	key := fmt.Sprintf("data/%s/%s/audit-%d.json", in.Tenant, in.TaskID, in.Run)
	s.objects[key] = all
	return task.EarlierAudit{Ref: task.ObjectRef{Bucket: "autoglm", Key: key}, Transitions: len(all)}, nil
}

func (s *trailStore) read(key string) ([]task.Transition, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	trs, ok := s.objects[key]
	return slices.Clone(trs), ok
}

// rawStatus answers the status query as the workflow gives it.
func (h *harness) rawStatus() task.Status {
	h.t.Helper()
	v, err := h.env.QueryWorkflow(task.QueryStatus)
	if err != nil {
		h.t.Fatalf("status query: %v", err)
	}
	var st task.Status
	if err := v.Get(&st); err != nil {
		h.t.Fatalf("status query: %v", err)
	}
	return st
}

// outcome is what became of one update.
type outcome struct {
	name     string
	req      task.DecisionRequest
	before   task.Status // when it was sent
	after    task.Status // once its outcome was known
	accepted bool
	done     bool
	err      error // the validator's refusal, or the handler's error
}

// refused reports whether the validator refused the update.
func (o *outcome) refused() bool { return o.done && !o.accepted }

// update sends the update name from actor and records its outcome in
// h.outcomes. then, if not nil, runs once the outcome is known, in the
// test environment's main loop, where it may query and send more.
// Updates sent in the same callback are all handled before any of their
// after-states is read, so a test that checks a refusal left no trace
// sends an accepted update at a later moment.
func (h *harness) update(name string, req task.DecisionRequest, then func(*outcome)) *outcome {
	o := &outcome{name: name, req: req, before: h.status()}
	h.outcomes = append(h.outcomes, o)
	settle := func(err error) {
		o.done, o.err = true, err
		// The callbacks run inside the workflow's update handling; the
		// status is read, and then runs, right after it.
		h.env.RegisterDelayedCallback(func() {
			o.after = h.status()
			if then != nil {
				then(o)
			}
		}, 0)
	}
	if req.Assertion == "" && !h.unsigned {
		// The API server signs the actor's roles in the task's tenant
		// (the demo tenant of the default policy).
		req.Assertion = h.signer().SignInput(h.in.ID, name, req.Actor, rolesOf(req.Actor), req.Digest(), 0)
	}
	h.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnAccept:   func() { o.accepted = true },
		OnReject:   settle,
		OnComplete: func(_ any, err error) { settle(err) },
	}, req)
	return o
}

// testWriter sends the test environment's log to t.Log, where it shows
// for a failing test only, and drops what activities still running after
// the test write.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}
