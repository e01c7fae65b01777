package model

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Source is where a node's cache fetches mirrored models from: the bucket,
// in the worker.
type Source interface {
	// Meta is a mirrored revision's cache.meta.
	Meta(ctx context.Context, name, revision string) (task.CacheMeta, error)
	// Open streams one file of it.
	Open(ctx context.Context, name, revision, file string) (io.ReadCloser, error)
}

// Cache is a node's folder of models: <dir>/<name>/<revision>/<file>,
// with a cache.meta beside each revision's files. Every file is written
// to a temporary file and renamed into place once its sha256 checks, so a
// crash never leaves a half file under a real name.
type Cache struct {
	Dir string
	// Budget bounds the bytes of all cached models; past it the least
	// recently used ones go. 0 is no bound.
	Budget int64
	Source Source
	// Now is the clock of LastUsed; nil is time.Now.
	Now func() time.Time

	mu sync.Mutex // one Ensure at a time: eviction must see a settled folder
}

// Ensured is what Ensure did.
type Ensured struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
	Dir      string `json:"dir"`
	Bytes    int64  `json:"bytes"`
	// Fetched files were missing or corrupted and came from the source.
	Fetched []string `json:"fetched,omitempty"`
	// Corrupted files were in the cache but did not hash to their sha256.
	Corrupted []string `json:"corrupted,omitempty"`
	// Evicted are the revisions removed to stay under the budget, as
	// name@revision.
	Evicted []string `json:"evicted,omitempty"`
}

// Ensure makes the node hold a verified copy of the model revision: files
// that are missing or whose sha256 does not match come from the source
// again; then the least recently used other models go until the cache is
// under its budget.
func (c *Cache) Ensure(ctx context.Context, name, revision string, progress func(int64)) (Ensured, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := checkCached(name, revision); err != nil {
		return Ensured{}, err
	}
	meta, err := c.Source.Meta(ctx, name, revision)
	if err != nil {
		return Ensured{}, err
	}
	dir, err := c.revisionDir(name, revision)
	if err != nil {
		return Ensured{}, err
	}
	res := Ensured{Name: name, Revision: revision, Dir: dir, Bytes: meta.Size()}
	if c.Budget > 0 && meta.Size() > c.Budget {
		return res, task.Errorf(task.QuotaExceeded, "model %s@%s is %d bytes, over this node's cache budget of %d", name, revision, meta.Size(), c.Budget)
	}
	var done int64
	for _, f := range meta.Files {
		if err := task.CheckModelFileName(f.Name); err != nil {
			return res, err
		}
		path := filepath.Join(dir, filepath.FromSlash(f.Name))
		switch sum, err := fileSHA256(path); {
		case err == nil && sum == f.SHA256:
			done += f.Size
			continue
		case err == nil:
			res.Corrupted = append(res.Corrupted, f.Name)
		case !errors.Is(err, fs.ErrNotExist):
			return res, err
		}
		if err := c.fetch(ctx, name, revision, f, path); err != nil {
			return res, err
		}
		res.Fetched = append(res.Fetched, f.Name)
		done += f.Size
		if progress != nil {
			progress(done)
		}
	}
	meta.LastUsed = c.now()
	if err := writeFileAtomic(filepath.Join(dir, task.CacheMetaName), meta); err != nil {
		return res, err
	}
	res.Evicted, err = c.evict(name, revision)
	return res, err
}

func (c *Cache) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

// fetch brings one file into a temporary file beside its place, checks
// its sha256 and renames it into place.
func (c *Cache) fetch(ctx context.Context, name, revision string, f task.ModelFile, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	r, err := c.Source.Open(ctx, name, revision, f.Name)
	if err != nil {
		return err
	}
	defer r.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	// One byte past the size is enough to tell a longer file.
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, f.Size+1))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("model: caching %s: %w", f.Name, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != f.Size || sum != f.SHA256 {
		return fmt.Errorf("%w: %s from the bucket is %d bytes with sha256 %s, cache.meta says %d and %s", ErrChecksum, f.Name, n, sum, f.Size, f.SHA256)
	}
	return os.Rename(tmp.Name(), path)
}

// Cached lists the revisions in the cache, most recently used first.
// Name and revision come from the folder a record sits in, never from the
// record's own fields, and a folder whose names are not a model's is
// skipped: eviction removes what Cached lists, so a record naming
// another path must not steer it.
func (c *Cache) Cached() ([]task.CacheMeta, error) {
	metas, err := filepath.Glob(filepath.Join(c.Dir, "*", "*", task.CacheMetaName))
	if err != nil {
		return nil, err
	}
	var out []task.CacheMeta
	for _, p := range metas {
		rev := filepath.Dir(p)
		name := filepath.Base(filepath.Dir(rev))
		if checkCached(name, filepath.Base(rev)) != nil {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var m task.CacheMeta
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		m.Name, m.Revision = name, filepath.Base(rev)
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// evict removes the least recently used revisions, never the one just
// ensured, until the cache is under its budget.
func (c *Cache) evict(keepName, keepRevision string) ([]string, error) {
	if c.Budget <= 0 {
		return nil, nil
	}
	cached, err := c.Cached()
	if err != nil {
		return nil, err
	}
	var total int64
	for _, m := range cached {
		total += m.Size()
	}
	var evicted []string
	for i := len(cached) - 1; i >= 0 && total > c.Budget; i-- {
		m := cached[i]
		if m.Name == keepName && m.Revision == keepRevision {
			continue
		}
		dir, err := c.revisionDir(m.Name, m.Revision)
		if err != nil {
			return evicted, err
		}
		if err := os.RemoveAll(dir); err != nil {
			return evicted, err
		}
		total -= m.Size()
		evicted = append(evicted, m.Name+"@"+m.Revision)
	}
	return evicted, nil
}

// revisionDir is the folder of a cached revision, checked to be a
// model's folder directly under the cache's.
func (c *Cache) revisionDir(name, revision string) (string, error) {
	if err := checkCached(name, revision); err != nil {
		return "", err
	}
	dir := filepath.Join(c.Dir, name, revision)
	if rel, err := filepath.Rel(c.Dir, dir); err != nil || rel != filepath.Join(name, revision) {
		return "", task.Errorf(task.InvalidInput, "model: %s@%s is not a folder of the cache", name, revision)
	}
	return dir, nil
}

// checkCached checks the two kinds of folder a cache holds, as the
// bucket does: a mirrored model's <name>/<revision>, and a fine-tuned
// model's <tenant>/<fine-tuned name> (task.FineTunedPrefix), whose name
// must be the tenant's own.
func checkCached(name, revision string) error {
	if !task.IsFineTuned(revision) {
		return (task.MirrorInput{Name: name, Revision: revision, Repo: "x"}).Validate()
	}
	ft, err := task.ParseFineTunedName(revision)
	if err != nil {
		return err
	}
	if ft.Tenant != name {
		return task.Errorf(task.InvalidInput, "model: %s is tenant %s's fine-tuned model, not %s's", revision, ft.Tenant, name)
	}
	// The tenant stands where a model's name does: the same rule keeps it one folder.
	return (task.MirrorInput{Name: name, Revision: "x", Repo: "x"}).Validate()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	// CreateTemp takes only a name no file has, so the record never
	// overwrites a cached file, and a crash leaves no half record.
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
