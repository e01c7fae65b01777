package model

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// memSource is an in-memory bucket of mirrored models, counting reads.
type memSource struct {
	files map[string][]byte // name@revision/file
	reads int
}

func (s *memSource) add(name, rev, file string, b []byte) {
	s.files[name+"@"+rev+"/"+file] = b
}

func (s *memSource) Meta(_ context.Context, name, rev string) (task.CacheMeta, error) {
	m := task.CacheMeta{Name: name, Revision: rev}
	for k, b := range s.files {
		if f, ok := bytes.CutPrefix([]byte(k), []byte(name+"@"+rev+"/")); ok {
			sum := sha256.Sum256(b)
			m.Files = append(m.Files, task.ModelFile{Name: string(f), Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
		}
	}
	if len(m.Files) == 0 {
		return m, task.Errorf(task.NotFound, "no model %s@%s", name, rev)
	}
	slices.SortFunc(m.Files, func(a, b task.ModelFile) int { return bytes.Compare([]byte(a.Name), []byte(b.Name)) })
	return m, nil
}

func (s *memSource) Open(_ context.Context, name, rev, file string) (io.ReadCloser, error) {
	s.reads++
	return io.NopCloser(bytes.NewReader(s.files[name+"@"+rev+"/"+file])), nil
}

func TestCacheDetectsCorruptionAndEvictsLeastRecentlyUsed(t *testing.T) {
	src := &memSource{files: map[string][]byte{}}
	src.add("a", "r1", "w.bin", bytes.Repeat([]byte("a"), 400))
	src.add("a", "r1", "sub/config.json", []byte("{}"))
	src.add("b", "r1", "w.bin", bytes.Repeat([]byte("b"), 400))
	src.add("c", "r1", "w.bin", bytes.Repeat([]byte("c"), 400))
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &Cache{Dir: t.TempDir(), Budget: 900, Source: src, Now: func() time.Time { clock = clock.Add(time.Minute); return clock }}
	ctx := context.Background()

	e, err := c.Ensure(ctx, "a", "r1", nil)
	if err != nil || len(e.Fetched) != 2 {
		t.Fatalf("first ensure: %+v %v", e, err)
	}
	if e, err = c.Ensure(ctx, "a", "r1", nil); err != nil || len(e.Fetched) != 0 || src.reads != 2 {
		t.Fatalf("second ensure fetched %v (reads %d), want nothing: %v", e.Fetched, src.reads, err)
	}
	// One flipped byte: detected by its sha256 and fetched again.
	path := filepath.Join(c.Dir, "a", "r1", "w.bin")
	b, _ := os.ReadFile(path)
	b[100] ^= 0xff
	os.WriteFile(path, b, 0o644)
	if e, err = c.Ensure(ctx, "a", "r1", nil); err != nil || !slices.Equal(e.Corrupted, []string{"w.bin"}) || !slices.Equal(e.Fetched, []string{"w.bin"}) {
		t.Fatalf("after corruption: %+v %v", e, err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, src.files["a@r1/w.bin"]) {
		t.Fatal("the corrupted file was not replaced by the good one")
	}

	if _, err := c.Ensure(ctx, "b", "r1", nil); err != nil {
		t.Fatal(err)
	}
	c.Ensure(ctx, "a", "r1", nil) // a is now more recently used than b
	e, err = c.Ensure(ctx, "c", "r1", nil)
	if err != nil || !slices.Equal(e.Evicted, []string{"b@r1"}) {
		t.Fatalf("ensuring c over the budget evicted %v (%v), want the least recently used b@r1", e.Evicted, err)
	}
	cached, _ := c.Cached()
	var names []string
	for _, m := range cached {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"c", "a"}) {
		t.Fatalf("cached %v, want [c a] (most recent first)", names)
	}
	leftovers, _ := filepath.Glob(filepath.Join(c.Dir, "*", "*", ".*tmp*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

// A record whose name and revision point out of the cache does not steer
// eviction: what goes is the folder the record sits in, and a folder
// whose names are not a model's is left alone.
func TestEvictionRemovesOnlyCacheFolders(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(root, "precious")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "cache")
	hostile := filepath.Join(dir, "x", "r1")
	if err := os.MkdirAll(hostile, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(hostile, task.CacheMetaName), []byte(`{"name":"..","revision":"precious","files":[{"name":"w","size":1000,"sha256":"00"}]}`), 0o644)
	odd := filepath.Join(dir, "UPPER", "r1")
	os.MkdirAll(odd, 0o755)
	os.WriteFile(filepath.Join(odd, task.CacheMetaName), []byte(`{"files":[{"name":"w","size":1000}]}`), 0o644)

	src := &memSource{files: map[string][]byte{}}
	src.add("a", "r1", "w.bin", bytes.Repeat([]byte("a"), 100))
	c := &Cache{Dir: dir, Budget: 500, Source: src}
	e, err := c.Ensure(context.Background(), "a", "r1", nil)
	if err != nil || !slices.Equal(e.Evicted, []string{"x@r1"}) {
		t.Fatalf("ensure: %+v %v; want x@r1 evicted", e, err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("eviction removed a folder outside the cache: %v", err)
	}
	if _, err := os.Stat(odd); err != nil {
		t.Fatalf("eviction removed a folder that is no model's: %v", err)
	}
}

// An upstream file named like the cache's record is refused before it
// could overwrite it.
func TestCacheMetaNameIsReserved(t *testing.T) {
	src := &memSource{files: map[string][]byte{}}
	src.add("a", "r1", task.CacheMetaName, []byte(`{"files":[]}`))
	c := &Cache{Dir: t.TempDir(), Source: src}
	if _, err := c.Ensure(context.Background(), "a", "r1", nil); task.TypeOf(err) != task.InvalidInput {
		t.Fatalf("a model with a file named %s: %v; want InvalidInput", task.CacheMetaName, err)
	}
	if _, err := ParseManifest([]byte(`{"files":[{"name":"cache.meta","size":1,"sha256":"` + strings.Repeat("a", 64) + `"}]}`)); err == nil {
		t.Fatal("a manifest listing cache.meta was accepted")
	}
}

// A fine-tuned model is cached as the bucket keeps it, under its tenant
// (models/<tenant>/<fine-tuned name>/), listed by Cached; one filed under
// another tenant than its name's is refused.
func TestCacheHoldsFineTunedModels(t *testing.T) {
	ctx := context.Background()
	name := task.FineTunedName("glm-4-test", "demo", "x", "t1")
	src := &memSource{files: map[string][]byte{}}
	src.add("demo", name, "model.bin", []byte("weights"))
	src.add("acme", name, "model.bin", []byte("weights"))
	c := &Cache{Dir: t.TempDir(), Source: src}
	got, err := c.Ensure(ctx, "demo", name, nil)
	if err != nil || got.Dir != filepath.Join(c.Dir, "demo", name) {
		t.Fatalf("Ensure: %+v, %v", got, err)
	}
	if b, err := os.ReadFile(filepath.Join(got.Dir, "model.bin")); err != nil || string(b) != "weights" {
		t.Fatalf("cached file: %q, %v", b, err)
	}
	if metas, _ := c.Cached(); len(metas) != 1 || metas[0].Name != "demo" || metas[0].Revision != name {
		t.Fatalf("Cached: %+v", metas)
	}
	if _, err := c.Ensure(ctx, "acme", name, nil); task.TypeOf(err) != task.InvalidInput {
		t.Fatalf("demo's model under acme: %v; want InvalidInput", err)
	}
}
