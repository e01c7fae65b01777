package activities

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// ScreenInput is the task and the rules to screen it by.
type ScreenInput struct {
	Task  task.Input      `json:"task"`
	Rules AuthorizeResult `json:"rules"`
}

// ScreenResult is the task's input as stored in the bucket, and what
// screening found.
type ScreenResult struct {
	Source    task.ObjectRef `json:"source"`
	Screening task.Screening `json:"screening"`
	// Pieces cut a batch larger than the piece size; nil runs it whole. It
	// keeps its JSON name (see MergeInput).
	Pieces []Piece `json:"shards,omitempty"`
}

// Screen stores an inline prompt as a batch of one, then reads the whole
// input once: it counts the requests, refuses duplicate custom_ids, a
// batch over the tenant's quota and a file that is not text, flags
// sensitive words, and decides whether policy approves the task without a
// person. Malformed lines are not refused here: the batch engine answers
// each in errors.jsonl with its line number.
func (a *Activities) Screen(ctx context.Context, in ScreenInput) (ScreenResult, error) {
	res, err := a.screen(ctx, in)
	return res, asApplicationError(err)
}

func (a *Activities) screen(ctx context.Context, in ScreenInput) (ScreenResult, error) {
	t := in.Task
	src := t.Source
	if t.Kind == task.KindPrompt && t.Prompt != "" {
		// A task started before prompts went to the bucket.
		var err error
		if src, err = a.storePrompt(ctx, t); err != nil {
			return ScreenResult{}, err
		}
	}
	if err := a.checkSource(t.Tenant, t.ID, src); err != nil {
		return ScreenResult{}, err
	}
	rc, info, err := a.Store.Get(ctx, src.Key)
	if err != nil {
		return ScreenResult{}, fmt.Errorf("reading the task's input: %w", err)
	}
	defer rc.Close()
	src = pin(src, info)

	h := sha256.New()
	br := bufio.NewReader(io.TeeReader(rc, h))
	head, _ := br.Peek(64)
	if err := batch.CheckEncoding(head); err != nil {
		return ScreenResult{}, err
	}
	ct, cat, r, err := storage.SniffReader(br)
	if err != nil {
		return ScreenResult{}, err
	}
	if cat != storage.Text && cat != storage.Data {
		return ScreenResult{}, task.Errorf(task.InvalidInput, "the input file is %s (%s), not a JSONL batch file", ct, cat)
	}
	// The words come from the policy, here, not through the workflow: the
	// list would otherwise sit in the history of every task.
	p, err := a.Policy.Current()
	if err != nil {
		return ScreenResult{}, err
	}
	cut := &cutter{size: in.Rules.PieceRequests}
	sc, err := scan(r, in.Rules, p.Screening.SensitiveWords, t.Model, cut, func() { activity.RecordHeartbeat(ctx) })
	if err != nil {
		return ScreenResult{}, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); src.SHA256 != "" && got != src.SHA256 {
		return ScreenResult{}, task.Errorf(task.InvalidInput, "the input file changed after upload: sha256 %s, expected %s", got, src.SHA256)
	}
	src.SHA256, src.Size, src.Category = hex.EncodeToString(h.Sum(nil)), sc.Bytes, string(cat)
	if !sc.AutoApprove {
		// The task waits for a reviewer from here: tell the subscribers.
		a.emit(ctx, task.Event{
			Tenant: t.Tenant, ID: "evt_" + t.ID + "_" + string(task.AwaitingApproval), Type: task.EventTaskAwaitingApproval,
			CreatedAt: time.Now().UTC(), Data: map[string]string{"id": t.ID, "state": string(task.AwaitingApproval)},
		})
	}
	return ScreenResult{Source: src, Screening: sc, Pieces: cut.result()}, nil
}

// scan reads the input line by line in memory bounded whatever the
// batch's size: duplicate custom_ids are found exactly by an external sort
// (batch.Duplicates), which spills to temporary files past its bound.
func scan(r io.Reader, rules AuthorizeResult, words []string, model string, cut *cutter, alive func()) (task.Screening, error) {
	return scanWith(r, rules, words, model, cut, alive, &batch.Duplicates{Alive: alive})
}

