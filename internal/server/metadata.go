package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A task's metadata (the submitter's key-value pairs, as OpenAI's batches
// carry) is an object in its data folder, written by the server before
// the task starts and shown with its status.
const metadataName = "metadata.json"

// putMetadata writes the metadata of a task about to start: after
// checkNewID, so a taken ID never gets any, and unconditionally, so that
// a retry of a submit that failed before its task started may write it
// again.
func (s *Server) putMetadata(ctx context.Context, tenant, id string, md map[string]string) error {
	if len(md) > 16 {
		return task.Errorf(task.InvalidInput, "metadata has %d keys; at most 16", len(md))
	}
	key, err := storage.Key(storage.Data, tenant, id, metadataName)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(md)
	_, err = s.Tasks.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	return err
}

func (s *Server) deleteMetadata(ctx context.Context, tenant, id string) {
	if key, err := storage.Key(storage.Data, tenant, id, metadataName); err == nil {
		if err := s.Tasks.Store.Delete(ctx, key); err != nil {
			s.Log.WithError(err).WithField("task", id).Warn("the metadata of a task that did not start is left behind")
		}
	}
}

func (s *Server) metadata(ctx context.Context, tenant, id string) map[string]string {
	key, err := storage.Key(storage.Data, tenant, id, metadataName)
	if err != nil {
		return nil
	}
	rc, _, err := s.Tasks.Store.Get(ctx, key)
	if err != nil {
		return nil
	}
	defer rc.Close()
	var md map[string]string
	_ = json.NewDecoder(io.LimitReader(rc, 64<<10)).Decode(&md)
	return md
}
