package activities

import (
	"bytes"
	"cmp"
	"context"
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
// Fencing: the head (checkpoints/head.json) names the attempt that holds
// it and moves only by If-Match. An attempt claims it before it reads
// anything, and refuses to when a newer attempt holds it; every record is
// preceded by a move of the head, so an attempt that lost the head writes
// no record. Records (checkpoints/<seq>/metadata.json) are created only
// once (If-None-Match) and name their writer; parts go to keys of the
// attempt's own. An attempt that finds the head or its record taken, or
// whose heartbeat the server refused (live), stops with batch.ErrFenced:
// what it wrote is referenced by no record.
type bucketSink struct {
	a      *Activities
	tenant string
	taskID string
	// piece prefixes the names of a piece's parts and records ("s003-",
	// the s kept so that checkpoints already in the bucket resume); empty
	// for a batch run whole.
	piece string
	// me is this attempt; its ID names its part keys.
	me batch.Attempt
	// live, if set, says whether this attempt may still commit: an error
	// matching batch.ErrFenced once the server has given it up.
	live func() error
	// head is the ETag of checkpoints/head.json as this attempt last
	// wrote or read it; empty when there is none yet.
	head string
	// attempts is how many attempts have run the piece, this one
	// included (hand-backs too), as the head counts them.
	attempts int
	// fencedBy says what fenced this attempt: "a newer attempt", "an
	// older attempt" (a live attempt fenced by a stale one: what fencing
	// exists to prevent), the server or its own heartbeat lapse; "" while
	// it is not fenced.
	fencedBy string
}

func newSink(a *Activities, tenant, taskID string, piece *Piece) *bucketSink {
	s := &bucketSink{a: a, tenant: tenant, taskID: taskID}
	if piece != nil {
		s.piece = fmt.Sprintf("s%03d-", piece.Index)
	}
	return s
}

func (s *bucketSink) key(c storage.Category, name string) (string, error) {
	return taskObject{c, s.tenant, s.taskID, name}.key()
}

// putPart writes one half of a part.
func (s *bucketSink) putPart(ctx context.Context, half string, seq int, b []byte) (task.ObjectRef, error) {
	key, err := s.key(storage.Checkpoint, fmt.Sprintf("parts/%s%s-%06d-%s.jsonl", s.piece, half, seq, s.me.ID))
	if err != nil {
		return task.ObjectRef{}, err
	}
	return s.a.put(ctx, key, storage.Checkpoint, bytes.NewReader(b), int64(len(b)), "application/jsonl")
}

// SealPart writes both halves of a part under this attempt's keys.
func (s *bucketSink) SealPart(ctx context.Context, p batch.Part, out, errs []byte) (batch.Part, error) {
	if err := s.check(); err != nil {
		return p, err
	}
	err := sideBySide(func() (err error) {
		p.Output, err = s.putPart(ctx, "output", p.Seq, out)
		return err
	}, func() (err error) {
		p.Errors, err = s.putPart(ctx, "errors", p.Seq, errs)
		return err
	})
	return p, outage(err)
}

// sideBySide runs two writes that do not depend on each other at once (a
// part's halves, the two final files): one round trip on the path of
// every task, not two. It returns the first one's error, else the
// second's.
func sideBySide(first, second func() error) error {
	var secondErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		secondErr = second()
	}()
	err := first()
	<-done
	return cmp.Or(err, secondErr)
}

// Finish writes a batch answered within one part straight to its final
// files and records cp, Done, with them. The head moves first, as before
// every record, so an attempt that has lost it writes neither file.
func (s *bucketSink) Finish(ctx context.Context, cp batch.Checkpoint, out, errs []byte) (batch.Checkpoint, error) {
	c, outName, errName := s.finalFiles()
	put := func(ref *task.ObjectRef, name string, b []byte) func() error {
		return func() error {
			key, err := s.key(c, name)
			if err == nil {
				*ref, err = s.a.put(ctx, key, c, bytes.NewReader(b), int64(len(b)), "application/jsonl")
			}
			return err
		}
	}
	err := s.record(ctx, &cp, func() error {
		return sideBySide(put(&cp.Output, outName, out), put(&cp.Errors, errName, errs))
	})
	return cp, err
}

