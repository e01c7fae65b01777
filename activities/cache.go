package activities

import (
	"context"
	"encoding/json"
	"io"

	"go.temporal.io/sdk/activity"

	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// NodeCache holds the activity that brings a mirrored model into a node's
// cache. It runs on the node's own queue: the cache is that node's disk.
type NodeCache struct {
	Cache *model.Cache
}

// EnsureModelInput names a mirrored model revision.
type EnsureModelInput struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
}

// EnsureModel makes the node hold a verified copy of the model revision
// (see model.Cache.Ensure).
func (n *NodeCache) EnsureModel(ctx context.Context, in EnsureModelInput) (model.Ensured, error) {
	res, err := n.Cache.Ensure(ctx, in.Name, in.Revision, func(done int64) { activity.RecordHeartbeat(ctx, done) })
	return res, asApplicationError(err)
}

// StoreSource reads mirrored models from the bucket, for a node's cache.
type StoreSource struct{ Store storage.Store }

// Meta reads models/<name>/<revision>/cache.meta.
func (s StoreSource) Meta(ctx context.Context, name, revision string) (task.CacheMeta, error) {
	var m task.CacheMeta
	r, _, err := s.Store.Get(ctx, task.ModelPrefix(name, revision)+task.CacheMetaName)
	if err != nil {
		return m, err
	}
	defer r.Close()
	err = json.NewDecoder(r).Decode(&m)
	return m, err
}

// Open streams one mirrored file.
func (s StoreSource) Open(ctx context.Context, name, revision, file string) (io.ReadCloser, error) {
	r, _, err := s.Store.Get(ctx, task.ModelPrefix(name, revision)+file)
	return r, err
}
