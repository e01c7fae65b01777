// Package taskclient is what the autoglm CLI does, as a library: submit a
// task (uploading its batch file), read its status, decide on it, wait for
// it and fetch its results. The CLI only parses flags and prints; the
// integration tests drive this same code.
package taskclient

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/audittrail"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Client talks to Temporal and, for files, to the bucket.
type Client struct {
	Temporal client.Client
	// Store is needed to submit and to fetch results; nil is fine for
	// everything else.
	Store storage.Store
	// Policy, if set, lets Submit fill in the tenant's default model and
	// refuse at once what authorization would refuse later (an unknown
	// tenant, a model not allowed or served by no node).
	Policy *authz.Source
	// Signer vouches for the actor of each update (the API server's key,
	// or an operator's break-glass key); without one, the workflow
	// refuses every update.
	Signer *assertion.Signer
}

// SubmitRequest is what `autoglm submit` asks for.
type SubmitRequest struct {
	ID        string // empty: a new one
	Tenant    string
	Submitter string
	Model     string // empty with a File: the model of its first line
	Prompt    string
	File      string // an OpenAI Batch JSONL file
	Priority  int    // 1 (highest) to 5; 0: the server's default (3)
	// Origin is the task a resubmit takes the items from.
	Origin string
	// Attach are files uploaded as the task's attachments before it
	// starts (see Attach).
	Attach        []string
	AttachOptions AttachOptions
	// FineTune makes the task a fine-tuning task (task.KindFineTune):
	// File is then its training file, and ValidationFile its optional
	// validation file; FineTune.ValidationFile is set by the upload.
	FineTune       *task.FineTune
	ValidationFile string
}

// NewID is a task ID: sortable by time, unique enough, valid in a key.
func NewID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// Submit stores the task's input in the bucket (the batch file, or the
// prompt as a batch of one), uploads its attachments and starts its
// workflow, whose input then holds references only. Everything that can be
// checked is checked before the first byte is stored: an existing task ID
// is a Conflict, and nothing is uploaded to or attached to that task. It
// returns the input the workflow started with.
func (c *Client) Submit(ctx context.Context, r SubmitRequest) (task.Input, error) {
	in := task.Input{ID: r.ID, Tenant: r.Tenant, Submitter: r.Submitter, Model: r.Model, Priority: r.Priority, Kind: task.KindPrompt, Origin: r.Origin}
	if in.Priority == 0 {
		in.Priority = task.DefaultPriority
	}
	if in.ID == "" {
		in.ID = NewID()
	}
	if (r.File == "") == (r.Prompt == "") {
		return in, task.Errorf(task.InvalidInput, "give either a prompt or a batch file, not both or neither")
	}
	if r.ID != "" {
		if err := c.checkNew(ctx, in.ID); err != nil {
			return in, err
		}
	}
	if err := c.prepare(ctx, &in, r); err != nil {
		return in, err
	}
	var err error
	switch {
	case r.FineTune != nil:
		err = c.uploadTraining(ctx, &in, r)
	case r.File != "":
		in.Source, err = c.upload(ctx, in, r.File, inputName, r.AttachOptions)
	default:
		in.Source, err = c.storePrompt(ctx, in, r.Prompt)
	}
	if err != nil {
		return in, err
	}
	if err := in.Validate(); err != nil {
		return in, err
	}
	if len(r.Attach) > 0 {
		if _, err := c.Attach(ctx, in.Tenant, in.ID, r.Attach, r.AttachOptions); err != nil {
			return in, err
		}
	}
	// The workflow runs only a start the server (or a break-glass
	// operator) signed; without a signer it refuses the start.
	if c.Signer != nil {
		in.Assertion = c.Signer.SignStart(assertion.StartOf(in), 0)
	}
	_, err = c.Temporal.ExecuteWorkflow(ctx, StartOptions(in), task.WorkflowType, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return in, task.Errorf(task.Conflict, "task %s already exists", in.ID)
		}
		return in, fmt.Errorf("starting task %s: %w", in.ID, err)
	}
	return in, nil
}

// StartOptions are the workflow options of a task: its ID, queue, search
// attributes, priority and fairness key (the tenant, so that one tenant's
// backlog does not starve another's).
func StartOptions(in task.Input) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       task.WorkflowID(in.ID),
		TaskQueue:                task.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionTimeout: 30 * 24 * time.Hour,
		StaticSummary:            fmt.Sprintf("%s task of %s/%s on %s", in.Kind, in.Tenant, in.Submitter, in.Model),
		StaticDetails:            staticDetails(in),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			task.AttrTenant.ValueSet(in.Tenant),
			task.AttrSubmitter.ValueSet(in.Submitter),
			task.AttrModel.ValueSet(in.Model),
			task.AttrKind.ValueSet(string(in.Kind)),
			task.AttrState.ValueSet(string(task.Submitted)),
			task.AttrPriority.ValueSet(int64(in.Priority)),
		),
		Priority: temporal.Priority{PriorityKey: in.Priority, FairnessKey: in.Tenant},
	}
}

