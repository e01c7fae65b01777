package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// bucketSink keeps a batch's parts and checkpoints in the bucket under the
// checkpoint category, and merges the parts into the task's output.
//
// Fencing: parts go to keys of the attempt's own; checkpoint records
// (checkpoints/<seq>/metadata.json) are created only once
// (If-None-Match); the head (checkpoints/head.json) names the newest and
// moves only by If-Match. An attempt that finds either taken stops
// (batch.ErrFenced): what it wrote is referenced by no record.
type bucketSink struct {
	a      *Activities
	tenant string
	taskID string
	// shard prefixes the names of a shard's parts and records ("s003-");
	// empty for a batch run whole.
	shard string
	// attempt names this attempt's part keys.
	attempt string
	// head is checkpoints/head.json, at the version this attempt last
	// wrote or read.
	head *storage.Head
}

func newSink(a *Activities, tenant, taskID string, shard *Shard) *bucketSink {
	s := &bucketSink{a: a, tenant: tenant, taskID: taskID}
	if shard != nil {
		s.shard = fmt.Sprintf("s%03d-", shard.Index)
	}
	s.head = &storage.Head{Store: a.Store, Key: s.headKey()}
	return s
}

func (s *bucketSink) key(c storage.Category, name string) (string, error) {
	return taskObject{c, s.tenant, s.taskID, name}.key()
}

// putPart writes one half of a part.
func (s *bucketSink) putPart(ctx context.Context, half string, seq int, b []byte) (task.ObjectRef, error) {
	key, err := s.key(storage.Checkpoint, fmt.Sprintf("parts/%s%s-%06d-%s.jsonl", s.shard, half, seq, s.attempt))
	if err != nil {
		return task.ObjectRef{}, err
	}
	return s.a.put(ctx, key, storage.Checkpoint, bytes.NewReader(b), int64(len(b)), "application/jsonl")
}

// SealPart writes both halves of a part under this attempt's keys.
func (s *bucketSink) SealPart(ctx context.Context, p batch.Part, out, errs []byte) (batch.Part, error) {
	var err error
	if p.Output, err = s.putPart(ctx, "output", p.Seq, out); err != nil {
		return p, err
	}
	p.Errors, err = s.putPart(ctx, "errors", p.Seq, errs)
	return p, err
}

const checkpointsDir = "checkpoints/"

func (s *bucketSink) recordKey(seq int) (string, error) {
	return s.key(storage.Checkpoint, fmt.Sprintf("%s%s%06d/metadata.json", checkpointsDir, s.shard, seq))
}

// headKey is the key of the head; a sink's tenant and task are checked
// before any write, by recordKey and the part keys, so an invalid one
// here only names a key under "invalid/" that nothing writes.
func (s *bucketSink) headKey() string {
	return storage.TaskPrefix(storage.Checkpoint, s.tenant, s.taskID) + checkpointsDir + s.shard + "head.json"
}

// checkpointHead is what checkpoints/head.json holds.
type checkpointHead struct {
	Seq int `json:"seq"`
}

// SaveCheckpoint creates record cp.Seq, then moves the head to it. Each
// record holds one part, so a seal writes the same few bytes however
// many parts came before.
func (s *bucketSink) SaveCheckpoint(ctx context.Context, cp batch.Checkpoint) error {
	key, err := s.recordKey(cp.Seq)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	if err := storage.CreateRecord(ctx, s.a.Store, key, b); err != nil {
		return s.fenced(err, "checkpoint %d was recorded by another attempt", cp.Seq)
	}
	return s.moveHead(ctx, cp.Seq)
}

func (s *bucketSink) moveHead(ctx context.Context, seq int) error {
	if err := s.head.Move(ctx, checkpointHead{Seq: seq}); err != nil {
		return s.fenced(err, "the checkpoint head moved past %d under another attempt", seq-1)
	}
	return nil
}

func (s *bucketSink) fenced(err error, format string, args ...any) error {
	if errors.Is(err, task.ErrConflict) {
		return fmt.Errorf("%w: %s", batch.ErrFenced, fmt.Sprintf(format, args...))
	}
	return err
}

// records are the keys of the stored checkpoint records, oldest first.
func (s *bucketSink) records(ctx context.Context) ([]string, error) {
	infos, err := s.a.Store.List(ctx, storage.TaskPrefix(storage.Checkpoint, s.tenant, s.taskID)+checkpointsDir)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, in := range infos {
		_, name, _ := strings.Cut(in.Key, "/"+checkpointsDir)
		// A whole batch's records start with a digit, a shard's with its
		// prefix; each sink sees only its own.
		mine := strings.HasPrefix(name, s.shard) && (s.shard != "" || name != "" && name[0] >= '0' && name[0] <= '9')
		if mine && strings.HasSuffix(name, "/metadata.json") {
			keys = append(keys, in.Key)
		}
	}
	sort.Strings(keys) // zero-padded sequence numbers sort in order
	return keys, nil
}

// legacyRecord reads records written before records held one part each:
// those held every part so far.
type legacyRecord struct {
	batch.Checkpoint
	Parts []batch.Part `json:"parts"`
}

