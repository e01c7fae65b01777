package trainer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// Download fetches the checkpoint rec names into dir, checking the
// manifest's sha256 and every file's size and sha256. A checkpoint that
// does not check out is a *CorruptCheckpointError.
func (c *Checkpoints) Download(ctx context.Context, rec Record, dir string) error {
	corrupt := func(format string, args ...any) error {
		return &CorruptCheckpointError{Step: rec.Step, Why: fmt.Sprintf(format, args...)}
	}
	if err := storage.CheckOwnKey(c.Tenant, c.TaskID, rec.Manifest.Key); err != nil {
		return err
	}
	b, err := readAll(ctx, c.Store, rec.Manifest.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return corrupt("its manifest is gone")
	}
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != rec.Manifest.SHA256 {
		return corrupt("its manifest's sha256 is not the one recorded")
	}
	var m CheckpointManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return corrupt("its manifest is not JSON: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range m.Files {
		if err := storage.CheckOwnKey(c.Tenant, c.TaskID, f.Key); err != nil {
			return err
		}
		if !filepath.IsLocal(filepath.FromSlash(f.Name)) {
			return corrupt("file name %q leaves the checkpoint folder", f.Name)
		}
		why, err := c.fetch(ctx, f, filepath.Join(dir, filepath.FromSlash(f.Name)))
		if err != nil {
			return err
		}
		if why != "" {
			return corrupt("%s %s", f.Name, why)
		}
	}
	return nil
}

// fetch writes one file of a checkpoint and says what is wrong with it, if
// anything.
func (c *Checkpoints) fetch(ctx context.Context, f storage.ManifestEntry, path string) (string, error) {
	rc, _, err := c.Store.Get(ctx, f.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return "is gone from the bucket", nil
	}
	if err != nil {
		return "", err
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	out, err := os.Create(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), rc)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("trainer: downloading %s: %w", f.Key, err)
	}
	switch {
	case n != f.Size:
		return fmt.Sprintf("has %d bytes, not the %d of its manifest", n, f.Size), nil
	case hex.EncodeToString(h.Sum(nil)) != f.SHA256:
		return "does not have the sha256 of its manifest", nil
	}
	return "", nil
}

func readAll(ctx context.Context, s storage.Store, key string) ([]byte, error) {
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 64<<20))
}

func getJSON(ctx context.Context, s storage.Store, key string, v any) error {
	b, err := readAll(ctx, s, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("trainer: reading %s: %w", key, err)
	}
	return nil
}
