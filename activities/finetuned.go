package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// PublishModelInput is a trained model to publish: the manifest Train
// returned, and the name the model gets.
type PublishModelInput struct {
	TaskID string `json:"task_id"`
	Tenant string `json:"tenant"`
	// Name is the fine-tuned model's name (task.FineTunedName).
	Name string `json:"name"`
	// Manifest is the final model's manifest under the task's checkpoint
	// prefix.
	Manifest task.ObjectRef `json:"manifest"`
}

// PublishModel copies a fine-tuned model from the task's checkpoint prefix
// to models/<tenant>/<name>/, checking the sha256 of every file against
// the manifest the trainer's upload verified, and writes the model's
// manifest (task.CacheMetaName, the record a node's cache fetches a model
// by) last, so a model without it is not whole; then its entry in the
// index the nodes serving its base read (ServedFineTuned). A retry writes
// the same objects again.
func (a *Activities) PublishModel(ctx context.Context, in PublishModelInput) (task.ObjectRef, error) {
	ref, err := a.publishModel(ctx, in)
	return ref, asApplicationError(err)
}

func (a *Activities) publishModel(ctx context.Context, in PublishModelInput) (task.ObjectRef, error) {
	want := "/" + in.Tenant + "/" + in.TaskID + "/training/"
	if in.Manifest.Bucket != "" && in.Manifest.Bucket != a.Store.Bucket() || !strings.Contains(in.Manifest.Key, want) {
		return task.ObjectRef{}, task.Errorf(task.PermissionDenied, "the model manifest %s is not under the task's own checkpoint prefix", in.Manifest.Key)
	}
	var m trainer.CheckpointManifest
	if err := a.getJSON(ctx, in.Manifest.Key, &m); err != nil {
		return task.ObjectRef{}, fmt.Errorf("reading the model's manifest: %w", err)
	}
	if !m.Final || len(m.Files) == 0 {
		return task.ObjectRef{}, task.Errorf(task.InvalidInput, "%s is not a final model's manifest", in.Manifest.Key)
	}
	prefix := task.FineTunedPrefix(in.Tenant, in.Name)
	meta := task.CacheMeta{Name: in.Name, Revision: in.TaskID, FetchedAt: time.Now().UTC()}
	for i, f := range m.Files {
		if err := task.CheckModelFileName(f.Name); err != nil {
			return task.ObjectRef{}, err
		}
		if err := a.copyVerified(ctx, f, prefix+f.Name); err != nil {
			return task.ObjectRef{}, err
		}
		meta.Files = append(meta.Files, task.ModelFile{Name: f.Name, Size: f.Size, SHA256: f.SHA256})
		activity.RecordHeartbeat(ctx, i+1)
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return task.ObjectRef{}, err
	}
	key := prefix + task.CacheMetaName
	info, err := a.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	if err != nil {
		return task.ObjectRef{}, fmt.Errorf("writing the model's manifest: %w", err)
	}
	sum := sha256.Sum256(b)
	ref := task.ObjectRef{Bucket: a.Store.Bucket(), Key: key, Size: info.Size, SHA256: hex.EncodeToString(sum[:]), Category: "model"}
	if err := a.indexFineTuned(ctx, in.Name, ref); err != nil {
		return task.ObjectRef{}, fmt.Errorf("listing the model for the nodes that serve its base: %w", err)
	}
	return ref, nil
}

// copyVerified streams one file of a model to key, and deletes the copy
// if its size or sha256 differs from the manifest's.
func (a *Activities) copyVerified(ctx context.Context, f storage.ManifestEntry, key string) error {
	rc, info, err := a.Store.Get(ctx, f.Key)
	if err != nil {
		return fmt.Errorf("reading %s of the model: %w", f.Name, err)
	}
	defer rc.Close()
	if info.Size != f.Size {
		return task.Errorf(task.InvalidInput, "%s of the model is %d bytes; its manifest says %d", f.Name, info.Size, f.Size)
	}
	h := sha256.New()
	if _, err := a.Store.Put(ctx, key, io.TeeReader(rc, h), f.Size, storage.PutOptions{ContentType: "application/octet-stream"}); err != nil {
		return fmt.Errorf("writing %s of the model: %w", f.Name, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != f.SHA256 {
		_ = a.Store.Delete(ctx, key)
		return task.Errorf(task.InvalidInput, "%s of the model has sha256 %s; its manifest says %s", f.Name, sum, f.SHA256)
	}
	return nil
}
