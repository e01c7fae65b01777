// Package audittrail keeps the part of a task's audit trail that its
// workflow's runs hand over at continue-as-new in the bucket, so that what
// crosses continue-as-new is a reference and a count (task.EarlierAudit),
// however long the task lives; and it puts that part back in front of a
// status for the readers that show the whole trail.
package audittrail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// maxBytes bounds what Read takes of one trail object.
const maxBytes = 64 << 20

// Name is the object that holds the transitions of a task's runs up to
// and including run (counted from 0): each continue-as-new writes the
// whole earlier trail again under the next name, so a reader reads one
// object and a write retried writes the same bytes to the same key.
func Name(run int) string { return fmt.Sprintf("audit-%d.json", run) }

// Write keeps earlier (the trail already in the bucket, nil for none) and
// then in the object of run, and returns its reference.
func Write(ctx context.Context, s storage.Store, tenant, taskID string, run int, earlier *task.EarlierAudit, then []task.Transition) (task.EarlierAudit, error) {
	key, err := storage.Key(storage.Data, tenant, taskID, Name(run))
	if err != nil {
		return task.EarlierAudit{}, err
	}
	all, err := Read(ctx, s, earlier)
	if err != nil {
		return task.EarlierAudit{}, err
	}
	all = append(all, then...)
	b, err := json.Marshal(all)
	if err != nil {
		return task.EarlierAudit{}, err
	}
	info, err := s.Put(ctx, key, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	if err != nil {
		return task.EarlierAudit{}, fmt.Errorf("audit trail: writing %s: %w", key, err)
	}
	ref := task.ObjectRef{Bucket: s.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256, Category: string(storage.Data)}
	return task.EarlierAudit{Ref: ref, Transitions: len(all)}, nil
}

// Read returns the transitions e points at, checked against its sha256
// and count; nil for nil.
func Read(ctx context.Context, s storage.Store, e *task.EarlierAudit) ([]task.Transition, error) {
	if e == nil || e.Ref.Key == "" {
		return nil, nil
	}
	rc, _, err := s.Get(ctx, e.Ref.Key)
	if err != nil {
		return nil, fmt.Errorf("audit trail: reading %s: %w", e.Ref.Key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxBytes))
	if err != nil {
		return nil, fmt.Errorf("audit trail: reading %s: %w", e.Ref.Key, err)
	}
	if sum := sha256.Sum256(b); e.Ref.SHA256 != "" && hex.EncodeToString(sum[:]) != e.Ref.SHA256 {
		return nil, fmt.Errorf("audit trail: %s is not the object the task wrote (sha256 differs)", e.Ref.Key)
	}
	var trs []task.Transition
	if err := json.Unmarshal(b, &trs); err != nil {
		return nil, fmt.Errorf("audit trail: reading %s: %w", e.Ref.Key, err)
	}
	if len(trs) != e.Transitions {
		return nil, fmt.Errorf("audit trail: %s holds %d transitions, the task counts %d", e.Ref.Key, len(trs), e.Transitions)
	}
	return trs, nil
}

// Whole puts the earlier trail st points at in front of its Audit and
// clears EarlierAudit. On an error st is left as it was.
func Whole(ctx context.Context, s storage.Store, st *task.Status) error {
	if st.EarlierAudit == nil {
		return nil
	}
	if s == nil {
		return fmt.Errorf("audit trail: no bucket to read %s from", st.EarlierAudit.Ref.Key)
	}
	earlier, err := Read(ctx, s, st.EarlierAudit)
	if err != nil {
		return err
	}
	st.Audit = append(earlier, st.Audit...)
	st.EarlierAudit = nil
	return nil
}
