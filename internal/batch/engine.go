package batch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Chatter sends one chat-completions request body to a model server.
// *llm.Client is one.
type Chatter interface {
	Chat(ctx context.Context, body json.RawMessage) (*llm.Response, error)
}

// Sink keeps what the engine produces. Two attempts of the same batch may
// run at once (a worker that was paused past its heartbeat timeout wakes
// up beside its replacement), so a sink fences them: parts go to keys of
// the attempt's own, and a checkpoint record is created only once per
// sequence number, so the attempt that loses gets ErrFenced and stops.
type Sink interface {
	// SealPart stores part p.Seq of output.jsonl and errors.jsonl, under
	// keys of this attempt's own, and returns p with their references.
	SealPart(ctx context.Context, p Part, output, errs []byte) (Part, error)
	// SaveCheckpoint records cp.Seq, which extends record cp.Seq-1 with
	// cp.Sealed (nil for the final record). It returns an error matching
	// ErrFenced when another attempt has recorded that sequence number or
	// moved on since this one last recorded.
	//
	// SealPart and SaveCheckpoint return an error matching
	// ErrStoreUnavailable when the store could not be reached: the engine
	// then holds what it has and tries again.
	SaveCheckpoint(ctx context.Context, cp Checkpoint) error
	// Merge joins the parts, in order, into the final output and errors
	// files, checking each part's size and sha256: a part that does not
	// match is a *CorruptPartError.
	Merge(ctx context.Context, parts []Part) (output, errs task.ObjectRef, err error)
	// Finish ends a batch answered within one part: it stores output and
	// errs as the final files, where Merge would have put them, and
	// records cp (Done, the final record) with their references, fenced
	// as SaveCheckpoint is, and returns it. No part is sealed or merged.
	Finish(ctx context.Context, cp Checkpoint, output, errs []byte) (Checkpoint, error)
}

// CorruptPartError is a sealed part whose stored bytes no longer match the
// size and sha256 its checkpoint record holds.
type CorruptPartError struct {
	Seq int
	Key string
	Why string
}

func (e *CorruptPartError) Error() string {
	return fmt.Sprintf("batch: part %d (%s) is corrupt: %s", e.Seq, e.Key, e.Why)
}

// HandBackError ends a run that held for its model server longer than
// Config.HandBackAfter: its checkpoint is recorded, and the work may go
// to another node serving the model, which resumes after it.
type HandBackError struct {
	// Since is when the model server was held to be down.
	Since time.Time
}

func (e *HandBackError) Error() string {
	return fmt.Sprintf("batch: the model server has been down since %s; handing the work back", e.Since.UTC().Format(time.RFC3339))
}

// Config tunes the engine. The zero value works.
type Config struct {
	// Model, if set, is the only model a line may ask for.
	Model string `json:"model"`
	// Concurrency is how many requests are in flight at once (default 8).
	Concurrency int `json:"concurrency"`
	// MaxAttempts bounds the tries of one request for retryable errors:
	// 429, 5xx, timeouts (default 5).
	MaxAttempts int `json:"max_attempts"`
	// BackoffBase and BackoffMax shape the per-request exponential backoff
	// (defaults 200ms and 30s); a Retry-After header is a floor.
	BackoffBase time.Duration `json:"backoff_base"`
	BackoffMax  time.Duration `json:"backoff_max"`
	// MaxRequestBytes bounds one input line (default 1 MiB).
	MaxRequestBytes int `json:"max_request_bytes"`
	// PartItems seals a part, and records a checkpoint, every this many
	// items (default 1000).
	PartItems int `json:"part_items"`
	// CheckpointInterval also seals and records at least this often when
	// there is new output (default 30s).
	CheckpointInterval time.Duration `json:"checkpoint_interval"`
	// IDPrefix makes output line IDs unique across tasks.
	IDPrefix string `json:"id_prefix"`
	// FirstLine and LastLine bound a piece: the input reader starts at
	// FirstLine (1 when 0), and lines after LastLine (when > 0) are left
	// to other pieces.
	FirstLine int `json:"first_line,omitempty"`
	LastLine  int `json:"last_line,omitempty"`
	// OutageAfter is how many requests in a row must fail without an
	// answer from the model server (no response, or a 5xx) before the
	// engine calls it an outage and holds (default min(Concurrency, 8),
	// at least 3).
	OutageAfter int `json:"outage_after,omitempty"`
	// ProbeBase and ProbeMax shape the backoff between probes of a model
	// server in an outage (defaults 1s and 15s).
	ProbeBase time.Duration `json:"probe_base,omitempty"`
	ProbeMax  time.Duration `json:"probe_max,omitempty"`
	// HandBackAfter ends a run that has held this long for the model
	// server with ErrHandBack, after its checkpoint, so the work can go
	// to another node; 0 holds as long as the outage lasts.
	HandBackAfter time.Duration `json:"hand_back_after,omitempty"`
}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 200 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 1 << 20
	}
	if c.PartItems <= 0 {
		c.PartItems = 1000
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 30 * time.Second
	}
	if c.OutageAfter <= 0 {
		c.OutageAfter = max(3, min(c.Concurrency, 8))
	}
	if c.ProbeBase <= 0 {
		c.ProbeBase = time.Second
	}
	if c.ProbeMax <= 0 {
		c.ProbeMax = 15 * time.Second
	}
	return c
}

