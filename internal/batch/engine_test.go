package batch_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// memSink keeps parts and checkpoints in memory, and fences as the bucket
// sink does: a checkpoint record is created once per sequence number.
// Part keys are per seal, so a redone part never replaces the first try.
type memSink struct {
	mu          sync.Mutex
	objects     map[string][]byte
	seals       int
	checkpoints []batch.Checkpoint
	recorded    map[int]bool
	merged      [2][]byte
	// onSave, if set, runs after each recorded checkpoint.
	onSave func(cp batch.Checkpoint)
	// beforeSave, if set, runs before each record is written; its error
	// fails the write, as a store's would.
	beforeSave func(ctx context.Context, cp batch.Checkpoint) error
}

func newMemSink() *memSink {
	return &memSink{objects: map[string][]byte{}, recorded: map[int]bool{}}
}

func (s *memSink) put(key string, b []byte) task.ObjectRef {
	s.objects[key] = bytes.Clone(b)
	sum := sha256.Sum256(b)
	return task.ObjectRef{Key: key, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

func (s *memSink) SealPart(_ context.Context, p batch.Part, out, errs []byte) (batch.Part, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seals++
	p.Output = s.put(fmt.Sprintf("parts/output-%06d-%d.jsonl", p.Seq, s.seals), out)
	p.Errors = s.put(fmt.Sprintf("parts/errors-%06d-%d.jsonl", p.Seq, s.seals), errs)
	return p, nil
}

func (s *memSink) SaveCheckpoint(ctx context.Context, cp batch.Checkpoint) error {
	if s.beforeSave != nil {
		if err := s.beforeSave(ctx, cp); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.recorded[cp.Seq] {
		s.mu.Unlock()
		return fmt.Errorf("%w: checkpoint %d exists", batch.ErrFenced, cp.Seq)
	}
	s.recorded[cp.Seq] = true
	cp.Parts = append([]batch.Part(nil), cp.Parts...)
	s.checkpoints = append(s.checkpoints, cp)
	hook := s.onSave
	s.mu.Unlock()
	if hook != nil {
		hook(cp)
	}
	return nil
}

func (s *memSink) Merge(_ context.Context, parts []batch.Part) (task.ObjectRef, task.ObjectRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out, errs []byte
	for _, p := range parts {
		for _, half := range []struct {
			ref task.ObjectRef
			to  *[]byte
		}{{p.Output, &out}, {p.Errors, &errs}} {
			b := s.objects[half.ref.Key]
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != half.ref.SHA256 {
				return task.ObjectRef{}, task.ObjectRef{}, &batch.CorruptPartError{Seq: p.Seq, Key: half.ref.Key, Why: "sha256"}
			}
			*half.to = append(*half.to, b...)
		}
	}
	s.merged = [2][]byte{out, errs}
	return task.ObjectRef{Key: "output.jsonl", Size: int64(len(out))}, task.ObjectRef{Key: "errors.jsonl", Size: int64(len(errs))}, nil
}

func (s *memSink) Finish(ctx context.Context, cp batch.Checkpoint, out, errs []byte) (batch.Checkpoint, error) {
	s.mu.Lock()
	if s.recorded[cp.Seq] {
		s.mu.Unlock()
		return cp, fmt.Errorf("%w: checkpoint %d exists", batch.ErrFenced, cp.Seq)
	}
	cp.Output, cp.Errors = s.put("output.jsonl", out), s.put("errors.jsonl", errs)
	s.merged = [2][]byte{bytes.Clone(out), bytes.Clone(errs)}
	s.mu.Unlock()
	return cp, s.SaveCheckpoint(ctx, cp)
}

func (s *memSink) last() batch.Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpoints[len(s.checkpoints)-1]
}

func startModel(t *testing.T, f testmodel.Faults) *testmodel.Server {
	t.Helper()
	srv := testmodel.New(testmodel.Options{Faults: f, Seed: 7})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func batchFile(n int, bad map[int]string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if line, ok := bad[i]; ok {
			b.WriteString(line + "\n")
			continue
		}
		fmt.Fprintf(&b, `{"custom_id":"req-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"question %d"}]}}`+"\n", i, i)
	}
	return b.String()
}

// lines parses merged JSONL output into custom_id -> count, failing on any
// line that is not an OutputLine.
func lines(t *testing.T, b []byte) ([]batch.OutputLine, map[string]int) {
	t.Helper()
	var all []batch.OutputLine
	ids := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ol batch.OutputLine
		if err := json.Unmarshal(sc.Bytes(), &ol); err != nil {
			t.Fatalf("output line is not JSON: %v: %s", err, sc.Text())
		}
		all = append(all, ol)
		ids[ol.CustomID]++
	}
	return all, ids
}

func engine(srv *testmodel.Server, sink batch.Sink, cfg batch.Config) *batch.Engine {
	cfg.Model = "glm-4-test"
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase, cfg.BackoffMax = time.Millisecond, 20*time.Millisecond
	}
	return &batch.Engine{Client: llm.New(llm.Config{BaseURL: srv.URL(), Timeout: 2 * time.Second}), Sink: sink, Config: cfg}
}

