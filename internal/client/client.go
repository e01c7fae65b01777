// Package client is the one client surface of autoglm: every task verb of
// the CLI calls Client, which the server adapter (Server, over
// internal/apiclient) and the operators' break-glass adapter (Direct, over
// internal/taskclient: Temporal and the bucket) both implement, so the two
// paths print the same things and exit with the same codes.
package client

import (
	"context"
	"encoding/json"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// Client is what the CLI's task verbs do.
type Client interface {
	// Submit submits a prompt or a batch file (with attachments).
	Submit(ctx context.Context, r SubmitRequest) (Submitted, error)
	// Status is a task's status, masked as the caller's roles require.
	Status(ctx context.Context, id string) (Status, error)
	// Watch follows a task until it ends, telling seen each transition
	// and each move of its progress, and returns its final status.
	Watch(ctx context.Context, id string, seen func(Change)) (Status, error)
	// Decide approves, rejects, cancels, pauses, resumes or sets the
	// priority of a task (action is the update's name).
	Decide(ctx context.Context, id, action string, d Decision) (Status, error)
	// List lists tasks of the caller's tenants.
	List(ctx context.Context, r ListRequest) ([]taskclient.Summary, error)
	// Resubmit starts a new task with the failed or unanswered items of
	// task id.
	Resubmit(ctx context.Context, id string, which taskclient.Items) (taskclient.Resubmitted, error)
	// Results downloads a task's files into dir, checking each sha256,
	// and returns their paths.
	Results(ctx context.Context, id, dir string, partial bool) ([]string, error)
	// Answer is the first line of a finished task's output.jsonl, or of
	// its errors.jsonl when it has no output: the answer of a prompt.
	Answer(ctx context.Context, st Status) (json.RawMessage, error)
	// Attach uploads files as attachments of task id (the caller's own).
	Attach(ctx context.Context, id string, paths []string, o taskclient.AttachOptions) ([]taskclient.Attachment, error)
	// Usage is the token report per day, tenant and model.
	Usage(ctx context.Context, r UsageRequest) ([]usage.Row, error)
	FineTuner
}

// SubmitRequest is what `autoglm submit` asks for. Tenant "" is the
// caller's own (the key's, through the server).
type SubmitRequest = taskclient.SubmitRequest

// Submitted is the task as it started, without its prompt.
type Submitted = server.Submitted

// Status is a task's status with its metadata, as the server shows it.
type Status = server.TaskStatus

// Decision is the reason (and, for set-priority, the priority) of a
// decision; the actor is the caller.
type Decision = server.DecisionBody

// ListRequest filters the list. Tenant "" is every tenant the caller has
// a role in.
type ListRequest struct {
	Tenant string
	taskclient.ListRequest
}

// UsageRequest bounds the usage report. Tenant "" is every tenant the
// caller has a role in; zero days are the last 30 days.
type UsageRequest struct {
	Tenant       string
	Since, Until time.Time
}

// DefaultUsageDays is how many days the usage report covers when no
// since is given: the last 30, today included, as the server's.
const DefaultUsageDays = server.DefaultUsageDays

// Change is one thing Watch learned: a transition of the audit trail, the
// progress of the running inference, or the step, epoch and loss of the
// running training.
type Change struct {
	Transition *task.Transition
	Progress   *task.Progress
	Training   *task.FineTuneStatus
}

// newTransitions calls seen with the audit entries after the first n and
// returns the new n.
func newTransitions(st task.Status, n int, seen func(Change)) int {
	if n > len(st.Audit) {
		n = 0
	}
	for i := n; i < len(st.Audit); i++ {
		tr := st.Audit[i]
		seen(Change{Transition: &tr})
	}
	return len(st.Audit)
}