// finalFiles are the category and names of the batch's final output and
// errors files: the task's own, or for a piece the pair MergePieces joins.
func (s *bucketSink) finalFiles() (c storage.Category, out, errs string) {
	if s.piece != "" {
		return storage.Checkpoint, "parts/" + s.piece + NameOutput, "parts/" + s.piece + NameErrors
	}
	return storage.Data, NameOutput, NameErrors
}

// check is live's verdict: nil while this attempt may commit.
func (s *bucketSink) check() error {
	if s.live == nil {
		return nil
	}
	if err := s.live(); err != nil {
		s.fencedBy = "the server (heartbeat refused)"
		if errors.Is(err, errLapsed) {
			s.fencedBy = "its heartbeat lapse (stalled past the timeout)"
		}
		return err
	}
	return nil
}

// outage marks an error of a bucket out of reach, which the engine holds
// through.
func outage(err error) error {
	if storage.Unreachable(err) {
		return fmt.Errorf("%w: %w", batch.ErrStoreUnavailable, err)
	}
	return err
}

const checkpointsDir = "checkpoints/"

func (s *bucketSink) recordKey(seq int) (string, error) {
	return s.key(storage.Checkpoint, fmt.Sprintf("%s%s%06d/metadata.json", checkpointsDir, s.piece, seq))
}

func (s *bucketSink) headKey() (string, error) {
	return s.key(storage.Checkpoint, checkpointsDir+s.piece+"head.json")
}

// checkpointHead is what checkpoints/head.json holds.
type checkpointHead struct {
	// Seq is the newest record's sequence number, or the one being
	// written.
	Seq int `json:"seq"`
	// Attempt holds the head: no older attempt may commit.
	Attempt batch.Attempt `json:"attempt,omitzero"`
	// Attempts counts the attempts that have claimed the head.
	Attempts int `json:"attempts,omitempty"`
}

// SaveCheckpoint moves the head to cp.Seq, then creates record cp.Seq.
// The head moves first because its If-Match is the one write that tells
// the attempt holding the head from any other: an attempt that lost it
// stops before it writes a record. Each record holds one part, so a seal
// writes the same few bytes however many parts came before.
func (s *bucketSink) SaveCheckpoint(ctx context.Context, cp batch.Checkpoint) error {
	return s.record(ctx, &cp, nil)
}

