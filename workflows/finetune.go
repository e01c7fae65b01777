package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// fineTune is the second kind of task: a base model trained on an OpenAI
// chat fine-tuning file. Its screen checks the training and validation
// files (ScreenTraining); its run sends the node activity Train to the
// base model's training queue, where a node serving the model takes it
// while it has a free training slot, each attempt resuming from the newest
// verified checkpoint, and publishes the trained model under
// models/<tenant>/<fine-tuned name>/ (PublishModel).
type fineTune struct{ *taskRun }

// training is what a fine-tuning task keeps between its stages.
type training struct {
	validation *task.ObjectRef // as screened
	hyper      task.Resolved
}

func (f fineTune) spec() task.FineTune {
	if f.in.FineTune == nil {
		return task.FineTune{}
	}
	return *f.in.FineTune
}

func (f fineTune) screen(ctx workflow.Context) (activities.ScreenResult, string, error) {
	spec := f.spec()
	var res activities.ScreenTrainingResult
	err := f.control(ctx, "screen", "check the training files' examples and words", f.screensLocally(), func(o *workflow.ActivityOptions) {
		o.StartToCloseTimeout = 30 * time.Minute
	}, a.ScreenTraining, activities.ScreenTrainingInput{
		TaskID: f.in.ID, Tenant: f.in.Tenant, TrainingFile: f.in.Source, ValidationFile: spec.ValidationFile,
		MaxLineBytes: f.rules.MaxRequestBytes, AutoApproveMaxExamples: f.rules.AutoApproveMaxRequests,
	}).Get(ctx, &res)
	if err != nil {
		return activities.ScreenResult{}, "", err
	}
	hyper, err := spec.Hyperparameters.Resolve(res.Training.Examples)
	if err != nil {
		return activities.ScreenResult{}, "", temporal.NewNonRetryableApplicationError(err.Error(), string(task.InvalidInput), nil)
	}
	f.source, f.training = res.TrainingFile, training{validation: res.ValidationFile, hyper: hyper}
	f.status.FineTune = &task.FineTuneStatus{Hyperparameters: &hyper, Seed: spec.Seed}
	f.addArtifact(derefOr(res.ValidationFile))
	reason := fmt.Sprintf("%d training example(s), %d bytes", res.Training.Examples, res.Training.Bytes)
	if res.ValidationFile != nil {
		reason += fmt.Sprintf("; %d validation example(s)", res.Validation.Examples)
	}
	reason += fmt.Sprintf("; %d epoch(s), batch %d, learning rate multiplier %g", hyper.NEpochs, hyper.BatchSize, hyper.LearningRateMultiplier)
	return activities.ScreenResult{Source: res.TrainingFile, Screening: res.Screening}, reason, nil
}

// screensLocally: both files small enough to read in the first workflow
// task.
func (f fineTune) screensLocally() bool {
	size := f.in.Source.Size
	if v := f.spec().ValidationFile; v != nil {
		size += v.Size
	}
	return size <= maxLocalScreenBytes
}

// run dispatches Train to the base model's training queue, which a node
// serving the model takes from while it has a free training slot, and
// waits for it. A pause stops it (the trainer saves, the checkpoint is
// committed) until resume; every new attempt, on whichever node, resumes
// from the newest verified checkpoint, which the node finds in the
// bucket by itself.
func (f fineTune) run(ctx workflow.Context) error {
	for {
		pauses := f.pauses
		var node activities.DispatchResult
		err := f.control(ctx, "dispatch", "find nodes serving "+f.in.Model+" with training slots", true, func(o *workflow.ActivityOptions) {
			o.RetryPolicy = &temporal.RetryPolicy{
				InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 15 * time.Second,
				MaximumAttempts: 20, NonRetryableErrorTypes: nonRetryable,
			}
		}, a.Dispatch, activities.DispatchInput{TaskID: f.in.ID, Model: f.in.Model, Training: true}).Get(ctx, &node)
		if err != nil {
			return err
		}
		f.dispatched, f.status.Node = true, ""
		if !node.AnyNode() {
			f.status.Node = node.Node
		}
		// RUNNING follows at once.
		f.passThrough(ctx, task.Dispatched, "dispatch", "queued on "+node.Queue+": the first node serving "+f.in.Model+" with a free training slot takes it")
		var res activities.TrainResult
		err = f.train(ctx, node).Get(ctx, &res)
		f.trainStopped(err)
		switch {
		case err == nil:
			return f.publish(ctx, res)
		case f.cancelled != nil:
			return err
		case !f.paused && f.pauses != pauses && temporal.IsCanceledError(err):
			// Paused and resumed before the stage had stopped: train again
			// from the checkpoint, as after any resume.
		case f.paused && temporal.IsCanceledError(err):
			if err := workflow.Await(ctx, func() bool { return !f.paused || f.cancelled != nil }); err != nil || f.cancelled != nil {
				return err
			}
		default:
			return err
		}
	}
}

