package workflows_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// fineTuneHarness is the harness running a fine-tuning task: alice
// trains glm-4-test on 12 examples (and a validation file) with 2 epochs
// and the rest "auto". Its stubs record what the workflow sent.
type fineTuneHarness struct {
	*harness
	train func(context.Context, activities.TrainInput) (activities.TrainResult, error)

	mu        sync.Mutex
	trainIn   []activities.TrainInput
	trainInfo []activity.Info
	publishIn []activities.PublishModelInput
}

const ftModel = "ft:glm-4-test:demo:mine:t1"

func newFineTuneHarness(t *testing.T) *fineTuneHarness {
	h := &fineTuneHarness{harness: newHarness(t)}
	val := ref("validation.jsonl")
	h.in.Kind, h.in.Source = task.KindFineTune, ref("training.jsonl")
	h.in.FineTune = &task.FineTune{
		ValidationFile:  &val,
		Hyperparameters: task.Hyperparameters{NEpochs: task.Number(2)},
		Seed:            42, Suffix: "mine",
	}
	h.screening = task.Screening{Requests: 12, Bytes: 2400, AutoApprove: true, Reasons: []string{"auto-approved: 12 example(s)"}}
	h.train = func(ctx context.Context, in activities.TrainInput) (activities.TrainResult, error) {
		return activities.TrainResult{
			Model: task.ObjectRef{Bucket: "autoglm", Key: "checkpoint/ab/demo/t1/training/a1-final.manifest.json"},
			Step:  6, Epoch: 2, Loss: 0.5, Node: node, Attempt: activity.GetInfo(ctx).Attempt,
		}, nil
	}
	a, any2 := h.acts, []any{mock.Anything, mock.Anything}
	h.env.OnActivity(a.ScreenTraining, any2...).Return(func(_ context.Context, in activities.ScreenTrainingInput) (activities.ScreenTrainingResult, error) {
		res := activities.ScreenTrainingResult{TrainingFile: in.TrainingFile, ValidationFile: in.ValidationFile, Screening: h.screening}
		res.TrainingFile.SHA256 = "screened"
		res.Training = trainer.FileScreening{Examples: h.screening.Requests, Bytes: h.screening.Bytes}
		res.Validation = trainer.FileScreening{Examples: 3}
		return res, nil
	})
	h.env.OnActivity(a.Train, any2...).Return(func(ctx context.Context, in activities.TrainInput) (activities.TrainResult, error) {
		h.mu.Lock()
		h.trainIn, h.trainInfo = append(h.trainIn, in), append(h.trainInfo, activity.GetInfo(ctx))
		h.mu.Unlock()
		return h.train(ctx, in)
	})
	h.env.OnActivity(a.PublishModel, any2...).Return(func(_ context.Context, in activities.PublishModelInput) (task.ObjectRef, error) {
		h.mu.Lock()
		h.publishIn = append(h.publishIn, in)
		h.mu.Unlock()
		return task.ObjectRef{Bucket: "autoglm", Key: task.FineTunedPrefix(in.Tenant, in.Name) + task.CacheMetaName}, nil
	})
	for _, name := range []string{"ScreenTraining", "Train", "PublishModel"} {
		h.calls[name] = &atomic.Int32{}
	}
	return h
}

func TestFineTuneTrainsOnTheBaseModelsNodeAndPublishesTheModel(t *testing.T) {
	h := newFineTuneHarness(t)
	h.run()

	res := h.result()
	wantKey := "models/demo/" + ftModel + "/" + task.CacheMetaName
	if res.State != task.Completed || res.FineTunedModel != ftModel || res.Output.Key != wantKey {
		t.Fatalf("result %+v", res)
	}
	if len(h.trainIn) != 1 {
		t.Fatalf("Train ran %d times", len(h.trainIn))
	}
	in, info := h.trainIn[0], h.trainInfo[0]
	if info.TaskQueue != task.TrainingQueue("glm-4-test") {
		t.Errorf("Train ran on queue %s, not the base model's training queue", info.TaskQueue)
	}
	// 2 epochs as given; the batch is "auto": 8, the examples being more.
	if in.Hyperparameters != (task.Resolved{NEpochs: 2, BatchSize: 8, LearningRateMultiplier: 1}) || in.Seed != 42 {
		t.Errorf("hyperparameters %+v, seed %d", in.Hyperparameters, in.Seed)
	}
	if in.TrainingFile.SHA256 != "screened" || in.ValidationFile == nil || in.ValidationFile.Key != ref("validation.jsonl").Key || in.Model != "glm-4-test" {
		t.Errorf("Train input %+v: want the files as screened and the base model", in)
	}
	if len(h.publishIn) != 1 || h.publishIn[0].Name != ftModel || h.publishIn[0].Manifest.Key != "checkpoint/ab/demo/t1/training/a1-final.manifest.json" {
		t.Errorf("PublishModel input %+v", h.publishIn)
	}
	st := h.status()
	h.wantAudit(st,
		step{task.Submitted, submitter}, step{task.Authorized, "policy"}, step{task.Screened, "screening"}, step{task.Approved, "policy"},
		step{task.Dispatched, "dispatch"}, step{task.Running, "dispatch"},
		step{task.Archiving, "autoglm"}, step{task.Completed, "autoglm"},
	)
	if got := st.Audit[len(st.Audit)-1].Reason; got != "trained "+ftModel {
		t.Errorf("COMPLETED reason %q", got)
	}
	ft := st.FineTune
	if ft == nil || ft.FineTunedModel != ftModel || ft.Step != 6 || ft.Loss != 0.5 || ft.Hyperparameters == nil || ft.Hyperparameters.BatchSize != 8 {
		t.Errorf("fine-tune status %+v", ft)
	}
	if h.called("Screen") != 0 || h.called("Infer") != 0 || h.called("Collect") != 0 {
		t.Errorf("batch activities ran: screen %d, infer %d, collect %d", h.called("Screen"), h.called("Infer"), h.called("Collect"))
	}
}