// upload stores the batch file under the task's key, refusing a file whose
// content is not text whatever its name says. A large file goes as a
// resumable upload (see storage.UploadFile), with o's state folder and
// progress.
func (c *Client) upload(ctx context.Context, in task.Input, path, name string, o AttachOptions) (task.ObjectRef, error) {
	if c.Store == nil {
		return task.ObjectRef{}, errors.New("submitting a file needs the bucket: set AUTOGLM_S3_*")
	}
	size, err := checkBatchFile(path)
	if err != nil {
		return task.ObjectRef{}, err
	}
	key, err := storage.Key(storage.Data, in.Tenant, in.ID, name)
	if err != nil {
		return task.ObjectRef{}, err
	}
	uo := storage.UploadOptions{PutOptions: storage.PutOptions{ContentType: "application/jsonl"}, StateDir: o.StateDir}
	if o.Progress != nil {
		uo.Progress = o.Progress(path, size)
	}
	info, err := storage.UploadFile(ctx, c.Store, key, path, uo)
	if err != nil {
		return task.ObjectRef{}, fmt.Errorf("uploading %s: %w", path, err)
	}
	return task.ObjectRef{Bucket: c.Store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256, Category: string(storage.Data)}, nil
}

// checkBatchFile refuses a file whose content is not text, whatever its
// name says, and returns its size.
func checkBatchFile(path string) (int64, error) {
	ct, cat, size, err := sniffFile(path)
	if err != nil {
		return 0, err
	}
	if err := checkEncoding(path); err != nil {
		return 0, err
	}
	if cat != storage.Data && cat != storage.Text {
		return 0, task.Errorf(task.InvalidInput, "%s is %s (%s) by its content, not a JSONL batch file", path, ct, cat)
	}
	return size, nil
}

// FirstModel is body.model of the first request line of a batch file.
func FirstModel(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", task.Errorf(task.InvalidInput, "%v", err)
	}
	defer f.Close()
	lr := batch.NewLineReader(bufio.NewReader(f), 1<<20)
	for {
		raw, n, tooLong, err := lr.Next()
		if err != nil {
			return "", task.Errorf(task.InvalidInput, "%s has no request line to take the model from; give --model", path)
		}
		if tooLong || len(raw) == 0 {
			continue
		}
		var r struct {
			Body struct {
				Model string `json:"model"`
			} `json:"body"`
		}
		if json.Unmarshal(raw, &r) != nil || r.Body.Model == "" {
			return "", task.Errorf(task.InvalidInput, "line %d of %s has no body.model; give --model", n, path)
		}
		return r.Body.Model, nil
	}
}

// Status asks the task's workflow for its status; it works on finished
// tasks too.
func (c *Client) Status(ctx context.Context, id string) (task.Status, error) {
	var st task.Status
	v, err := c.queryStatus(ctx, id, "")
	if err != nil && !isNotFound(err) {
		// The newest run may be a start the workflow refused.
		if run, lerr := c.taskRun(ctx, id); lerr == nil && run != "" {
			v, err = c.queryStatus(ctx, id, run)
		}
	}
	if err != nil {
		return st, notFound(id, err)
	}
	if err := v.Get(&st); err != nil {
		return st, err
	}
	c.wholeAudit(ctx, &st)
	return st, c.addProgress(ctx, &st)
}

// wholeAudit puts the part of the audit trail that the task's earlier
// runs kept in the bucket in front of st's. Without it (no bucket, an
// outage) st keeps the newest part, and its EarlierAudit says so.
func (c *Client) wholeAudit(ctx context.Context, st *task.Status) {
	if st.EarlierAudit == nil || c.Store == nil {
		return
	}
	_ = audittrail.Whole(ctx, c.Store, st)
}

// Decide sends the approve, reject or cancel update and returns the status
// after it. A refused update is an error of a stable type
// (PermissionDenied, WrongState, InvalidInput) and leaves no trace. The
// actor assertion is req.Assertion if the caller signed one (the API
// server, see Assert); otherwise c.Signer signs the actor's roles in the
// task's tenant as c.Policy has them now (the break-glass CLI).
func (c *Client) Decide(ctx context.Context, id, update string, req task.DecisionRequest) (task.Status, error) {
	var st task.Status
	if req.Assertion == "" && c.Signer != nil {
		roles, err := c.rolesOn(ctx, id, req.Actor)
		if err != nil {
			return st, err
		}
		req.Assertion = c.Signer.SignInput(id, update, req.Actor, roles, req.Digest(), 0)
	}
	h, err := c.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: task.WorkflowID(id), UpdateName: update, Args: []any{req},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &st)
	}
	if err == nil {
		c.wholeAudit(ctx, &st)
	}
	return st, c.ended(ctx, id, update, err)
}

