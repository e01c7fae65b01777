// Package task is the vocabulary of autoglm-flow: the states of a task, the
// names of its workflow, queries, updates and signals, its search attributes,
// and the structs that cross the Temporal boundary. The CLI, the worker, the
// workflows and the activities all speak it; it imports nothing of theirs.
package task

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TaskQueue is where TaskWorkflow and the control-plane activities run.
// Inference runs on a node's own queue (see NodeQueue).
const TaskQueue = "autoglm-tasks"

// NodeQueue is the task queue of one node: the activities that must run
// where the model is served (inference) are sent there.
func NodeQueue(node string) string { return "autoglm-node-" + node }

// ModelQueue is the task queue every node serving model polls: inference
// sent there goes to whichever of them is free, and a retry to whichever
// is alive.
func ModelQueue(model string) string { return "autoglm-model-" + model }

// TrainingQueue is the task queue of fine-tuning jobs on model: every
// node that serves it and has training slots polls it while a slot is
// free, so a job starts on such a node and waits while all are taken.
func TrainingQueue(model string) string { return "autoglm-train-" + model }

// WorkflowType is the registered name of the task workflow.
const WorkflowType = "TaskWorkflow"

// Names of the queries, updates and signals of a task workflow. Updates are
// validated (a bad caller gets an error at once and leaves no trace in the
// history) and need an actor assertion signed by the API server.
const (
	QueryStatus       = "status"
	UpdateApprove     = "approve"
	UpdateReject      = "reject"
	UpdateCancel      = "cancel"
	UpdatePause       = "pause"
	UpdateResume      = "resume"
	UpdateSetPriority = "set-priority"
	// SignalProgress was sent by the inference activity of older
	// workers; nothing sends it now (progress is in heartbeat details),
	// and histories that hold it still replay.
	SignalProgress = "progress"
)

// StartRefused begins the message of the error a TaskWorkflow run ends
// with when it refuses its start (no valid start assertion, or carried
// state in a run that did not continue as new).
func StartRefused(id string) string { return "task " + id + " was not started: " }

// WorkflowID is the Temporal workflow ID of the task with the given ID, so
// that anyone who knows a task ID can reach its workflow.
func WorkflowID(id string) string { return "task-" + id }

// IDFromWorkflowID is the inverse of WorkflowID.
func IDFromWorkflowID(wid string) string { return strings.TrimPrefix(wid, "task-") }

// Kind says what a task runs.
type Kind string

// The kinds of task.
const (
	KindPrompt Kind = "prompt" // a single prompt: a batch of one
	KindBatch  Kind = "batch"  // an OpenAI Batch JSONL file
)

// DefaultPriority is Temporal's own default: 1 is the highest, 5 the lowest.
const DefaultPriority = 3

// CheckPriority refuses a priority given explicitly outside 1 to 5; 0 is
// not "the default" when a person typed it.
func CheckPriority(p int) error {
	if p < 1 || p > 5 {
		return Errorf(InvalidInput, "priority %d is outside 1 (highest) to 5", p)
	}
	return nil
}

// Limits that hold before anything reaches a worker.
const (
	// MaxPromptBytes bounds an inline prompt, which becomes one batch
	// line: larger work belongs in a batch file.
	MaxPromptBytes = 256 << 10
	// MaxIDLength bounds a task ID, which becomes part of object keys.
	MaxIDLength = 64
)

// ObjectRef points at an object in the bucket. Workflows pass these, never
// the contents, so no payload approaches Temporal's 2 MiB limit.
type ObjectRef struct {
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256,omitempty"`
	Category string `json:"category,omitempty"`
	// VersionID and ETag pin the version screening read, so inference
	// reads that same content or refuses (the bucket is versioned; ETag
	// serves where it is not).
	VersionID string `json:"version_id,omitempty"`
	ETag      string `json:"etag,omitempty"`
}

// URI is the s3:// form of the reference, as people read it.
func (r ObjectRef) URI() string {
	if r.Key == "" {
		return ""
	}
	return fmt.Sprintf("s3://%s/%s", r.Bucket, r.Key)
}

// Input starts a TaskWorkflow.
type Input struct {
	ID        string `json:"id"`
	Tenant    string `json:"tenant"`
	Submitter string `json:"submitter"`
	Model     string `json:"model"`
	Kind      Kind   `json:"kind"`
	// Prompt is read only to replay tasks started before prompts went to
	// the bucket: user content must not enter workflow history, so a
	// prompt is submitted as a one-line batch in Source (see PromptLine).
	Prompt   string    `json:"prompt,omitempty"`
	Source   ObjectRef `json:"source,omitempty"` // the uploaded JSONL, under the task's own prefix
	Priority int       `json:"priority,omitempty"`
	// FineTune is the rest of a fine-tuning task's input (KindFineTune),
	// whose training file is Source; nil for every other kind.
	FineTune *FineTune `json:"fine_tune,omitempty"`
	// Origin is the task this one was resubmitted from (its failed or
	// unanswered items), if any.
	Origin string `json:"origin,omitempty"`
	// Assertion is the start assertion the API server signed over the
	// task's ID, tenant, submitter, kind and input (internal/assertion's
	// Start): the workflow runs nothing without it.
	Assertion string `json:"assertion,omitempty"`
	// Carry is the state a run of TaskWorkflow hands to the run it
	// continues as new (status with its audit trail, limits, screened
	// source, its pieces, finished pieces); empty on the first run. Its
	// layout belongs to the workflows package.
	Carry json.RawMessage `json:"carry,omitempty"`
}