func TestFineTuneAttemptThatFailsIsRetried(t *testing.T) {
	h := newFineTuneHarness(t)
	ok := h.train
	h.train = func(ctx context.Context, in activities.TrainInput) (activities.TrainResult, error) {
		if activity.GetInfo(ctx).Attempt == 1 {
			return activities.TrainResult{}, temporal.NewApplicationError("the trainer exited with status 1", activities.TrainerFailed)
		}
		return ok(ctx, in)
	}
	h.run()

	if res := h.result(); res.State != task.Completed || res.FineTunedModel != ftModel {
		t.Fatalf("result %+v", res)
	}
	if n := h.called("Train"); n != 2 {
		t.Errorf("Train started %d times, want 2: the failed attempt and the one resuming", n)
	}
	if st := h.status(); st.Attempts != 2 {
		t.Errorf("attempts %d", st.Attempts)
	}
}

func TestFineTuneNeedsReviewOverTheLimit(t *testing.T) {
	h := newFineTuneHarness(t)
	h.screening.AutoApprove = false
	h.at(awaiting, func() {
		h.update(task.UpdateApprove, task.DecisionRequest{Actor: "bob", Reason: "ok"}, nil)
	})
	h.run()

	if res := h.result(); res.State != task.Completed {
		t.Fatalf("result %+v", res)
	}
	wantAccepted(t, h.outcomes[0])
	h.wantAudit(h.status(), append(append(untilAwaiting, step{task.Approved, "bob"}), fromDispatch...)...)
}

func TestFineTunePausedSavesAndResumesOnANewDispatch(t *testing.T) {
	h := newFineTuneHarness(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	ok := h.train
	h.train = func(ctx context.Context, in activities.TrainInput) (activities.TrainResult, error) {
		if !h.isFirstAttempt(ctx) {
			return ok(ctx, in)
		}
		for {
			// As Train does: progress in heartbeat details, and a stop
			// reported with the last progress.
			p := activities.TrainProgress{Progress: trainer.Progress{Step: 3, Epoch: 1, Loss: 0.9, Checkpoint: 1}, Node: node}
			activity.RecordHeartbeat(ctx, p)
			select {
			case <-ctx.Done():
				return activities.TrainResult{}, temporal.NewCanceledError(p)
			case <-release:
				return ok(ctx, in)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	var pause, resume *outcome
	var once atomic.Bool
	h.onStart["Train"] = func(int32) {
		if once.CompareAndSwap(false, true) {
			pause = h.update(task.UpdatePause, task.DecisionRequest{Actor: "olga"}, nil)
		}
	}
	h.onCancel["Train"] = func() {
		resume = h.update(task.UpdateResume, task.DecisionRequest{Actor: "olga"}, nil)
	}
	h.run()

	wantAccepted(t, pause)
	wantAccepted(t, resume)
	if res := h.result(); res.State != task.Completed || res.FineTunedModel != ftModel {
		t.Fatalf("result %+v", res)
	}
	if h.called("Train") != 2 || h.called("Dispatch") != 2 {
		t.Errorf("Train %d, Dispatch %d: want the paused run and a resumed one on a node dispatched again", h.called("Train"), h.called("Dispatch"))
	}
	h.wantAudit(h.status(),
		step{task.Submitted, submitter}, step{task.Authorized, "policy"}, step{task.Screened, "screening"}, step{task.Approved, "policy"},
		step{task.Dispatched, "dispatch"}, step{task.Running, "dispatch"},
		step{task.Paused, "olga"}, step{task.Running, "olga"},
		step{task.Dispatched, "dispatch"}, step{task.Running, "dispatch"},
		step{task.Archiving, "autoglm"}, step{task.Completed, "autoglm"},
	)
}

func TestFineTuneInputIsChecked(t *testing.T) {
	in := task.Input{ID: "t1", Tenant: tenant, Submitter: submitter, Model: "glm-4-test", Kind: task.KindFineTune, Source: ref("training.jsonl")}
	for name, c := range map[string]struct {
		ft   *task.FineTune
		kind task.Kind
	}{
		"no settings":       {nil, task.KindFineTune},
		"settings on batch": {&task.FineTune{}, task.KindBatch},
		"epochs 0":          {&task.FineTune{Hyperparameters: task.Hyperparameters{NEpochs: task.Number(0)}}, task.KindFineTune},
		"suffix with colon": {&task.FineTune{Suffix: "a:b"}, task.KindFineTune},
	} {
		bad := in
		bad.FineTune, bad.Kind = c.ft, c.kind
		if err := bad.Validate(); task.TypeOf(err) != task.InvalidInput {
			t.Errorf("%s: %v, want InvalidInput", name, err)
		}
	}
	in.FineTune = &task.FineTune{Suffix: "ok-1"}
	if err := in.Validate(); err != nil {
		t.Errorf("valid input refused: %v", err)
	}
}