// Digest names the settings that change what the output holds. A
// checkpoint taken under another digest is not resumed from.
func (c Config) Digest() string {
	c = c.withDefaults()
	b, _ := json.Marshal(struct {
		Model           string
		MaxRequestBytes int
		IDPrefix        string
	}{c.Model, c.MaxRequestBytes, c.IDPrefix})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Checkpoint is the resume point of a batch: every input line up to Line
// is answered in the sealed Parts. Its record in the bucket
// (metadata.json) holds only Sealed, the part it adds, so recording is
// O(1) whatever the number of parts; Parts is rebuilt from the records.
type Checkpoint struct {
	Seq          int            `json:"seq"`
	Time         time.Time      `json:"time"`
	Line         int            `json:"line"`
	Counts       task.Counts    `json:"request_counts"`
	Usage        task.Usage     `json:"usage,omitzero"`
	Parts        []Part         `json:"-"`
	Sealed       *Part          `json:"part,omitempty"`
	ConfigDigest string         `json:"config_digest"`
	Done         bool           `json:"done,omitempty"`
	Output       task.ObjectRef `json:"output,omitempty"`
	Errors       task.ObjectRef `json:"errors,omitempty"`
	// Attempt is the attempt that wrote the record; the sink sets it.
	Attempt Attempt `json:"attempt,omitzero"`
}

// Apply adds a record's part to the parts rebuilt so far: a part with a
// sequence number already seen replaces that part (a recomputed one).
func (cp *Checkpoint) Apply(rec Checkpoint) {
	parts := cp.Parts
	if p := rec.Sealed; p != nil {
		if p.Seq >= 1 && p.Seq <= len(parts) {
			parts[p.Seq-1] = *p
		} else {
			parts = append(parts, *p)
		}
	}
	*cp = rec
	cp.Parts = parts
}

// Answered is every part the checkpoint holds, in order, as Merge joins
// them. A batch finished within one part (Sink.Finish) sealed none: its
// final files stand for that part.
func (cp Checkpoint) Answered() []Part {
	if len(cp.Parts) > 0 || !cp.Done || cp.Output.Key == "" {
		return cp.Parts
	}
	return []Part{{Seq: 1, LastLine: cp.Line, Completed: cp.Counts.Completed, Failed: cp.Counts.Failed, Usage: cp.Usage, Output: cp.Output, Errors: cp.Errors}}
}

// Mark is what the engine tells its Progress hook, and what the inference
// activity sends as heartbeat details: small, whatever the batch's size.
type Mark struct {
	// Piece is the piece's index (0 for a batch run whole), set by the
	// activity, so the status path can tell the pieces apart.
	Piece  int         `json:"piece"`
	Seq    int         `json:"seq"`
	Line   int         `json:"line"`
	Counts task.Counts `json:"request_counts"`
	// WaitingSince is when the model server stopped answering, while the
	// engine holds for it; zero otherwise.
	WaitingSince time.Time `json:"waiting_since,omitzero"`
	// StoreWaitingSince is when the bucket stopped taking the engine's
	// writes, while it holds the answers for it; zero otherwise.
	StoreWaitingSince time.Time `json:"store_waiting_since,omitzero"`
	// Node and Attempts are set by the activity: the node that runs the
	// piece, and how many attempts have run it, hand-backs included.
	Node     string `json:"node,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
}

// Part is one sealed piece of the output.
type Part struct {
	Seq       int            `json:"seq"`
	FirstLine int            `json:"first_line"`
	LastLine  int            `json:"last_line"`
	Completed int            `json:"completed"`
	Failed    int            `json:"failed"`
	Usage     task.Usage     `json:"usage,omitzero"`
	Output    task.ObjectRef `json:"output"`
	Errors    task.ObjectRef `json:"errors"`
}

// Engine runs one batch.
type Engine struct {
	Client Chatter
	Sink   Sink
	Config Config
	// Progress, if set, is told how far the batch is about once a second
	// and after every checkpoint.
	Progress func(Mark)
	// Reopen, if set, opens the input again from the same place Run's
	// input started, to recompute a part found corrupt at the merge.
	Reopen func(ctx context.Context) (io.ReadCloser, error)
}

// ErrStopped is the cause to give the context when the worker is stopping:
// Run then records a checkpoint and returns it, and the next attempt
// resumes there.
var ErrStopped = errors.New("batch: stopped for a worker shutdown")

// partBytes seals a part early when its buffers grow past this, so that
// large answers do not make memory grow with PartItems.
const partBytes = 8 << 20

type item struct {
	seq, line int
	req       Request
	lineErr   *LineError
}

type result struct {
	seq, line int
	out       []byte // one JSONL line with its newline
	failed    bool
	usage     task.Usage // the answer's, as the model server reported it
}

// Run answers every line of input after from.Line and returns the final
// checkpoint (Done, with the merged Output and Errors). When ctx ends
// first, Run seals what is answered, records a checkpoint, and returns
// context.Cause(ctx). When another attempt has taken over, it returns
// ErrFenced at once, having written nothing that counts.
func (e *Engine) Run(ctx context.Context, input io.Reader, from Checkpoint) (Checkpoint, error) {
	cfg := e.Config.withDefaults()
	if from.ConfigDigest != cfg.Digest() {
		from = Checkpoint{}
	}
	from.ConfigDigest = cfg.Digest()
	if from.Done {
		return from, nil
	}
	r := &run{Engine: e, cfg: cfg, cp: from, counts: from.Counts, usage: from.Usage, recorded: from.Counts, lastSave: time.Now(), health: newHealth(cfg)}
	r.report = r.mark
	if err := r.process(ctx, input, r.cp.Line); err != nil {
		return r.cp, r.fenced(err)
	}
	cp, err := r.finish(ctx)
	return cp, r.fenced(err)
}

// fenced says, on a fenced stop, how many answers no record holds.
func (r *run) fenced(err error) error {
	var fe *FencedError
	if !errors.Is(err, ErrFenced) || errors.As(err, &fe) {
		return err
	}
	return &FencedError{Unrecorded: r.counts.Done() - r.recorded.Done(), Err: err}
}

// finish seals the last part, merges, recomputes any part the merge finds
// corrupt, and records the final checkpoint. A batch answered within one
// part has nothing to merge: its part is the final output (finishInOne).
func (r *run) finish(ctx context.Context) (Checkpoint, error) {
	if len(r.cp.Parts) == 0 && r.part.Completed+r.part.Failed > 0 {
		return r.finishInOne(ctx)
	}
	if err := r.seal(ctx); err != nil {
		if cutShort(ctx, err) {
			return r.cp, r.sealAgain(ctx)
		}
		return r.cp, err
	}
	var out, errs task.ObjectRef
	for redone := 0; ; redone++ {
		err := r.holdStore(ctx, func() (err error) {
			out, errs, err = r.Sink.Merge(ctx, r.cp.Parts)
			return err
		})
		var corrupt *CorruptPartError
		if errors.As(err, &corrupt) && r.Reopen != nil && redone < len(r.cp.Parts) {
			if err := r.redo(ctx, corrupt.Seq); err != nil {
				return r.cp, err
			}
			continue
		}
		if err != nil {
			return r.cp, fmt.Errorf("batch: merging parts: %w", err)
		}
		break
	}
	cp := r.cp
	cp.Done, cp.Output, cp.Errors = true, out, errs
	cp.Counts.Total = cp.Counts.Done()
	cp.Sealed = nil
	if err := r.save(ctx, cp); err != nil {
		return r.cp, err
	}
	return r.cp, nil
}

// finishInOne stores the one part's answers as the final files with the
// final record: one write of each file and one record, where sealing,
// recording, merging and recording again would cost four round trips
// more on every one-prompt task.
func (r *run) finishInOne(ctx context.Context) (Checkpoint, error) {
	cp := r.cp
	cp.Seq++
	cp.Time = time.Now().UTC()
	cp.Line = r.part.LastLine
	cp.Counts, cp.Usage = r.counts, r.usage
	cp.Counts.Total = cp.Counts.Done()
	cp.Done, cp.Sealed = true, nil
	var done Checkpoint
	err := r.holdStore(ctx, func() (err error) {
		done, err = r.Sink.Finish(ctx, cp, r.out.Bytes(), r.err.Bytes())
		return err
	})
	if errors.Is(err, ErrFenced) {
		return r.cp, err
	}
	if err != nil {
		return r.cp, fmt.Errorf("batch: recording the final checkpoint %d: %w", cp.Seq, err)
	}
	r.cp = done
	r.recorded = done.Counts
	r.lastSave = time.Now()
	r.report()
	return r.cp, nil
}

// redo answers the lines of part seq again, from a fresh read of the
// input, and records the new part in its place.
func (r *run) redo(ctx context.Context, seq int) error {
	old := r.cp.Parts[seq-1]
	in, err := r.Reopen(ctx)
	if err != nil {
		return fmt.Errorf("batch: reopening the input to recompute part %d: %w", seq, err)
	}
	defer in.Close()
	cfg := r.cfg
	cfg.LastLine = old.LastLine
	sub := &run{Engine: r.Engine, cfg: cfg, cp: Checkpoint{Parts: r.cp.Parts}, whole: true, health: r.health, report: r.report, lastSave: time.Now()}
	if err := sub.process(ctx, in, old.FirstLine-1); err != nil {
		return err
	}
	sub.part.Seq = seq
	p, err := r.Sink.SealPart(ctx, sub.part, sub.out.Bytes(), sub.err.Bytes())
	if err != nil {
		return fmt.Errorf("batch: sealing recomputed part %d: %w", seq, err)
	}
	r.counts.Completed += p.Completed - old.Completed
	r.counts.Failed += p.Failed - old.Failed
	r.usage.Add(p.Usage.Sub(old.Usage))
	r.cp.Parts[seq-1] = p
	cp := r.cp
	cp.Sealed = &p
	cp.Counts, cp.Usage = r.counts, r.usage
	return r.save(ctx, cp)
}

// run is the state of one call to Run; only the collector (run's own
// goroutine) touches it.
type run struct {
	*Engine
	cfg Config

	cp       Checkpoint  // the last recorded checkpoint
	counts   task.Counts // answered so far, recorded or not
	usage    task.Usage  // the tokens of counts.Completed
	recorded task.Counts // answered and named by a record
	out, err bytes.Buffer
	part     Part // the part being filled
	lastSave time.Time
	health   *health
	report   func()
	// storeDown is when the bucket stopped taking writes; zero while it
	// takes them.
	storeDown time.Time
	// whole keeps every answer in one part, unsealed, for redo.
	whole bool
}

// process answers the lines after skip, sealing parts as they fill
// (unless whole), and returns when every line is answered.
func (r *run) process(ctx context.Context, input io.Reader, skip int) error {
	// The window lets requests go on while a part is being sealed, which
	// takes a few round trips to the bucket.
	window := 16 * r.cfg.Concurrency
	work := make(chan item)
	results := make(chan result, window)
	slots := make(chan struct{}, window)
	total := make(chan int, 1)
	readErr := make(chan error, 1)

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()

	var workers sync.WaitGroup
	for range r.cfg.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for it := range work {
				if res, ok := r.answer(runCtx, it); ok {
					results <- res
				}
			}
		}()
	}
	go r.read(runCtx, input, skip, work, results, slots, total, readErr)

	next, want := 0, -1
	pending := map[int]result{}
	stopNow := func(cause error) error {
		cancelRun()
		workers.Wait()
		return r.stop(ctx, pending, next, results, slots, cause)
	}
	// stop seals a part cut short again, with the answers still pending.
	sealFailed := func(err error) error {
		if cutShort(ctx, err) {
			return stopNow(context.Cause(ctx))
		}
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	r.resetPart()
	for want < 0 || next < want {
		select {
		case res := <-results:
			pending[res.seq] = res
			var err error
			if next, err = r.collect(ctx, pending, next, slots); err != nil {
				return sealFailed(err)
			}
		case n := <-total:
			want = n
		case err := <-readErr:
			// The input stream broke: keep what is answered and let the
			// next attempt resume after it.
			return stopNow(fmt.Errorf("batch: reading input: %w", err))
		case <-tick.C:
			// A held batch records what it has, so that a worker lost
			// during a long outage loses nothing.
			down := r.health.since()
			due := time.Since(r.lastSave) >= r.cfg.CheckpointInterval || !down.IsZero()
			if !r.whole && r.part.Completed+r.part.Failed > 0 && due {
				if err := r.seal(ctx); err != nil {
					return sealFailed(err)
				}
			}
			r.report()
			if !down.IsZero() && r.cfg.HandBackAfter > 0 && time.Since(down) >= r.cfg.HandBackAfter {
				return stopNow(&HandBackError{Since: down})
			}
		case <-ctx.Done():
			return stopNow(context.Cause(ctx))
		}
	}
	cancelRun()
	workers.Wait()
	return nil
}

// read feeds work in input order from the line after skip, holding a slot
// per item so that at most window items are between reading and writing.
func (r *run) read(ctx context.Context, input io.Reader, skip int, work chan<- item, results chan<- result, slots chan struct{}, total chan<- int, readErr chan<- error) {
	defer close(work)
	lr := NewLineReader(input, r.cfg.MaxRequestBytes)
	lr.StartAt(max(r.cfg.FirstLine, 1))
	seq, last := 0, 0
	for {
		raw, line, tooLong, err := lr.Next()
		if err == io.EOF || (err == nil && r.cfg.LastLine > 0 && line > r.cfg.LastLine) {
			total <- seq
			return
		}
		if err != nil && r.Reopen != nil && ctx.Err() == nil {
			// The stream broke (the bucket went away mid-read): open it
			// again and go on after the last line read, keeping every
			// answer in flight.
			var in io.ReadCloser
			if in, err = r.reopen(ctx); err == nil {
				defer in.Close()
				lr = NewLineReader(in, r.cfg.MaxRequestBytes)
				lr.StartAt(max(r.cfg.FirstLine, 1))
				skip = max(skip, last)
				continue
			}
		}
		if err != nil {
			readErr <- err
			return
		}
		last = line
		if line <= skip || (!tooLong && len(bytes.TrimSpace(raw)) == 0) {
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		it := item{seq: seq, line: line}
		seq++
		if tooLong {
			it.lineErr = &LineError{CodeLineTooLong, fmt.Sprintf("the line is longer than %d bytes", r.cfg.MaxRequestBytes)}
		} else {
			it.req, it.lineErr = ParseRequest(raw, r.cfg.Model)
		}
		if it.lineErr != nil {
			// A slot is held, so the buffered channel has room.
			results <- r.failure(it, nil, it.lineErr)
			continue
		}
		// it.req.Body is already a copy (json.RawMessage copies what it
		// decodes), so raw's buffer may be reused by the next line.
		select {
		case work <- it:
		case <-ctx.Done():
			return
		}
	}
}

// collect writes every result that is next in input order, sealing parts
// as they fill, and returns the new next.
func (r *run) collect(ctx context.Context, pending map[int]result, next int, slots <-chan struct{}) (int, error) {
	for {
		res, ok := pending[next]
		if !ok {
			return next, nil
		}
		delete(pending, next)
		if res.failed {
			r.err.Write(res.out)
			r.part.Failed++
			r.counts.Failed++
		} else {
			r.out.Write(res.out)
			r.part.Completed++
			r.counts.Completed++
			r.part.Usage.Add(res.usage)
			r.usage.Add(res.usage)
		}
		if r.part.FirstLine == 0 {
			r.part.FirstLine = res.line
		}
		r.part.LastLine = res.line
		next++
		<-slots
		full := r.part.Completed+r.part.Failed >= r.cfg.PartItems || r.out.Len()+r.err.Len() >= partBytes
		if full && !r.whole {
			if err := r.seal(ctx); err != nil {
				return next, err
			}
		}
	}
}

// stop keeps every answer that arrived before the stop, records a
// checkpoint with a context of its own (ctx is already done), and returns
// cause. A fenced attempt records nothing.
func (r *run) stop(ctx context.Context, pending map[int]result, next int, results <-chan result, slots <-chan struct{}, cause error) error {
	if r.whole {
		return cause
	}
	for drained := false; !drained; {
		select {
		case res := <-results:
			pending[res.seq] = res
		default:
			drained = true
		}
	}
	sctx, cancel := stopContext(ctx)
	defer cancel()
	if _, err := r.collect(sctx, pending, next, slots); err != nil {
		return errors.Join(cause, err)
	}
	if err := r.seal(sctx); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// stopContext is the context a stop records its checkpoint with: ctx's
// values, not its end.
func stopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// cutShort reports whether a seal failed because ctx ended (a pause, a
// cancel or a shutdown arriving mid-write) rather than on its own. Such a
// seal is the stop's: it is done again with a context of its own, so the
// answers in the part are kept, not redone.
func cutShort(ctx context.Context, err error) bool {
	return ctx.Err() != nil && !errors.Is(err, ErrFenced)
}

// sealAgain seals the part a stop cut short and returns the stop's cause.
func (r *run) sealAgain(ctx context.Context) error {
	cause := context.Cause(ctx)
	sctx, cancel := stopContext(ctx)
	defer cancel()
	if err := r.seal(sctx); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// seal stores the part being filled and records a checkpoint after it.
func (r *run) seal(ctx context.Context) error {
	if r.part.Completed+r.part.Failed == 0 {
		return nil
	}
	var p Part
	err := r.holdStore(ctx, func() (err error) {
		p, err = r.Sink.SealPart(ctx, r.part, r.out.Bytes(), r.err.Bytes())
		return err
	})
	if err != nil {
		return fmt.Errorf("batch: sealing part %d: %w", r.part.Seq, err)
	}
	// r.cp takes the part only once its record is written, so a seal
	// cut short (a stop arriving mid-write) can be done again whole.
	cp := r.cp
	cp.Parts = append(cp.Parts, p)
	cp.Sealed = &cp.Parts[len(cp.Parts)-1]
	cp.Line = p.LastLine
	cp.Counts, cp.Usage = r.counts, r.usage
	if err := r.save(ctx, cp); err != nil {
		return err
	}
	r.resetPart()
	return nil
}

// save records cp as the next checkpoint and, once it is written, makes
// it the run's.
func (r *run) save(ctx context.Context, cp Checkpoint) error {
	cp.Seq++
	cp.Time = time.Now().UTC()
	if err := r.holdStore(ctx, func() error { return r.Sink.SaveCheckpoint(ctx, cp) }); err != nil {
		if errors.Is(err, ErrFenced) {
			return err
		}
		return fmt.Errorf("batch: recording checkpoint %d: %w", cp.Seq, err)
	}
	r.cp = cp
	r.recorded = r.cp.Counts
	r.lastSave = time.Now()
	r.report()
	return nil
}

func (r *run) resetPart() {
	r.out.Reset()
	r.err.Reset()
	r.part = Part{Seq: len(r.cp.Parts) + 1}
}

func (r *run) mark() {
	if r.Progress != nil {
		r.Progress(Mark{Seq: r.cp.Seq, Line: r.cp.Line, Counts: r.counts, WaitingSince: r.health.since(), StoreWaitingSince: r.storeDown})
	}
}

// answer asks the model server, retrying what may succeed later. It
// returns false when ctx ended first: that item is left for the next
// attempt. While the model server is out as a whole, failures do not count
// against the item: it waits, and one request at a time probes.
func (r *run) answer(ctx context.Context, it item) (result, bool) {
	held := false
	for attempt := 1; ; attempt++ {
		probe, err := r.health.acquire(ctx)
		if err != nil {
			return result{}, false
		}
		resp, err := r.Client.Chat(ctx, it.req.Body)
		if err == nil {
			r.health.ok(probe)
			return r.success(it, resp), true
		}
		if ctx.Err() != nil {
			r.health.release(probe)
			return result{}, false
		}
		var le *llm.Error
		if !errors.As(err, &le) {
			le = &llm.Error{Kind: llm.UpstreamUnavailable, Message: err.Error()}
		}
		if !serverWide(le) {
			// The server answered: whatever is wrong is this item's.
			r.health.ok(probe)
		} else if r.health.failed(probe) {
			attempt--
			if probe && !sleep(ctx, r.health.probeWait()) {
				r.health.release(probe)
				return result{}, false
			}
			r.health.release(probe)
			continue
		}
		if !le.Retryable() || attempt >= r.cfg.MaxAttempts {
			// Before an item fails for the server's fault, the engine
			// holds once and probes: at the start of an outage, answers
			// that were in flight reset the count of failures in a row,
			// so an item can run out of tries before the outage is
			// called. An item the server keeps failing while it answers
			// others fails after that one hold.
			if serverWide(le) && !held {
				held = true
				r.health.trip()
				attempt--
				continue
			}
			return r.failure(it, le, &LineError{Code: string(le.Kind), Message: le.Message}), true
		}
		if !sleep(ctx, llm.Backoff(attempt, r.cfg.BackoffBase, r.cfg.BackoffMax, le.RetryAfter)) {
			return result{}, false
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *run) success(it item, resp *llm.Response) result {
	res := r.line(it, OutputLine{
		CustomID: it.req.CustomID,
		Response: &Response{StatusCode: resp.StatusCode, RequestID: resp.RequestID, Body: resp.Body},
	}, false)
	if !res.failed {
		// The counts the client read in its one parse of the answer.
		u := resp.Usage
		res.usage = task.Usage{PromptTokens: int64(u.PromptTokens), CompletionTokens: int64(u.CompletionTokens), TotalTokens: int64(u.TotalTokens)}
	}
	return res
}

func (r *run) failure(it item, le *llm.Error, lerr *LineError) result {
	ol := OutputLine{CustomID: it.req.CustomID, Error: lerr, Line: it.line}
	if le != nil && le.StatusCode != 0 {
		ol.Response = &Response{StatusCode: le.StatusCode, Body: jsonOrString(le.Body)}
	}
	return r.line(it, ol, true)
}

func (r *run) line(it item, ol OutputLine, failed bool) result {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%s", r.cfg.IDPrefix, it.line, ol.CustomID))
	ol.ID = "batch_req_" + hex.EncodeToString(h[:12])
	b, err := json.Marshal(ol)
	if err != nil {
		// Only a response body that is not JSON gets here; the client
		// already refuses those, so record it rather than lose the line.
		b, _ = json.Marshal(OutputLine{ID: ol.ID, CustomID: ol.CustomID, Line: it.line, Error: &LineError{Code: string(llm.MalformedResponse), Message: err.Error()}})
		failed = true
	}
	return result{seq: it.seq, line: it.line, out: append(b, '\n'), failed: failed}
}

// jsonOrString keeps an upstream error body as JSON when it is JSON, and as
// a JSON string otherwise.
func jsonOrString(b []byte) json.RawMessage {
	if len(b) > 0 && json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}
