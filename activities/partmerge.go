package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Merge streams the parts, in order, into output.jsonl and errors.jsonl
// (a piece's into its own pair, which MergePieces joins), checking each
// part's size and sha256 on the way: memory stays at one copy buffer
// whatever the size of the batch.
func (s *bucketSink) Merge(ctx context.Context, parts []batch.Part) (out, errs task.ObjectRef, err error) {
	defer func() { err = outage(err) }()
	outs := make([]sealed, len(parts))
	errParts := make([]sealed, len(parts))
	for i, p := range parts {
		outs[i], errParts[i] = sealed{p.Seq, p.Output}, sealed{p.Seq, p.Errors}
	}
	c, outName, errName := s.finalFiles()
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
	// Neither file reads what the other writes.
	err = sideBySide(func() (err error) {
		out, err = s.concat(ctx, outs, outKey, c)
		return err
	}, func() (err error) {
		errs, err = s.concat(ctx, errParts, errKey, c)
		return err
	})
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
