package taskclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// checkNew is a Conflict if a task with this ID exists, whatever its
// state: submitting again under its ID must not upload to or attach to
// it. A lost race with another submit is caught again when the workflow
// starts.
func (c *Client) checkNew(ctx context.Context, id string) error {
	d, err := c.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return nil
	case err != nil:
		return fmt.Errorf("checking whether task %s exists: %w", id, err)
	}
	return task.Errorf(task.Conflict, "task %s already exists (%s); choose another --id, or leave it out for a new one",
		id, d.GetWorkflowExecutionInfo().GetStatus())
}

// prepare fills in the model and checks the input, the policy and the
// fleet, all before anything is stored.
func (c *Client) prepare(ctx context.Context, in *task.Input, r SubmitRequest) error {
	if r.FineTune != nil {
		if err := c.prepareFineTune(in, r); err != nil {
			return err
		}
	} else if r.File != "" {
		in.Kind = task.KindBatch
		// What the file is comes first: a binary has no model to look for.
		if _, err := checkBatchFile(r.File); err != nil {
			return err
		}
		if in.Model == "" {
			m, err := FirstModel(r.File)
			if err != nil {
				return err
			}
			in.Model = m
		}
	} else {
		if strings.TrimSpace(r.Prompt) == "" {
			return task.Errorf(task.InvalidInput, "the prompt is empty")
		}
		if len(r.Prompt) > task.MaxPromptBytes {
			return task.Errorf(task.InvalidInput, "the prompt is %d bytes, over the %d-byte limit for an inline prompt; submit it as a batch file", len(r.Prompt), task.MaxPromptBytes)
		}
	}
	if c.Policy != nil {
		if err := c.checkPolicy(ctx, in); err != nil {
			return err
		}
	}
	pending := *in
	pending.Source = task.ObjectRef{Key: "pending"}
	return pending.Validate()
}

// checkPolicy gives a prompt without a model the tenant's default, and
// refuses an unknown tenant, a model the tenant may not use, and one that
// no live node serves.
func (c *Client) checkPolicy(ctx context.Context, in *task.Input) error {
	p, err := c.Policy.Current()
	if err != nil {
		return err
	}
	t, err := p.Tenant(in.Tenant)
	if err != nil {
		return err
	}
	if in.Model == "" {
		if in.Model, err = p.DefaultModel(in.Tenant); err != nil {
			return err
		}
	}
	if err := activities.ModelAllowed(ctx, c.Store, t, in.Tenant, in.Model); err != nil {
		return err
	}
	if c.Store == nil {
		return nil
	}
	return activities.CheckServed(ctx, c.Store, c.Temporal, in.Model)
}

// storePrompt stores the prompt as a one-line batch under the task's own
// prefix, so that the workflow gets a reference and no prompt enters its
// history. The write is a create: an existing input is this same submit's
// earlier attempt if its digest matches, and another task's otherwise.
func (c *Client) storePrompt(ctx context.Context, in task.Input, prompt string) (task.ObjectRef, error) {
	if c.Store == nil {
		return task.ObjectRef{}, errors.New("submitting needs the bucket: set AUTOGLM_S3_*")
	}
	line, err := batch.PromptLine(in.Model, prompt)
	if err != nil {
		return task.ObjectRef{}, err
	}
	key, err := storage.Key(storage.Data, in.Tenant, in.ID, activities.NameInput)
	if err != nil {
		return task.ObjectRef{}, err
	}
	_, err = c.Store.Create(ctx, key, bytes.NewReader(line), int64(len(line)), storage.PutOptions{ContentType: "application/jsonl"})
	if errors.Is(err, storage.ErrConflict) {
		have, serr := c.Store.Stat(ctx, key)
		if serr != nil || have.SHA256 != sha256Hex(line) {
			return task.ObjectRef{}, task.Errorf(task.Conflict, "task %s already has an input; choose another --id", in.ID)
		}
		err = nil
	}
	if err != nil {
		return task.ObjectRef{}, fmt.Errorf("storing the prompt of task %s: %w", in.ID, err)
	}
	return task.ObjectRef{Bucket: c.Store.Bucket(), Key: key, Size: int64(len(line)), SHA256: sha256Hex(line), Category: string(storage.Data)}, nil
}

// checkEncoding names a UTF-16 file or one with a byte-order mark for
// what it is, before its first line is read for a model.
func checkEncoding(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return task.Errorf(task.InvalidInput, "%v", err)
	}
	defer f.Close()
	head := make([]byte, 64)
	n, _ := f.Read(head)
	if err := batch.CheckEncoding(head[:n]); err != nil {
		return task.Errorf(task.InvalidInput, "%s: %v", path, err)
	}
	return nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// WaitServed waits until a live node serves model, for a caller that has
// just started a worker (make dev, make demo) and would otherwise race its
// first node record; the caller's context bounds the wait.
func (c *Client) WaitServed(ctx context.Context, model string) error {
	for {
		err := activities.CheckServed(ctx, c.Store, c.Temporal, model)
		if task.TypeOf(err) != task.NoNode {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
