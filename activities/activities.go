// Package activities holds every side effect of a task: authorize, screen,
// dispatch, inference, archive. Each is a method on Activities, which holds
// the clients they need, so a test builds one with its own clients.
package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// Activities are the activities of TaskWorkflow.
type Activities struct {
	Store  storage.Store
	Policy *authz.Source
	// LLM is the model server this node sends requests to.
	LLM batch.Chatter
	// Temporal is the client of this worker, for activities that look at
	// workflows.
	Temporal client.Client
	// Node is the name of the node this worker is.
	Node string
	// Models are the models this node serves.
	Models []string
	// Cached lists the model revisions in the node's cache, for its record.
	Cached func() []string
	// FineTuned lists the fine-tuned models the node has loaded into its
	// model server (ServedFineTuned), which its record adds to Models.
	FineTuned func() []string
	// Capacity is how many batches the node runs at once, for its record.
	Capacity int
	// TrainingSlots is how many fine-tuning jobs the node trains at once,
	// apart from Capacity, for its record; 0: it trains none.
	TrainingSlots int
	// Namespace is the Temporal namespace, for DescribeTaskQueue.
	Namespace string
	// Labels describe the node as key=value (gpu=a100, region=eu), for
	// fleet command selectors.
	Labels []string
	// Batch tunes the batch engine (concurrency, checkpoints).
	Batch batch.Config
	// HeartbeatTimeout of the inference activity; 0 means one minute.
	HeartbeatTimeout time.Duration
	// PieceRequests is the piece size of large batches; 0 runs every batch
	// whole.
	PieceRequests int
	// ContinueAsNewEvents and NodeStartTimeout: see AuthorizeResult.
	ContinueAsNewEvents int
	NodeStartTimeout    time.Duration
	// Trainer is how this node runs fine-tuning (see Train); its WorkDir
	// is the root of the jobs' folders on the node's disk.
	Trainer trainer.Config
	// ModelPath is the folder of a base model in the node's cache, for
	// the trainer; nil gives the trainer the model's name.
	ModelPath func(ctx context.Context, model string) (string, error)
	// ObserveTraining, if set, gives each training attempt what is told
	// its progress and its runner's events: the node's metrics.
	ObserveTraining func(taskID string) TrainingObserver
}

// asApplicationError turns the project's typed errors into non-retryable
// Temporal application errors of the same type, so the workflow and the
// CLI see a stable type and a clear message, and nothing retries a
// request that cannot succeed. Other errors stay retryable.
func asApplicationError(err error) error {
	if err == nil {
		return nil
	}
	if t := task.TypeOf(err); t != "" && t != task.Conflict {
		return temporal.NewNonRetryableApplicationError(err.Error(), string(t), err)
	}
	var le *llm.Error
	if errors.As(err, &le) {
		if le.Retryable() {
			return temporal.NewApplicationErrorWithOptions(le.Error(), string(le.Kind), temporal.ApplicationErrorOptions{Cause: err, NextRetryDelay: le.RetryAfter})
		}
		return temporal.NewNonRetryableApplicationError(le.Error(), string(le.Kind), err)
	}
	return err
}
