package taskclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Resubmitted is what ResubmitFailed did.
type Resubmitted struct {
	Task task.Input `json:"task"`
	// Items is how many failed items the new task runs; Skipped failed
	// for reasons a retry cannot fix (malformed lines, wrong URL or model).
	Items   int `json:"items"`
	Skipped int `json:"skipped"`
}

// ResubmitFailed starts a new task with only the items of task id that
// failed at the model server, taken unchanged from its input.
func (c *Client) ResubmitFailed(ctx context.Context, id, submitter string) (Resubmitted, error) {
	var res Resubmitted
	st, err := c.Status(ctx, id)
	if err != nil {
		return res, err
	}
	input, errs := artifact(st, "input.jsonl"), artifact(st, "errors.jsonl")
	if input.Key == "" || errs.Key == "" {
		return res, task.Errorf(task.WrongState, "task %s has no errors.jsonl yet (it is %s)", id, st.State)
	}
	lines, skipped, err := c.failedLines(ctx, errs)
	if err != nil {
		return res, err
	}
	if len(lines) == 0 {
		return res, task.Errorf(task.InvalidInput, "task %s has no failed item a retry could fix (%d skipped)", id, skipped)
	}
	tmp, err := os.CreateTemp("", "autoglm-resubmit-*.jsonl")
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp.Name())
	if err := c.copyLines(ctx, input, lines, tmp); err != nil {
		tmp.Close()
		return res, err
	}
	if err := tmp.Close(); err != nil {
		return res, err
	}
	in, err := c.Submit(ctx, SubmitRequest{Tenant: st.Tenant, Submitter: submitter, Model: st.Model, Priority: st.Priority, File: tmp.Name()})
	return Resubmitted{Task: in, Items: len(lines), Skipped: skipped}, err
}

func artifact(st task.Status, name string) task.ObjectRef {
	for _, a := range st.Artifacts {
		if path.Base(a.Key) == name {
			return a
		}
	}
	return task.ObjectRef{}
}

// unfixable are the error codes of lines that would fail again unchanged.
var unfixable = map[string]bool{
	batch.CodeMalformedLine: true, batch.CodeInvalidRequest: true,
	batch.CodeLineTooLong: true, batch.CodeModelMismatch: true,
}

// failedLines are the input line numbers of the failed items worth
// retrying.
func (c *Client) failedLines(ctx context.Context, errs task.ObjectRef) (map[int]bool, int, error) {
	rc, _, err := c.Store.Get(ctx, errs.Key)
	if err != nil {
		return nil, 0, err
	}
	defer rc.Close()
	lines, skipped := map[int]bool{}, 0
	sc := bufio.NewScanner(rc)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ol batch.OutputLine
		if err := json.Unmarshal(sc.Bytes(), &ol); err != nil || ol.Line == 0 || ol.Error == nil || unfixable[ol.Error.Code] {
			skipped++
			continue
		}
		lines[ol.Line] = true
	}
	return lines, skipped, sc.Err()
}

// copyLines streams the input and writes the lines whose numbers are in
// want, in order.
func (c *Client) copyLines(ctx context.Context, input task.ObjectRef, want map[int]bool, w io.Writer) error {
	rc, _, err := c.Store.Get(ctx, input.Key)
	if err != nil {
		return err
	}
	defer rc.Close()
	lr := batch.NewLineReader(rc, 16<<20)
	for {
		raw, n, tooLong, err := lr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", input.URI(), err)
		}
		if want[n] && !tooLong {
			if _, err := fmt.Fprintf(w, "%s\n", raw); err != nil {
				return err
			}
		}
	}
}