// Validate checks what can be checked without the tenant policy, so that a
// bad submission is refused before a workflow starts.
func (in Input) Validate() error {
	switch {
	case in.ID == "" || len(in.ID) > MaxIDLength || strings.ContainsAny(in.ID, "/\\. \t\r\n"):
		return Errorf(InvalidInput, "task id %q must be 1-%d characters without slashes, dots or spaces", in.ID, MaxIDLength)
	case in.Tenant == "":
		return Errorf(InvalidInput, "tenant is required")
	case in.Submitter == "":
		return Errorf(InvalidInput, "submitter is required")
	case in.Model == "":
		return Errorf(InvalidInput, "model is required")
	case in.Priority < 0 || in.Priority > 5:
		return Errorf(InvalidInput, "priority %d is outside 1 (highest) to 5", in.Priority)
	case in.Prompt != "" && in.Source.Key != "":
		return Errorf(InvalidInput, "give a prompt or a source file, not both")
	case (in.Kind == KindFineTune) != (in.FineTune != nil):
		return Errorf(InvalidInput, "a %s task takes no fine-tuning settings; a %s task needs them", KindBatch, KindFineTune)
	}
	switch in.Kind {
	case KindPrompt:
		if in.Source.Key != "" && in.Prompt == "" {
			break
		}
		if strings.TrimSpace(in.Prompt) == "" {
			return Errorf(InvalidInput, "the prompt is empty")
		}
		if len(in.Prompt) > MaxPromptBytes {
			return Errorf(InvalidInput, "the prompt is %d bytes, over the %d-byte limit for an inline prompt; submit it as a batch file", len(in.Prompt), MaxPromptBytes)
		}
	case KindBatch:
		if in.Source.Key == "" {
			return Errorf(InvalidInput, "a batch task needs its uploaded source file")
		}
	case KindFineTune:
		if in.Source.Key == "" || in.Prompt != "" {
			return Errorf(InvalidInput, "a fine-tuning task needs its uploaded training file")
		}
		if err := CheckFineTuneBase(in.Model); err != nil {
			return err
		}
		return in.FineTune.Validate()
	default:
		return Errorf(InvalidInput, "unknown kind %q", in.Kind)
	}
	return nil
}

// Decision is one person's approval or rejection.
type Decision struct {
	Actor  string    `json:"actor"`
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"`
	// Key names the key that signed it (see Transition.Key).
	Key string `json:"key,omitempty"`
	// BreakGlass: Key is an operator's break-glass key, which can sign
	// any name, so all its approvals count as one person.
	BreakGlass bool `json:"break_glass,omitempty"`
}

// DecisionRequest is the argument of the approve, reject, cancel, pause,
// resume and set-priority updates. Priority is read by set-priority only.
// Assertion is the API server's signature over (task, update, actor,
// expiry) (see internal/assertion): the validators refuse a request
// whose Actor it does not vouch for.
type DecisionRequest struct {
	Actor     string `json:"actor"`
	Reason    string `json:"reason,omitempty"`
	Priority  int    `json:"priority,omitempty"`
	Assertion string `json:"assertion,omitempty"`
}

// MaxReasonBytes bounds the reason of a decision: it is kept in the
// workflow's history and in its status, both of which have limits.
const MaxReasonBytes = 2 << 10

// Digest is the sha256 of what the request carries besides its actor (its
// reason and priority): the actor assertion is signed over it, so an
// assertion copied onto an edited request does not verify.
func (r DecisionRequest) Digest() string {
	sum := sha256.Sum256([]byte(strconv.Itoa(r.Priority) + "\n" + r.Reason))
	return hex.EncodeToString(sum[:])
}

// CheckReason refuses a reason that would bloat the history.
func (r DecisionRequest) CheckReason() error {
	if len(r.Reason) > MaxReasonBytes {
		return Errorf(InvalidInput, "the reason is %d bytes, over the %d-byte limit", len(r.Reason), MaxReasonBytes)
	}
	return nil
}

// Counts are the request counts of a batch, as in the OpenAI Batch API.
type Counts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// Done is how many requests have an answer, good or bad.
func (c Counts) Done() int { return c.Completed + c.Failed }

// Result is what a finished TaskWorkflow returns.
type Result struct {
	ID     string    `json:"id"`
	State  State     `json:"state"`
	Counts Counts    `json:"request_counts"`
	Output ObjectRef `json:"output,omitempty"`
	Errors ObjectRef `json:"errors,omitempty"`
	Report ObjectRef `json:"report,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// FineTunedModel is the model a fine-tuning task produced (its
	// manifest is Output).
	FineTunedModel string `json:"fine_tuned_model,omitempty"`
	// Usage is the tokens of every answered item, summed.
	Usage Usage `json:"usage,omitzero"`
}
