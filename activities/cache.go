package activities

import (
	"context"
	"encoding/json"
	"io"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// EnsureModelInput names a mirrored model revision.
type EnsureModelInput struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
}

// StoreSource reads mirrored models from the bucket, for a node's cache.
type StoreSource struct{ Store storage.Store }

// maxMetaBytes bounds a cache.meta read from the bucket.
const maxMetaBytes = 16 << 20

// Meta reads models/<name>/<revision>/cache.meta.
func (s StoreSource) Meta(ctx context.Context, name, revision string) (task.CacheMeta, error) {
	return s.read(ctx, task.ModelPrefix(name, revision)+task.CacheMetaName)
}

func (s StoreSource) read(ctx context.Context, key string) (task.CacheMeta, error) {
	var m task.CacheMeta
	r, _, err := s.Store.Get(ctx, key)
	if err != nil {
		return m, err
	}
	defer r.Close()
	err = json.NewDecoder(io.LimitReader(r, maxMetaBytes)).Decode(&m)
	return m, err
}

// Open streams one mirrored file.
func (s StoreSource) Open(ctx context.Context, name, revision, file string) (io.ReadCloser, error) {
	r, _, err := s.Store.Get(ctx, task.ModelPrefix(name, revision)+file)
	return r, err
}
