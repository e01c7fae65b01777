package taskclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Items says which items of a task a resubmit takes.
type Items string

const (
	// ItemsFailed are the items that failed at the model server.
	ItemsFailed Items = "failed"
	// ItemsUnanswered are the items a cancelled or expired task never
	// answered, well or badly.
	ItemsUnanswered Items = "unanswered"
)

// Resubmitted is what a resubmit did.
type Resubmitted struct {
	Task task.Input `json:"task"`
	// Origin is the task the items come from.
	Origin string `json:"origin"`
	// Items is how many items the new task runs; Skipped failed for
	// reasons a retry cannot fix (malformed lines, wrong URL or model).
	Items   int `json:"items"`
	Skipped int `json:"skipped"`
}

// ResubmitFailed starts a new task with only the items of task id that
// failed at the model server, taken unchanged from its input.
func (c *Client) ResubmitFailed(ctx context.Context, id, submitter string) (Resubmitted, error) {
	return c.Resubmit(ctx, id, submitter, ItemsFailed)
}

// Resubmit starts a new task, as submitter, with the items of task id
// that which names, taken unchanged from its input; the new task names id
// as its origin.
func (c *Client) Resubmit(ctx context.Context, id, submitter string, which Items) (Resubmitted, error) {
	res := Resubmitted{Origin: id}
	st, err := c.Status(ctx, id)
	if err != nil {
		return res, err
	}
	input := artifact(st, "input.jsonl")
	var want func(n int, raw []byte) bool
	switch which {
	case ItemsFailed:
		errs := artifact(st, "errors.jsonl")
		if input.Key == "" || errs.Key == "" {
			return res, task.Errorf(task.WrongState, "task %s has no errors.jsonl yet (it is %s)", id, st.State)
		}
		lines, skipped, err := c.failedLines(ctx, errs)
		if err != nil {
			return res, err
		}
		res.Skipped = skipped
		want = func(n int, _ []byte) bool { return lines[n] }
	case ItemsUnanswered:
		if st.State != task.Cancelled && st.State != task.Expired {
			return res, task.Errorf(task.WrongState, "task %s is %s; only a cancelled or expired task has unanswered items (for failed ones: resubmit --failed)", id, st.State)
		}
		if input.Key == "" {
			return res, task.Errorf(task.WrongState, "task %s has no input.jsonl", id)
		}
		ans, err := c.answered(ctx, st)
		if err != nil {
			return res, err
		}
		want = ans.missing
	default:
		return res, task.Errorf(task.InvalidInput, "resubmit takes failed or unanswered items, not %q", which)
	}
	tmp, err := os.CreateTemp("", "autoglm-resubmit-*.jsonl")
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp.Name())
	n, err := c.copyLines(ctx, input, want, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, err
	}
	if n == 0 {
		return res, task.Errorf(task.InvalidInput, "task %s has no %s item a new task could run (%d skipped)", id, which, res.Skipped)
	}
	res.Items = n
	res.Task, err = c.Submit(ctx, SubmitRequest{Tenant: st.Tenant, Submitter: submitter, Model: st.Model, Priority: st.Priority, File: tmp.Name(), Origin: id})
	return res, err
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
	lines, skipped := map[int]bool{}, 0
	err := c.eachOutputLine(ctx, errs, func(ol batch.OutputLine, ok bool) {
		if !ok || ol.Line == 0 || ol.Error == nil || unfixable[ol.Error.Code] {
			skipped++
			return
		}
		lines[ol.Line] = true
	})
	return lines, skipped, err
}

// answers are the items a task answered: output lines by custom_id,
// error lines by input line number too (a malformed line has no
// custom_id).
type answers struct {
	ids   map[string]bool
	lines map[int]bool
}

func (c *Client) answered(ctx context.Context, st task.Status) (answers, error) {
	a := answers{ids: map[string]bool{}, lines: map[int]bool{}}
	for _, name := range []string{"output.jsonl", "errors.jsonl"} {
		ref := artifact(st, name)
		if ref.Key == "" {
			continue // nothing ran, or nothing failed
		}
		err := c.eachOutputLine(ctx, ref, func(ol batch.OutputLine, ok bool) {
			if !ok {
				return
			}
			if ol.CustomID != "" {
				a.ids[ol.CustomID] = true
			}
			if ol.Line > 0 {
				a.lines[ol.Line] = true
			}
		})
		if err != nil {
			return a, err
		}
	}
	return a, nil
}

// missing says whether input line n (raw) has no answer.
func (a answers) missing(n int, raw []byte) bool {
	if a.lines[n] {
		return false
	}
	var r struct {
		CustomID string `json:"custom_id"`
	}
	if json.Unmarshal(raw, &r) != nil || r.CustomID == "" {
		// Unanswered and unreadable: the new task answers it in its
		// errors.jsonl, as the first would have.
		return true
	}
	return !a.ids[r.CustomID]
}

// eachOutputLine calls f with each line of an output or errors file;
// ok is false for a line that does not parse.
func (c *Client) eachOutputLine(ctx context.Context, ref task.ObjectRef, f func(batch.OutputLine, bool)) error {
	rc, _, err := c.Store.Get(ctx, ref.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ol batch.OutputLine
		err := json.Unmarshal(sc.Bytes(), &ol)
		f(ol, err == nil)
	}
	return sc.Err()
}

// copyLines streams the input and writes the lines want takes, in order;
// it returns how many.
func (c *Client) copyLines(ctx context.Context, input task.ObjectRef, want func(int, []byte) bool, w io.Writer) (int, error) {
	rc, _, err := c.Store.Get(ctx, input.Key)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	lr := batch.NewLineReader(rc, 16<<20)
	n := 0
	for {
		raw, line, tooLong, err := lr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("reading %s: %w", input.URI(), err)
		}
		if tooLong || len(raw) == 0 || !want(line, raw) {
			continue
		}
		if _, err := fmt.Fprintf(w, "%s\n", raw); err != nil {
			return n, err
		}
		n++
	}
}
