package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The fencing primitives of checkpoints: a record is created once and never
// changed, and a head names the newest and moves only from the version its
// holder last read or wrote. Two attempts of the same work (a worker paused
// past its heartbeat timeout that wakes up beside its replacement) cannot
// both move the head from one version: the one that loses gets ErrConflict
// and stops. The batch engine's sink creates its records with
// CreateRecord; the trainer's checkpoints use both.

// CreateRecord writes b at key only if no object has it (If-None-Match).
// A key that already holds exactly b is success: a create whose response
// was lost and that the client retried finds its own record. Any other
// content is an error matching ErrConflict.
func CreateRecord(ctx context.Context, s Store, key string, b []byte) error {
	_, err := s.Create(ctx, key, bytes.NewReader(b), int64(len(b)), PutOptions{ContentType: "application/json"})
	if err == nil || !errors.Is(err, ErrConflict) {
		return err
	}
	info, serr := s.Stat(ctx, key)
	sum := sha256.Sum256(b)
	if serr == nil && info.SHA256 == hex.EncodeToString(sum[:]) {
		return nil
	}
	return err
}

// Head is a small JSON object that names the newest checkpoint and moves
// only by If-Match on the ETag its holder last read or wrote. The zero
// ETag means the holder has seen none: the first Move creates it.
type Head struct {
	Store Store
	Key   string
	etag  string
}

// maxHeadBytes bounds what Read decodes.
const maxHeadBytes = 1 << 20

// Read decodes the head into v and remembers its ETag, so the next Move
// succeeds only if nobody moved it since. It reports false, leaving v
// alone, when there is no head yet.
func (h *Head) Read(ctx context.Context, v any) (bool, error) {
	rc, info, err := h.Store.Get(ctx, h.Key)
	if errors.Is(err, ErrNotFound) {
		h.etag = ""
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, maxHeadBytes)).Decode(v); err != nil {
		return false, fmt.Errorf("storage: reading %s: %w", h.Key, err)
	}
	h.etag = info.ETag
	return true, nil
}

// Move writes v as the head: Create when this holder has seen none,
// Replace on the ETag it last saw otherwise. Another holder's move in
// between is an error matching ErrConflict, and nothing is written.
func (h *Head) Move(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	opts := PutOptions{ContentType: "application/json"}
	var info Info
	if h.etag == "" {
		info, err = h.Store.Create(ctx, h.Key, bytes.NewReader(b), int64(len(b)), opts)
	} else {
		info, err = h.Store.Replace(ctx, h.Key, h.etag, bytes.NewReader(b), int64(len(b)), opts)
	}
	if err != nil {
		return err
	}
	h.etag = info.ETag
	return nil
}

// Held reports whether the head is still at the version this holder last
// read or wrote: false once another holder has moved it. A holder whose
// write failed asks, to tell a takeover from a fault of its own.
func (h *Head) Held(ctx context.Context) (bool, error) {
	info, err := h.Store.Stat(ctx, h.Key)
	if errors.Is(err, ErrNotFound) {
		return h.etag == "", nil
	}
	if err != nil {
		return false, err
	}
	return info.ETag == h.etag, nil
}
