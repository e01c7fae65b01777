package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// conflictCounter counts the writes a store refused with ErrConflict, to
// show that a test raced for real.
type conflictCounter struct {
	Store
	conflicts atomic.Int32
}

func (c *conflictCounter) count(info Info, err error) (Info, error) {
	if errors.Is(err, ErrConflict) {
		c.conflicts.Add(1)
	}
	return info, err
}

func (c *conflictCounter) Create(ctx context.Context, key string, r io.Reader, size int64, o PutOptions) (Info, error) {
	return c.count(c.Store.Create(ctx, key, r, size, o))
}

func (c *conflictCounter) Replace(ctx context.Context, key, etag string, r io.Reader, size int64, o PutOptions) (Info, error) {
	return c.count(c.Store.Replace(ctx, key, etag, r, size, o))
}

func entry(tenant, taskID, name string, i int) ManifestEntry {
	key, _ := Key(Data, tenant, taskID, name)
	return ManifestEntry{Key: key, Size: int64(i), SHA256: sha(name), ContentType: "text/plain", Category: Data, VersionID: fmt.Sprint(i)}
}

// 16 writers add one entry each to the same manifest at once: every entry
// is there at the end, each write made a version, and some writers lost a
// race and merged (or the test proved nothing).
func testManifestConcurrentUpdates(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	tenant, taskID := "acme", strings.ToLower(strings.NewReplacer("/", "-").Replace(p))+"t1"
	cs := &conflictCounter{Store: s}
	const n = 16
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			_, _, errs[i] = AddToManifest(ctx, cs, tenant, taskID, entry(tenant, taskID, fmt.Sprintf("attachments/f%02d.txt", i), i))
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	m, info, err := ReadManifest(ctx, s, tenant, taskID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Objects) != n {
		t.Fatalf("the manifest lists %d objects after %d concurrent updates, want %d: %+v", len(m.Objects), n, n, m.Objects)
	}
	for i, e := range m.Objects {
		if want := fmt.Sprintf("attachments/f%02d.txt", i); e.Name != want || e.Size != int64(i) {
			t.Errorf("entry %d = %+v, want %s (sorted by key)", i, e, want)
		}
	}
	versions, err := s.Versions(ctx, info.Key)
	if err != nil || len(versions) != n {
		t.Errorf("%d versions of the manifest (%v), want one per update: %d", len(versions), err, n)
	}
	t.Logf("%d updates, %d lost a race and merged", n, cs.conflicts.Load())
	if cs.conflicts.Load() == 0 {
		t.Error("no update lost a race: the test did not exercise the merge")
	}
}

// A writer that loses the race between its read and its write applies its
// change again to what the winner wrote.
func testManifestMergesOnConflict(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	tenant, taskID := "acme", strings.ToLower(strings.NewReplacer("/", "-").Replace(p))+"t2"
	if _, _, err := AddToManifest(ctx, s, tenant, taskID, entry(tenant, taskID, "output.jsonl", 1)); err != nil {
		t.Fatal(err)
	}
	calls := 0
	_, _, err := UpdateManifest(ctx, s, tenant, taskID, func(m *Manifest) error {
		calls++
		if calls == 1 { // another writer gets in between this read and this write
			if _, _, err := AddToManifest(ctx, s, tenant, taskID, entry(tenant, taskID, "report.json", 2)); err != nil {
				return err
			}
		}
		m.Objects = append(m.Objects, entry(tenant, taskID, "attachments/a.pdf", 3))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := ReadManifest(ctx, s, tenant, taskID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range m.Objects {
		names = append(names, e.Name)
	}
	if calls != 2 || strings.Join(names, " ") != "attachments/a.pdf output.jsonl report.json" {
		t.Errorf("change ran %d times, manifest lists %q; want 2 runs and all three entries", calls, names)
	}
	// An entry of a key already listed replaces it.
	e := entry(tenant, taskID, "output.jsonl", 9)
	if m, _, err = AddToManifest(ctx, s, tenant, taskID, e); err != nil || len(m.Objects) != 3 || m.Objects[1].Size != 9 {
		t.Errorf("re-adding output.jsonl: %v, %+v", err, m.Objects)
	}
}

func TestNameOfAndCategoryOf(t *testing.T) {
	key, _ := Key(Document, "acme", "t1", "attachments/spec.pdf")
	if NameOf(key) != "attachments/spec.pdf" || CategoryOf(key) != Document {
		t.Errorf("NameOf(%s) = %q, CategoryOf = %q", key, NameOf(key), CategoryOf(key))
	}
	if NameOf("odd") != "odd" || CategoryOf("odd/x") != "" {
		t.Error("keys outside the layout")
	}
}