// Assert is the actor assertion for update on task id by req.Actor, who
// holds roles in the task's tenant, over the rest of req (its reason and
// priority): what the workflow's validator checks the action against.
// Empty without a signer.
func (c *Client) Assert(id, update string, req task.DecisionRequest, roles []authz.Role) string {
	if c.Signer == nil {
		return ""
	}
	return c.Signer.SignInput(id, update, req.Actor, roles, req.Digest(), 0)
}

// rolesOn are actor's roles in the tenant of task id, as the policy has
// them now: c.Policy, or without one the policy the worker reads
// (AUTOGLM_POLICY_FILE or the embedded default).
func (c *Client) rolesOn(ctx context.Context, id, actor string) ([]authz.Role, error) {
	src := c.Policy
	if src == nil {
		var err error
		if src, err = authz.FromEnv(); err != nil {
			return nil, err
		}
	}
	p, err := src.Current()
	if err != nil {
		return nil, err
	}
	d, err := c.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
	if err != nil {
		return nil, notFound(id, err)
	}
	var tenant string
	if v := d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[task.AttrTenant.GetName()]; v != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(v, &tenant)
	}
	return p.RolesOf(tenant, actor), nil
}

// ended tells a task that has ended from one that does not exist: Temporal
// refuses an update to a closed workflow as "not found", before its
// validator could say WrongState.
func (c *Client) ended(ctx context.Context, id, update string, err error) error {
	var nf *serviceerror.NotFound
	if !errors.As(err, &nf) {
		return err
	}
	d, derr := c.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
	if derr != nil || d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return notFound(id, err)
	}
	state := d.GetWorkflowExecutionInfo().GetStatus().String()
	if p := d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[task.AttrState.GetName()]; p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &state)
	}
	return task.Errorf(task.WrongState, "task %s has ended (%s); it can no longer take %s", id, state, update)
}

// Wait blocks until the task ends and returns its result.
func (c *Client) Wait(ctx context.Context, id string) (task.Result, error) {
	var res task.Result
	err := c.Temporal.GetWorkflow(ctx, task.WorkflowID(id), "").Get(ctx, &res)
	if refusedStart(err, id) {
		if run, lerr := c.taskRun(ctx, id); lerr == nil && run != "" {
			err = c.Temporal.GetWorkflow(ctx, task.WorkflowID(id), run).Get(ctx, &res)
		}
	}
	if out, ok := task.Outcome(err); ok {
		return out, nil
	}
	return res, notFound(id, err)
}

// CheckFinished is a WrongState error unless the task has ended (or
// partial results are asked for): results of a task still running are
// only its input, and saying nothing would pass them off as its output.
func CheckFinished(st task.Status, partial bool) error {
	if partial || st.State.Final() {
		return nil
	}
	return task.Errorf(task.WrongState, "task %s is %s and has no results yet; wait for it (autoglm watch %s), or take what there is with --partial", st.ID, st.State, st.ID)
}

// Failure is why a task that ended other than COMPLETED ended, as an
// error of the failure's own type (PermissionDenied, InvalidInput,
// RateLimited…), so that a waiting client reports it like any other error
// of that type; nil for a task that completed or was rejected, cancelled
// or expired, which is no error of the task.
func (c *Client) Failure(ctx context.Context, id string) error {
	_, err := c.Wait(ctx, id)
	return err
}

// Download copies the object ref points at to w and checks its sha256.
func (c *Client) Download(ctx context.Context, ref task.ObjectRef, w io.Writer) error {
	if c.Store == nil {
		return errors.New("downloading needs the bucket: set AUTOGLM_S3_*")
	}
	rc, _, err := c.Store.Get(ctx, ref.Key)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), rc); err != nil {
		return fmt.Errorf("downloading %s: %w", ref.Key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); ref.SHA256 != "" && got != ref.SHA256 {
		return fmt.Errorf("downloading %s: sha256 %s does not match the manifest's %s", ref.Key, got, ref.SHA256)
	}
	return nil
}

// notFound turns Temporal's "no such workflow" into a NotFound error that
// names the task.
func notFound(id string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return task.Errorf(task.NotFound, "no task %s", id)
	}
	return err
}