func TestRunAnswersEveryLineInOrder(t *testing.T) {
	srv := startModel(t, testmodel.Faults{})
	bad := map[int]string{
		3:  `{"custom_id": "broken"`,
		7:  "\xef\xbb\xbf" + `{"custom_id":"bom"}`,
		11: `{"custom_id":"bad-utf8","method":"POST","url":"/v1/chat/completions","body":{"messages":"` + "\xff" + `"}}`,
		13: `{"method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[]}}`,
		17: `{"custom_id":"other-model","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-x","messages":[{"role":"user","content":"x"}]}}`,
		19: `{"custom_id":"too-long","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}}`,
		21: "",
	}
	sink := newMemSink()
	e := engine(srv, sink, batch.Config{Concurrency: 4, PartItems: 10, MaxRequestBytes: 4096})
	cp, err := e.Run(context.Background(), strings.NewReader(batchFile(100, bad)), batch.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	out, ids := lines(t, sink.merged[0])
	errs, _ := lines(t, sink.merged[1])
	if len(out) != 93 || len(errs) != 6 {
		t.Fatalf("want 93 answers and 6 errors (one blank line skipped), got %d and %d", len(out), len(errs))
	}
	if cp.Counts != (task.Counts{Total: 99, Completed: 93, Failed: 6}) || !cp.Done {
		t.Fatalf("final checkpoint: %+v", cp)
	}
	for i, ol := range out {
		if ol.Response == nil || ol.Response.StatusCode != 200 || ids[ol.CustomID] != 1 {
			t.Fatalf("output line %d: %+v", i, ol)
		}
		if i > 0 && ol.CustomID == out[i-1].CustomID {
			t.Fatalf("duplicate at %d", i)
		}
	}
	wantLines := []int{3, 7, 11, 13, 17, 19}
	for i, ol := range errs {
		if ol.Line != wantLines[i] || ol.Error == nil {
			t.Errorf("error line %d: want input line %d, got %+v", i, wantLines[i], ol)
		}
	}
	if len(cp.Parts) < 10 {
		t.Errorf("PartItems 10 over 99 items should seal 10 parts, got %d", len(cp.Parts))
	}
}

// TestRunResumesAfterStop stops the engine mid-batch, as a worker shutdown
// does, and checks the next run redoes nothing that was recorded and the
// merged output has each line exactly once.
func TestRunResumesAfterStop(t *testing.T) {
	srv := startModel(t, testmodel.Faults{Latency: 2 * time.Millisecond})
	input := batchFile(400, nil)
	sink := newMemSink()
	e := engine(srv, sink, batch.Config{Concurrency: 8, PartItems: 25})

	ctx, cancel := context.WithCancelCause(context.Background())
	e.Progress = func(m batch.Mark) {
		if m.Counts.Done() >= 150 {
			cancel(batch.ErrStopped)
		}
	}
	cp, err := e.Run(ctx, strings.NewReader(input), batch.Checkpoint{})
	if err != batch.ErrStopped {
		t.Fatalf("want ErrStopped, got %v", err)
	}
	if cp.Line < 150 || cp.Done {
		t.Fatalf("checkpoint after stop should cover the 150+ answered lines: %+v", cp)
	}
	// Requests cancelled by the stop may still reach the first server
	// after Run returns: the second run asks a server of its own, which
	// answers the same.
	again := startModel(t, testmodel.Faults{})
	final, err := engine(again, sink, batch.Config{Concurrency: 8, PartItems: 25}).Run(context.Background(), strings.NewReader(input), cp)
	if err != nil {
		t.Fatal(err)
	}
	redone := again.Stats().Requests
	if redone != int64(400-cp.Line) {
		t.Errorf("second run sent %d requests, want exactly the %d lines after the checkpoint", redone, 400-cp.Line)
	}
	out, ids := lines(t, sink.merged[0])
	if len(out) != 400 || len(ids) != 400 || final.Counts.Completed != 400 {
		t.Fatalf("want 400 unique answers, got %d lines, %d ids, counts %+v", len(out), len(ids), final.Counts)
	}
}

// TestStopDuringASealKeepsThePart stops the engine while a part's record
// is being written, as a pause arriving mid-seal does: the write fails
// with the cancelled context, and the stop writes the same part again.
// The next run redoes nothing that was answered. Parts hold 10 items: the
// second part is sealed mid-run, the tenth (95 items) by the finish.
func TestStopDuringASealKeepsThePart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		items int
		cutAt int
	}{{"mid-run", 100, 2}, {"the last part", 95, 10}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startModel(t, testmodel.Faults{})
			input := batchFile(tc.items, nil)
			sink := newMemSink()
			ctx, cancel := context.WithCancelCause(context.Background())
			cut := false
			sink.beforeSave = func(ctx context.Context, cp batch.Checkpoint) error {
				if cp.Seq == tc.cutAt && !cut {
					cut = true
					cancel(batch.ErrStopped)
					return ctx.Err()
				}
				return nil
			}
			cp, err := engine(srv, sink, batch.Config{Concurrency: 4, PartItems: 10}).Run(ctx, strings.NewReader(input), batch.Checkpoint{})
			if err != batch.ErrStopped {
				t.Fatalf("a stop during a seal: want ErrStopped, got %v", err)
			}
			if !cut || cp.Seq < tc.cutAt || sink.last().Seq != cp.Seq || cp.Line < 10*tc.cutAt-9 || cp.Counts.Done() != cp.Line || cp.Done {
				t.Fatalf("the stop must record the part whose record was cut short, and every answer after it: got checkpoint %d at line %d with %d answered, done %t (last recorded %d)", cp.Seq, cp.Line, cp.Counts.Done(), cp.Done, sink.last().Seq)
			}
			if rec := sink.checkpoints[tc.cutAt-1]; rec.Seq != tc.cutAt || rec.Sealed == nil || rec.Sealed.FirstLine != 10*tc.cutAt-9 {
				t.Fatalf("checkpoint %d must hold the part from line %d whose first write was cut short: %+v", tc.cutAt, 10*tc.cutAt-9, rec)
			}
			answered := srv.Stats().Requests
			again := startModel(t, testmodel.Faults{})
			if _, err := engine(again, sink, batch.Config{Concurrency: 4, PartItems: 10}).Run(context.Background(), strings.NewReader(input), cp); err != nil {
				t.Fatal(err)
			}
			if redone := again.Stats().Requests; redone != int64(tc.items-cp.Line) {
				t.Errorf("the second run sent %d requests; want the %d after line %d (the first answered %d)", redone, tc.items-cp.Line, cp.Line, answered)
			}
			if out, ids := lines(t, sink.merged[0]); len(out) != tc.items || len(ids) != tc.items {
				t.Fatalf("want %d unique answers, got %d lines, %d ids", tc.items, len(out), len(ids))
			}
		})
	}
}

