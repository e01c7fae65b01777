package trainer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// TestTrainActivityScreensTrainsAndHeartbeats runs the node-side
// activities through the SDK's activity environment on the real bucket:
// the training file is screened, then trained on by the test trainer,
// with progress in heartbeat details and the model returned by reference.
func TestTrainActivityScreensTrainsAndHeartbeats(t *testing.T) {
	needStack(t)
	want := reference(t, jobFlags(t))
	taskID := unique("ft-activity")
	ctx := context.Background()
	b, err := os.ReadFile(trainingFile(t, 40))
	if err != nil {
		t.Fatal(err)
	}
	key, err := storage.Key(storage.Data, "acme", taskID, "training.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	info, err := store.Put(ctx, key, strings.NewReader(string(b)), int64(len(b)), storage.PutOptions{ContentType: "application/jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	ref := task.ObjectRef{Bucket: store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256}
	a := &activities.Activities{
		Store:  store,
		Policy: authz.Static(&authz.Policy{Screening: authz.Screening{SensitiveWords: []string{"plus 13 is"}}}),
		Node:   "node-1",
		Trainer: trainer.Config{
			Command:   []string{filepath.Join(bins, "testtrainer")},
			WorkDir:   filepath.Join(scratch, "nodes", "activity"),
			SaveSteps: 20,
		},
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	var mu sync.Mutex
	var beats []activities.TrainProgress
	// Every heartbeat the activity records, before the SDK's throttling.
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&beatRecorder{record: func(details []any) {
		if p, ok := details[0].(activities.TrainProgress); ok {
			mu.Lock()
			beats = append(beats, p)
			mu.Unlock()
		}
	}}}})
	env.RegisterActivity(a)

	v, err := env.ExecuteActivity(a.ScreenTraining, activities.ScreenTrainingInput{TaskID: taskID, Tenant: "acme", TrainingFile: ref, AutoApproveMaxExamples: 100})
	if err != nil {
		t.Fatal(err)
	}
	var screened activities.ScreenTrainingResult
	if err := v.Get(&screened); err != nil {
		t.Fatal(err)
	}
	if screened.Training.Examples != 40 || screened.Screening.AutoApprove || len(screened.Training.Flagged) != 1 || screened.TrainingFile.ETag == "" {
		t.Fatalf("screening: %+v; want 40 examples, example 12 flagged (so no auto-approval), the file pinned", screened)
	}

	v, err = env.ExecuteActivity(a.Train, activities.TrainInput{
		TaskID: taskID, Tenant: "acme", Model: "charlm", TrainingFile: screened.TrainingFile,
		Hyperparameters: trainer.Resolved{NEpochs: 1, BatchSize: 8, LearningRateMultiplier: 1}, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	var res activities.TrainResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if err := storage.CheckOwnKey("acme", taskID, res.Model.Key); err != nil || res.Model.SHA256 == "" {
		t.Fatalf("the model's reference %+v is not a manifest under the task's prefix: %v", res.Model, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(beats) == 0 {
		t.Fatal("no heartbeat carried progress")
	}
	lastBeat := beats[len(beats)-1]
	if lastBeat.Step == 0 || lastBeat.Loss == 0 || lastBeat.Epoch == 0 || lastBeat.Node != "node-1" {
		t.Fatalf("the last heartbeat is %+v; want step, epoch, loss and node", lastBeat)
	}
	first := beats[slices.IndexFunc(beats, func(p activities.TrainProgress) bool { return p.Step > 0 })]
	if first.Loss <= res.Loss {
		t.Fatalf("the loss did not fall: %v at step %d, %v at the end", first.Loss, first.Step, res.Loss)
	}
	if got := finalWeights(t, trainer.Record{Manifest: res.Model}); got != want {
		t.Fatalf("the activity's model is not the one the same job trains elsewhere: %s, want %s", got, want)
	}
	t.Logf("%d heartbeats; trained %d steps, loss %.3f → %.3f", len(beats), res.Step, first.Loss, res.Loss)
}

// beatRecorder is a worker interceptor that sees every heartbeat an
// activity records.
type beatRecorder struct {
	interceptor.WorkerInterceptorBase
	record func(details []any)
}

func (b *beatRecorder) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &beatInbound{root: b}
	i.Next = next
	return i
}

type beatInbound struct {
	interceptor.ActivityInboundInterceptorBase
	root *beatRecorder
}

func (i *beatInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	o := &beatOutbound{root: i.root}
	o.Next = outbound
	return i.Next.Init(o)
}

type beatOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	root *beatRecorder
}

func (o *beatOutbound) RecordHeartbeat(ctx context.Context, details ...any) {
	if len(details) > 0 {
		o.root.record(details)
	}
	o.Next.RecordHeartbeat(ctx, details...)
}

// TestTrainActivityStopsOnWorkerShutdownAndResumes closes the worker's stop
// channel mid-run, as a graceful shutdown or a drain does: the trainer
// saves where it is, the activity fails WorkerStopping (retryable), and
// the next attempt resumes from that step and ends with the same weights.
func TestTrainActivityStopsOnWorkerShutdownAndResumes(t *testing.T) {
	needStack(t)
	want := reference(t, jobFlags(t))
	taskID := unique("ft-activity-stop")
	ctx := context.Background()
	b, err := os.ReadFile(trainingFile(t, 40))
	if err != nil {
		t.Fatal(err)
	}
	key, err := storage.Key(storage.Data, "acme", taskID, "training.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	info, err := store.Put(ctx, key, strings.NewReader(string(b)), int64(len(b)), storage.PutOptions{ContentType: "application/jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	in := activities.TrainInput{
		TaskID: taskID, Tenant: "acme", Model: "charlm",
		TrainingFile:    task.ObjectRef{Bucket: store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256},
		Hyperparameters: trainer.Resolved{NEpochs: 1, BatchSize: 8, LearningRateMultiplier: 1}, Seed: 7,
	}
	a := &activities.Activities{
		Store: store, Node: "node-1",
		Trainer: trainer.Config{
			Command: []string{filepath.Join(bins, "testtrainer")}, Env: slowSteps,
			WorkDir: filepath.Join(scratch, "nodes", "activity-stop"), SaveSteps: 1000,
		},
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	stop := make(chan struct{})
	var once sync.Once
	reached := 0
	env.SetWorkerStopChannel(stop)
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&beatRecorder{record: func(details []any) {
		if p, ok := details[0].(activities.TrainProgress); ok && p.Step >= 100 {
			once.Do(func() { reached = p.Step; close(stop) })
		}
	}}}})
	env.RegisterActivity(a)
	_, err = env.ExecuteActivity(a.Train, in)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != "WorkerStopping" || appErr.NonRetryable() {
		t.Fatalf("want a retryable WorkerStopping error, got %v", err)
	}
	head := headRecord(t, taskID)
	if head == nil || head.Step < reached || head.Step%1000 == 0 {
		t.Fatalf("the head is %+v; want the checkpoint the stop asked for, at step %d or just after", head, reached)
	}

	env = suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	v, err := env.ExecuteActivity(a.Train, in)
	if err != nil {
		t.Fatal(err)
	}
	var res activities.TrainResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if res.ResumedFrom != head.Step {
		t.Fatalf("the next attempt resumed from step %d, want %d", res.ResumedFrom, head.Step)
	}
	if got := finalWeights(t, trainer.Record{Manifest: res.Model}); got != want {
		t.Fatalf("final weights %s, want %s", got, want)
	}
	t.Logf("stopped at step %d, checkpoint at step %d, resumed there", reached, head.Step)
}