// train runs Train on the queue dispatch chose: the base model's
// training queue.
func (f fineTune) train(ctx workflow.Context, node activities.DispatchResult) workflow.Future {
	spec := f.spec()
	ctx = f.stage(ctx, "training", fmt.Sprintf("%s on a node with a free training slot", f.in.Model))
	f.transition(ctx, task.Running, "dispatch", "training "+f.in.Model+" as soon as a node has a free training slot")
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// The model's training queue holds the job until a node with a
		// free training slot takes it, however long the fleet is full: no
		// start timeout. A retry goes back to it, so whichever such node
		// is alive resumes the job.
		TaskQueue:           node.Queue,
		StartToCloseTimeout: 7 * 24 * time.Hour,
		HeartbeatTimeout:    f.heartbeatTimeout(),
		// Let the trainer save and its checkpoint commit before the task
		// moves on.
		WaitForCancellation: true,
		Summary:             fmt.Sprintf("training: %s, %d example(s), on %s", f.in.Model, f.status.Progress.Total, node.Queue),
		Priority:            f.priority(),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts: 20, NonRetryableErrorTypes: nonRetryable,
		},
	})
	return workflow.ExecuteActivity(ctx, a.Train, activities.TrainInput{
		TaskID: f.in.ID, Tenant: f.in.Tenant, Model: f.in.Model,
		TrainingFile: f.source, ValidationFile: f.training.validation,
		Hyperparameters: f.training.hyper, Seed: spec.Seed,
	})
}

// trainStopped keeps the progress a stopped attempt reported with its
// cancellation.
func (f fineTune) trainStopped(err error) {
	var ce *temporal.CanceledError
	var p activities.TrainProgress
	if f.status.FineTune != nil && errors.As(err, &ce) && ce.HasDetails() && ce.Details(&p) == nil {
		f.status.FineTune.Step, f.status.FineTune.Epoch, f.status.FineTune.Loss = p.Step, p.Epoch, p.Loss
	}
}

// publish copies the trained model to models/<tenant>/<fine-tuned name>/
// with its manifest; that manifest is the task's output.
func (f fineTune) publish(ctx workflow.Context, res activities.TrainResult) error {
	st := f.status.FineTune
	st.Step, st.Epoch, st.Loss, st.ResumedFrom = res.Step, res.Epoch, res.Loss, res.ResumedFrom
	f.status.Attempts = max(f.status.Attempts, int(res.Attempt))
	if res.Node != "" {
		f.status.Node = res.Node
	}
	name := task.FineTunedName(f.in.Model, f.in.Tenant, f.spec().Suffix, f.in.ID)
	var out task.ObjectRef
	err := f.control(ctx, "publish", "copy the model to models/", false, func(o *workflow.ActivityOptions) {
		o.StartToCloseTimeout, o.HeartbeatTimeout = 2*time.Hour, 5*time.Minute
	}, a.PublishModel, activities.PublishModelInput{TaskID: f.in.ID, Tenant: f.in.Tenant, Name: name, Manifest: res.Model}).Get(ctx, &out)
	if err != nil {
		return err
	}
	st.FineTunedModel = name
	f.result.FineTunedModel, f.result.Output = name, out
	f.result.Counts = task.Counts{Total: f.status.Progress.Total, Completed: f.status.Progress.Total}
	f.setCounts(f.result.Counts)
	// Not an artifact: the task's manifest lists objects under the task's
	// own prefix, and the model lives under models/.
	return nil
}

// keepPartial keeps nothing more: an interrupted run's checkpoints are in
// the bucket already.
func (f fineTune) keepPartial(workflow.Context) {}

func (f fineTune) completed() string {
	return "trained " + f.result.FineTunedModel
}

func derefOr(r *task.ObjectRef) task.ObjectRef {
	if r == nil {
		return task.ObjectRef{}
	}
	return *r
}