// record moves the head to cp.Seq, runs then (if set: the writes the
// record will name), and creates record cp.Seq.
func (s *bucketSink) record(ctx context.Context, cp *batch.Checkpoint, then func() error) error {
	if err := s.check(); err != nil {
		return err
	}
	cp.Attempt = s.me
	key, err := s.recordKey(cp.Seq)
	if err != nil {
		return err
	}
	if err := s.moveHead(ctx, cp.Seq); err != nil {
		return err
	}
	// A process frozen right after the head moved may wake up with a
	// newer attempt holding the head: it must not write on.
	if err := s.check(); err != nil {
		return err
	}
	if then != nil {
		if err := then(); err != nil {
			return outage(err)
		}
		if err := s.check(); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	if err := storage.CreateRecord(ctx, s.a.Store, key, b); err != nil {
		if !errors.Is(err, task.ErrConflict) {
			return outage(err)
		}
		var rec batch.Checkpoint
		if s.a.getJSON(ctx, key, &rec) == nil {
			if rec.Attempt.ID == s.me.ID {
				// This attempt's own write, whose answer was lost
				// (the bucket went away): a retry finds it done.
				return nil
			}
			s.fencedBy = s.whoFenced(rec.Attempt)
		}
		return s.fenced(err, "checkpoint %d was recorded by another attempt", cp.Seq)
	}
	return nil
}

// whoFenced names the attempt that holds what this one wanted.
func (s *bucketSink) whoFenced(other batch.Attempt) string {
	if other.Before(s.me) {
		return "an older attempt"
	}
	return "a newer attempt"
}

// moveHead writes the head, naming this attempt, over the version this
// attempt last saw.
func (s *bucketSink) moveHead(ctx context.Context, seq int) error {
	key, err := s.headKey()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(checkpointHead{Seq: seq, Attempt: s.me, Attempts: s.attempts})
	opts := storage.PutOptions{ContentType: "application/json"}
	var info storage.Info
	if s.head == "" {
		info, err = s.a.Store.Create(ctx, key, bytes.NewReader(b), int64(len(b)), opts)
	} else {
		info, err = s.a.Store.Replace(ctx, key, s.head, bytes.NewReader(b), int64(len(b)), opts)
	}
	if errors.Is(err, task.ErrConflict) {
		// A write whose answer was lost (the bucket went away) may have
		// landed: then the head is this very write.
		h, etag, rerr := s.readHead(ctx)
		if rerr == nil && h.Attempt.ID == s.me.ID && h.Seq == seq {
			s.head = etag
			return nil
		}
		if rerr == nil {
			s.fencedBy = s.whoFenced(h.Attempt)
		}
		return s.fenced(err, "the checkpoint head moved past %d under another attempt", seq-1)
	}
	if err != nil {
		return outage(err)
	}
	s.head = info.ETag
	return nil
}

// readHead reads the head and its ETag; a missing head is the zero head
// and an empty ETag.
func (s *bucketSink) readHead(ctx context.Context) (checkpointHead, string, error) {
	var h checkpointHead
	key, err := s.headKey()
	if err != nil {
		return h, "", err
	}
	rc, info, err := s.a.Store.Get(ctx, key)
	if errors.Is(err, task.ErrNotFound) {
		return h, "", nil
	}
	if err != nil {
		return h, "", outage(err)
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, 1<<10)).Decode(&h); err != nil {
		return h, "", outage(fmt.Errorf("reading %s: %w", key, err))
	}
	return h, info.ETag, nil
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
		// A whole batch's records start with a digit, a piece's with its
		// prefix; each sink sees only its own.
		mine := strings.HasPrefix(name, s.piece) && (s.piece != "" || name != "" && name[0] >= '0' && name[0] <= '9')
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

// claimTries bounds the rounds of claim lost to attempts claiming at the
// same moment.
const claimTries = 5

// claim takes the head for this attempt, then rebuilds the newest
// checkpoint from the records. It refuses, with batch.ErrFenced and
// before reading any record, when a newer attempt holds the head: a stale
// attempt that wakes up never resumes from the live attempt's records.
// Writing the head over the ETag it read fences every older attempt,
// which must move the head before it may record; on a piece with no head
// yet, the create of the first one does.
func (s *bucketSink) claim(ctx context.Context) (batch.Checkpoint, error) {
	for try := 1; ; try++ {
		h, etag, err := s.readHead(ctx)
		if err != nil {
			return batch.Checkpoint{}, err
		}
		// The head may be read before the server has answered the first
		// heartbeat; nothing is taken before it has.
		if err := s.check(); err != nil {
			return batch.Checkpoint{}, err
		}
		if !h.Attempt.IsZero() && s.me.Before(h.Attempt) {
			s.fencedBy = "a newer attempt"
			return batch.Checkpoint{}, fmt.Errorf("%w: %s holds the checkpoint head; this is %s", batch.ErrFenced, h.Attempt, s.me)
		}
		s.head, s.attempts = etag, max(h.Attempts+1, int(s.me.Number))
		if etag == "" {
			// A fresh piece: the first record's head is a create, which
			// only one attempt wins; a write here would be one more PUT on
			// the path of every one-prompt task.
			break
		}
		err = s.moveHead(ctx, h.Seq)
		if err == nil {
			break
		}
		if !errors.Is(err, batch.ErrFenced) || try == claimTries {
			return batch.Checkpoint{}, err
		}
		s.fencedBy = ""
	}
	return s.latest(ctx)
}
