package metrics

import (
	"context"
	"io"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// Store counts the bytes written to the bucket by category, and times the
// writes of checkpoints, whose lag is what an operator alerts on.
type Store struct {
	storage.Store
	App *App
}

// Create is Store.Create, measured.
func (s Store) Create(ctx context.Context, key string, r io.Reader, size int64, o storage.PutOptions) (storage.Info, error) {
	start := time.Now()
	info, err := s.Store.Create(ctx, key, r, size, o)
	return info, s.measure(key, start, info, err)
}

// Replace is Store.Replace, measured.
func (s Store) Replace(ctx context.Context, key, etag string, r io.Reader, size int64, o storage.PutOptions) (storage.Info, error) {
	start := time.Now()
	info, err := s.Store.Replace(ctx, key, etag, r, size, o)
	return info, s.measure(key, start, info, err)
}

// Put is Store.Put, measured.
func (s Store) Put(ctx context.Context, key string, r io.Reader, size int64, o storage.PutOptions) (storage.Info, error) {
	start := time.Now()
	info, err := s.Store.Put(ctx, key, r, size, o)
	return info, s.measure(key, start, info, err)
}

func (s Store) measure(key string, start time.Time, info storage.Info, err error) error {
	if s.App == nil || err != nil {
		return err
	}
	cat := storage.CategoryOf(key)
	if cat == "" {
		cat = "other"
	}
	s.App.BytesWritten.WithLabelValues(string(cat)).Add(float64(info.Size))
	if cat == storage.Checkpoint {
		s.App.CheckpointSecs.Observe(time.Since(start).Seconds())
		s.App.LastCheckpoint.SetToCurrentTime()
	}
	return nil
}
