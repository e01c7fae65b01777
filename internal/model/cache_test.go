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
