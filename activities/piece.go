package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Piece is a contiguous range of a batch's input lines that runs as one
// inference activity, on its own node, with its own checkpoints. Screening
// cuts a batch into pieces when it is larger than the worker's piece size;
// a smaller one runs whole, as one piece with no Piece.
type Piece struct {
	Index     int   `json:"index"`
	FirstLine int   `json:"first_line"`
	LastLine  int   `json:"last_line,omitempty"` // 0: to the end
	Offset    int64 `json:"offset"`              // byte offset of FirstLine
	Requests  int   `json:"requests"`
}

// cutter cuts the lines screening reads into pieces of size requests.
type cutter struct {
	size   int
	pieces []Piece
}

// request is called for each request line, with the byte offset at which
// the line starts.
func (s *cutter) request(line int, offset int64) {
	if s.size <= 0 {
		return
	}
	if n := len(s.pieces); n == 0 || s.pieces[n-1].Requests == s.size {
		if n > 0 {
			s.pieces[n-1].LastLine = line - 1
		}
		s.pieces = append(s.pieces, Piece{Index: n, FirstLine: line, Offset: offset})
	}
	s.pieces[len(s.pieces)-1].Requests++
}

// result is nil for a batch that fits one piece: it runs whole.
func (s *cutter) result() []Piece {
	if len(s.pieces) < 2 {
		return nil
	}
	return s.pieces
}

// MergeInput are the results of one task's pieces, in order.
type MergeInput struct {
	TaskID string `json:"task_id"`
	Tenant string `json:"tenant"`
	// Pieces keeps its JSON name, as every payload does across a rename:
	// recorded histories and older builds read it.
	Pieces []InferResult `json:"shards"`
}

// MergePieces joins the pieces' outputs, in order, into the task's
// output.jsonl and errors.jsonl, still in the OpenAI Batch output format.
func (a *Activities) MergePieces(ctx context.Context, in MergeInput) (InferResult, error) {
	res := InferResult{Node: a.Node}
	var outs, errs []sealed
	for i, s := range in.Pieces {
		outs, errs = append(outs, sealed{i + 1, s.Output}), append(errs, sealed{i + 1, s.Errors})
		res.Counts.Total += s.Counts.Total
		res.Counts.Completed += s.Counts.Completed
		res.Counts.Failed += s.Counts.Failed
		res.Usage.Add(s.Usage)
	}
	var err error
	res.Output, res.Errors, err = newSink(a, in.Tenant, in.TaskID, nil).mergeInto(ctx, storage.Data, NameOutput, NameErrors, outs, errs)
	var corrupt *batch.CorruptPartError
	if errors.As(err, &corrupt) {
		// A piece's joined output changed after its inference finished;
		// retrying the merge cannot fix that.
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("the output of piece %d changed after it was written: %s", corrupt.Seq, corrupt.Why), string(task.CorruptPart), err)
	}
	return res, err
}

// CollectInput names the task whose partial output to keep.
type CollectInput struct {
	TaskID string `json:"task_id"`
	Tenant string `json:"tenant"`
	// Pieces is how many pieces the task was cut into; 0 when it ran
	// whole. It keeps its JSON name (see MergeInput).
	Pieces int `json:"shards,omitempty"`
}

// Collect merges the sealed parts of the newest checkpoints (of every
// piece) into output.jsonl and errors.jsonl: what a cancelled or failed
// batch had answered is kept in the OpenAI output format.
func (a *Activities) Collect(ctx context.Context, in CollectInput) (InferResult, error) {
	sinks := []*bucketSink{newSink(a, in.Tenant, in.TaskID, nil)}
	if in.Pieces > 0 {
		sinks = sinks[:0]
		for i := range in.Pieces {
			sinks = append(sinks, newSink(a, in.Tenant, in.TaskID, &Piece{Index: i}))
		}
	}
	var parts []batch.Part
	res := InferResult{Node: a.Node}
	for _, s := range sinks {
		cp, err := s.latest(ctx)
		if err != nil {
			return res, fmt.Errorf("reading the checkpoint of %s: %w", in.TaskID, err)
		}
		parts = append(parts, cp.Answered()...)
		res.Counts.Completed += cp.Counts.Completed
		res.Counts.Failed += cp.Counts.Failed
		res.Usage.Add(cp.Usage)
		if in.Pieces == 0 && cp.Done {
			// A batch run whole that finished: its files are final.
			res.Counts.Total, res.Output, res.Errors = cp.Counts.Done(), cp.Output, cp.Errors
			return res, nil
		}
	}
	res.Counts.Total = res.Counts.Done()
	var err error
	res.Output, res.Errors, err = sinks[0].whole().Merge(ctx, parts)
	return res, err
}

func (s *bucketSink) whole() *bucketSink {
	c := *s
	c.piece = ""
	return &c
}