// scanWith is scan with the duplicate finder given, so that tests can set
// its memory bound.
func scanWith(r io.Reader, rules AuthorizeResult, words []string, model string, cut *cutter, alive func(), ids *batch.Duplicates) (task.Screening, error) {
	defer ids.Close()
	var sc task.Screening
	lr := batch.NewLineReader(r, rules.MaxRequestBytes)
	flagged := map[string]bool{}
	var problems batch.Problems
	for {
		start := lr.Offset()
		raw, n, tooLong, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sc, fmt.Errorf("reading the task's input: %w", err)
		}
		sc.Bytes += int64(len(raw)) + 1
		if !tooLong && len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		sc.Requests++
		cut.request(n, start)
		if rules.MaxBatchRequests > 0 && sc.Requests > rules.MaxBatchRequests {
			return sc, task.Errorf(task.QuotaExceeded, "the batch has more than the tenant's %d requests", rules.MaxBatchRequests)
		}
		if n%1000 == 0 {
			alive()
		}
		if tooLong {
			problems.Add(n, false, "longer than %d bytes", rules.MaxRequestBytes)
			continue
		}
		req, lerr := batch.ParseRequest(raw, model)
		if lerr != nil {
			problems.Add(n, false, "%s", lerr.Message)
			continue
		}
		if err := ids.Add(req.CustomID, n); err != nil {
			return sc, err
		}
		for _, w := range words {
			if !flagged[w] && containsFold(req.Body, w) {
				flagged[w] = true
				// The line, not the word: the reasons land in the
				// history, and the word is both the user's content and
				// the policy's list.
				sc.Reasons = append(sc.Reasons, fmt.Sprintf("line %d mentions a word on the screening list", n))
			}
		}
	}
	if sc.Requests == 0 {
		return sc, task.Errorf(task.InvalidInput, "the input holds no requests")
	}
	dups := 0
	err := ids.Each(func(line, first int) error {
		problems.Add(line, true, "its custom_id is also the custom_id of line %d; custom_ids must be unique", first)
		if dups++; dups%10000 == 0 {
			alive()
		}
		return nil
	})
	if err != nil {
		return sc, fmt.Errorf("checking custom_ids: %w", err)
	}
	if err := problems.Err(); err != nil {
		return sc, err
	}
	if problems.Count() > 0 {
		sc.Reasons = append(sc.Reasons, fmt.Sprintf("%d malformed line(s) will be answered in errors.jsonl", problems.Count()))
	}
	sc.AutoApprove = len(flagged) == 0 && rules.AutoApproveMaxRequests > 0 && sc.Requests <= rules.AutoApproveMaxRequests
	if sc.AutoApprove {
		sc.Reasons = append(sc.Reasons, fmt.Sprintf("auto-approved: %d request(s), at most %d allowed without approval, nothing flagged", sc.Requests, rules.AutoApproveMaxRequests))
	} else if len(flagged) == 0 {
		sc.Reasons = append(sc.Reasons, fmt.Sprintf("needs approval: %d request(s), over the %d approved without it", sc.Requests, rules.AutoApproveMaxRequests))
	}
	return sc, nil
}

func containsFold(b []byte, word string) bool {
	return bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(word)))
}

// storePrompt writes an inline prompt as a batch of one, so that from here
// on every task is a batch.
func (a *Activities) storePrompt(ctx context.Context, t task.Input) (task.ObjectRef, error) {
	line, err := PromptLine(t.Model, t.Prompt)
	if err != nil {
		return task.ObjectRef{}, err
	}
	key, err := taskObject{storage.Data, t.Tenant, t.ID, NameInput}.key()
	if err != nil {
		return task.ObjectRef{}, err
	}
	return a.put(ctx, key, storage.Data, bytes.NewReader(line), int64(len(line)), "application/jsonl")
}

// PromptLine is the OpenAI Batch line that asks model one prompt.
func PromptLine(model, prompt string) ([]byte, error) { return batch.PromptLine(model, prompt) }