func TestRunRetriesFaultsAndRecordsBadRequests(t *testing.T) {
	srv := startModel(t, testmodel.Faults{RateLimit: 0.1, ServerError: 0.1, BadRequest: 0.02})
	sink := newMemSink()
	e := engine(srv, sink, batch.Config{Concurrency: 8, MaxAttempts: 10, PartItems: 100})
	cp, err := e.Run(context.Background(), strings.NewReader(batchFile(500, nil)), batch.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	st := srv.Stats()
	out, _ := lines(t, sink.merged[0])
	errs, _ := lines(t, sink.merged[1])
	if len(out)+len(errs) != 500 {
		t.Fatalf("%d answers + %d errors != 500", len(out), len(errs))
	}
	if int64(len(errs)) != st.BadRequests {
		t.Errorf("errors.jsonl has %d lines but the server refused %d requests with 400", len(errs), st.BadRequests)
	}
	for _, ol := range errs {
		if ol.Error.Code != string(llm.InvalidRequest) || ol.Response == nil || ol.Response.StatusCode != 400 {
			t.Errorf("error line should be the 400 answer: %+v", ol)
		}
	}
	if st.RateLimited == 0 || st.ServerErrors == 0 || cp.Counts.Failed != len(errs) {
		t.Errorf("faults were not exercised or counted: stats %+v counts %+v", st, cp.Counts)
	}
}

// TestRunPieces runs a file as three pieces, each reading from its byte
// offset, and checks the pieces together answer every line once.
func TestRunPieces(t *testing.T) {
	srv := startModel(t, testmodel.Faults{})
	input := batchFile(90, nil)
	// Byte offsets of lines 1, 31 and 61, as screening records them.
	lr := batch.NewLineReader(strings.NewReader(input), 1<<20)
	offsets := map[int]int64{1: 0}
	for {
		_, n, _, err := lr.Next()
		if err != nil {
			break
		}
		offsets[n+1] = lr.Offset()
	}
	seen := map[string]int{}
	for _, first := range []int{1, 31, 61} {
		sink := newMemSink()
		e := engine(srv, sink, batch.Config{Concurrency: 4, PartItems: 7, FirstLine: first, LastLine: first + 29})
		cp, err := e.Run(context.Background(), strings.NewReader(input[offsets[first]:]), batch.Checkpoint{})
		if err != nil {
			t.Fatal(err)
		}
		if cp.Counts.Completed != 30 || cp.Line != first+29 {
			t.Errorf("piece from line %d: %+v", first, cp)
		}
		_, ids := lines(t, sink.merged[0])
		for id, n := range ids {
			seen[id] += n
		}
	}
	if len(seen) != 90 {
		t.Fatalf("three pieces answered %d distinct lines, want 90", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s answered %d times", id, n)
		}
	}
}

// A batch answered within one part is written once: its files and one
// final record, no part sealed or merged. Resumed from that record, it
// asks the model nothing, and the record's files stand for its one part.
func TestBatchWithinOnePartIsWrittenOnce(t *testing.T) {
	srv := startModel(t, testmodel.Faults{})
	sink := newMemSink()
	e := engine(srv, sink, batch.Config{Concurrency: 4})
	input := batchFile(5, map[int]string{4: `{"custom_id": "broken"`})
	cp, err := e.Run(context.Background(), strings.NewReader(input), batch.Checkpoint{})
	if err != nil {
		t.Fatal(err)
	}
	if sink.seals != 0 || len(sink.checkpoints) != 1 || !sink.last().Done {
		t.Fatalf("want no part sealed and one final record, got %d seal(s) and records %+v", sink.seals, sink.checkpoints)
	}
	out, _ := lines(t, sink.merged[0])
	errs, _ := lines(t, sink.merged[1])
	if len(out) != 4 || len(errs) != 1 || cp.Counts != (task.Counts{Total: 5, Completed: 4, Failed: 1}) || cp.Line != 5 {
		t.Fatalf("want 4 answers and 1 error up to line 5, got %d and %d, checkpoint %+v", len(out), len(errs), cp)
	}
	if cp.Output.SHA256 == "" || cp.Output != sink.last().Output || cp.Errors != sink.last().Errors {
		t.Fatalf("the record must name the files: returned %+v, recorded %+v", cp, sink.last())
	}
	asked := srv.Stats().Requests
	again, err := e.Run(context.Background(), strings.NewReader(input), sink.last())
	if err != nil || !again.Done || srv.Stats().Requests != asked {
		t.Fatalf("resumed from the final record: %+v, %v, %d request(s) more", again, err, srv.Stats().Requests-asked)
	}
	parts := sink.last().Answered()
	if len(parts) != 1 || parts[0].Output != cp.Output || parts[0].Completed != 4 || parts[0].Failed != 1 {
		t.Fatalf("the final files must stand for the one part: %+v", parts)
	}
}
