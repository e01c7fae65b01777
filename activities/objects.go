package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The names of a task's objects under its key prefix. They are fixed, so
// an activity that runs again writes the same keys.
const (
	NameInput    = "input.jsonl"
	NameOutput   = "output.jsonl"
	NameErrors   = "errors.jsonl"
	NameReport   = "report.json"
	NameManifest = "manifest.json"
)

// taskObject is where one object of a task lives.
type taskObject struct {
	category storage.Category
	tenant   string
	taskID   string
	name     string
}

func (o taskObject) key() (string, error) {
	return storage.Key(o.category, o.tenant, o.taskID, o.name)
}

// putJSON writes v as indented JSON at key, unconditionally: for documents
// whose content is a function of the task (reports, checkpoint records).
func (a *Activities) putJSON(ctx context.Context, key string, c storage.Category, v any) (task.ObjectRef, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return task.ObjectRef{}, err
	}
	return a.put(ctx, key, c, bytes.NewReader(b), int64(len(b)), "application/json")
}

// put writes r at key and returns its reference with the sha256 of what
// was written.
func (a *Activities) put(ctx context.Context, key string, c storage.Category, r io.Reader, size int64, contentType string) (task.ObjectRef, error) {
	return a.putWith(ctx, key, c, r, size, storage.PutOptions{ContentType: contentType})
}

func (a *Activities) putWith(ctx context.Context, key string, c storage.Category, r io.Reader, size int64, o storage.PutOptions) (task.ObjectRef, error) {
	info, err := a.Store.Put(ctx, key, r, size, o)
	if err != nil {
		return task.ObjectRef{}, fmt.Errorf("writing %s: %w", key, err)
	}
	return task.ObjectRef{Bucket: a.Store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256, Category: string(c)}, nil
}

// getJSON reads the JSON document at key into v.
func (a *Activities) getJSON(ctx context.Context, key string, v any) error {
	rc, _, err := a.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, 16<<20)).Decode(v); err != nil {
		return fmt.Errorf("reading %s: %w", key, err)
	}
	return nil
}