// latest rebuilds the newest checkpoint from the records, and takes the
// head: when a crash left records past the head, it moves the head to the
// newest, which fences whatever attempt wrote before.
func (s *bucketSink) latest(ctx context.Context) (batch.Checkpoint, error) {
	var cp batch.Checkpoint
	keys, err := s.records(ctx)
	if err != nil {
		return cp, err
	}
	for _, k := range keys {
		var rec legacyRecord
		if err := s.a.getJSON(ctx, k, &rec); err != nil {
			return cp, err
		}
		if rec.Parts != nil {
			cp.Parts = rec.Parts
		}
		cp.Apply(rec.Checkpoint)
	}
	return cp, nil
}

// claim takes the head for this attempt at cp: it reads the head's ETag
// and, if the head lags the newest record, moves it there.
func (s *bucketSink) claim(ctx context.Context, cp batch.Checkpoint) error {
	var h checkpointHead
	if _, err := s.head.Read(ctx, &h); err != nil {
		return err
	}
	if h.Seq < cp.Seq {
		return s.moveHead(ctx, cp.Seq)
	}
	return nil
}

// Merge streams the parts, in order, into output.jsonl and errors.jsonl
// (a shard's into its own pair, which MergeShards joins), checking each
// part's size and sha256 on the way: memory stays at one copy buffer
// whatever the size of the batch.
func (s *bucketSink) Merge(ctx context.Context, parts []batch.Part) (out, errs task.ObjectRef, err error) {
	outs := make([]sealed, len(parts))
	errParts := make([]sealed, len(parts))
	for i, p := range parts {
		outs[i], errParts[i] = sealed{p.Seq, p.Output}, sealed{p.Seq, p.Errors}
	}
	c, outName, errName := storage.Data, NameOutput, NameErrors
	if s.shard != "" {
		c, outName, errName = storage.Checkpoint, "parts/"+s.shard+NameOutput, "parts/"+s.shard+NameErrors
	}
	return s.mergeInto(ctx, c, outName, errName, outs, errParts)
}

// sealed is one object to join, with the size and sha256 it must have.
type sealed struct {
	seq int
	ref task.ObjectRef
}

func (s *bucketSink) mergeInto(ctx context.Context, c storage.Category, outName, errName string, outs, errParts []sealed) (out, errs task.ObjectRef, err error) {
	outKey, err := s.key(c, outName)
	if err != nil {
		return
	}
	errKey, err := s.key(c, errName)
	if err != nil {
		return
	}
	if out, err = s.concat(ctx, outs, outKey, c); err != nil {
		return
	}
	errs, err = s.concat(ctx, errParts, errKey, c)
	return
}

func (s *bucketSink) concat(ctx context.Context, parts []sealed, key string, c storage.Category) (task.ObjectRef, error) {
	var size int64
	for _, p := range parts {
		size += p.ref.Size
	}
	pr, pw := io.Pipe()
	go func() {
		for _, p := range parts {
			if p.ref.Size == 0 {
				continue
			}
			if err := s.copyVerified(ctx, pw, p); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.Close()
	}()
	// Streamed: the parts are read from the bucket as they are sent, so
	// no 5 MiB upload part is held in memory, whatever the batch's size.
	ref, err := s.a.putWith(ctx, key, c, pr, size, storage.PutOptions{ContentType: "application/jsonl", Stream: true})
	pr.CloseWithError(err) // unblocks the writer if put gave up early
	var corrupt *batch.CorruptPartError
	if errors.As(err, &corrupt) {
		return ref, corrupt
	}
	return ref, err
}

// copyVerified copies one part to w and checks it is what its record
// says: the exact size and sha256. Its last bytes are held back until
// they are checked, so a corrupt part never completes the upload.
func (s *bucketSink) copyVerified(ctx context.Context, w io.Writer, p sealed) error {
	rc, _, err := s.a.Store.Get(ctx, p.ref.Key)
	if errors.Is(err, task.ErrNotFound) {
		return &batch.CorruptPartError{Seq: p.seq, Key: p.ref.Key, Why: "missing"}
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	tee := io.TeeReader(io.LimitReader(rc, p.ref.Size), h)
	n, err := io.CopyN(w, tee, p.ref.Size-1)
	if err != nil && err != io.EOF {
		return err
	}
	last := make([]byte, 1)
	m, _ := io.ReadFull(tee, last)
	n += int64(m)
	extra, _ := io.Copy(io.Discard, io.LimitReader(rc, 1))
	switch sum := hex.EncodeToString(h.Sum(nil)); {
	case n != p.ref.Size || extra > 0:
		return &batch.CorruptPartError{Seq: p.seq, Key: p.ref.Key, Why: fmt.Sprintf("its size is not the %d bytes recorded", p.ref.Size)}
	case p.ref.SHA256 != "" && sum != p.ref.SHA256:
		return &batch.CorruptPartError{Seq: p.seq, Key: p.ref.Key, Why: "its sha256 is not the one recorded"}
	}
	_, err = w.Write(last)
	return err
}
