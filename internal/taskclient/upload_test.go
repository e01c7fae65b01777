package taskclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// minioStore starts MinIO for one test and opens its bucket.
func minioStore(t *testing.T) storage.Store {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no MinIO")
	}
	bin, err := devstack.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{Dir: t.TempDir(), BinDir: bin, NoTemporal: true, Buckets: []string{"attach"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Stop(); err != nil {
			t.Error(err)
		}
	})
	s, err := storage.Open(ctx, storage.Config{Endpoint: st.S3Endpoint, Bucket: "attach", Insecure: true, AccessKey: st.AccessKey, SecretKey: st.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.EnsureBucket(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

const pdf = "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

// elf is an x86-64 executable header: a binary, whatever its name says.
func elf() []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(h[16:], 2)
	binary.LittleEndian.PutUint16(h[18:], 0x3e)
	binary.LittleEndian.PutUint32(h[20:], 1)
	return h
}

// Attachments land under the category of their content, in the manifest
// with their sha256, and `results` finds and checks them.
func TestAttachAndResults(t *testing.T) {
	s := minioStore(t)
	c := &Client{Store: s}
	dir := t.TempDir()
	big := make([]byte, 20<<20+7) // multipart: two parts of 16 MiB
	rand.NewChaCha8([32]byte{1}).Read(big)
	files := map[string][]byte{
		"spec.pdf":     []byte(pdf),
		"report.pdf":   elf(), // an executable renamed .pdf
		"output.jsonl": []byte(`{"custom_id":"a"}` + "\n" + `{"custom_id":"b"}` + "\n"),
		"blob.bin":     big,
	}
	want := map[string]storage.Category{"spec.pdf": storage.Document, "report.pdf": storage.Binary, "output.jsonl": storage.Data, "blob.bin": storage.Binary}
	var paths []string
	for _, name := range []string{"spec.pdf", "report.pdf", "output.jsonl", "blob.bin"} {
		paths = append(paths, writeFile(t, dir, name, files[name]))
	}
	var mu sync.Mutex
	progress := map[string]int64{}
	atts, err := c.Attach(testCtx(t), "acme", "t1", paths, AttachOptions{
		StateDir: t.TempDir(),
		Progress: func(path string, size int64) func(done, total int64) {
			return func(done, total int64) {
				mu.Lock()
				progress[filepath.Base(path)] = done
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range atts {
		name := filepath.Base(a.Path)
		e := a.Entry
		wantKey, _ := storage.Key(want[name], "acme", "t1", "attachments/"+name)
		if e.Key != wantKey || e.Category != want[name] || e.SHA256 != shaOf(files[name]) || e.Size != int64(len(files[name])) || e.VersionID == "" || e.ContentType == "" {
			t.Errorf("%s attached as %+v; want key %s, its sha256 and a version", name, e, wantKey)
		}
		if progress[name] != int64(len(files[name])) {
			t.Errorf("progress of %s ended at %d of %d", name, progress[name], len(files[name]))
		}
	}

	m, _, err := storage.ReadManifest(testCtx(t), s, "acme", "t1")
	if err != nil || len(m.Objects) != 4 {
		t.Fatalf("manifest %+v, %v; want the 4 attachments", m, err)
	}

	// results: the status's own artifacts, then the manifest's.
	manifestKey, _ := storage.ManifestKey("acme", "t1")
	st := task.Status{ID: "t1", Tenant: "acme", Artifacts: []task.ObjectRef{{Bucket: s.Bucket(), Key: manifestKey, SHA256: "stale"}}}
	refs, err := c.Artifacts(testCtx(t), st)
	if err != nil || len(refs) != 5 {
		t.Fatalf("artifacts %+v, %v; want the manifest and 4 attachments", refs, err)
	}
	out := t.TempDir()
	locals, err := LocalPaths(out, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, ref := range refs {
		os.MkdirAll(filepath.Dir(locals[i]), 0o755)
		var buf bytes.Buffer
		if err := c.Download(testCtx(t), ref, &buf); err != nil {
			t.Errorf("downloading %s: %v", ref.Key, err)
		}
		if name := filepath.Base(locals[i]); files[name] != nil && !bytes.Equal(buf.Bytes(), files[name]) {
			t.Errorf("%s downloaded with other content", name)
		}
		if rel, _ := filepath.Rel(out, locals[i]); i > 0 && !strings.HasPrefix(rel, "attachments"+string(filepath.Separator)) {
			t.Errorf("attachment %s goes to %s, want under attachments/", ref.Key, rel)
		}
	}

	// A tampered download fails its sha256 check.
	bad := refs[1]
	bad.SHA256 = shaOf([]byte("something else"))
	if err := c.Download(testCtx(t), bad, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("download with a wrong sha256: %v, want a sha256 mismatch", err)
	}

	// Attaching the same files again sends nothing and changes nothing.
	again, err := c.Attach(testCtx(t), "acme", "t1", paths[:1], AttachOptions{StateDir: t.TempDir()})
	if err != nil || !again[0].Existed {
		t.Errorf("attaching spec.pdf again: %+v, %v; want it found there", again, err)
	}
}

func TestAttachRefusesBadNames(t *testing.T) {
	s := minioStore(t)
	c := &Client{Store: s}
	dir := t.TempDir()
	a := writeFile(t, dir, "a.txt", []byte("a"))
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	b := writeFile(t, sub, "a.txt", []byte("b"))
	if _, err := c.Attach(testCtx(t), "acme", "t2", []string{a, b}, AttachOptions{}); !errors.Is(err, task.ErrInvalidInput) {
		t.Errorf("two files named a.txt: %v, want InvalidInput", err)
	}
	for _, p := range []string{"..", dir, filepath.Join(dir, "missing")} {
		if _, err := c.Attach(testCtx(t), "acme", "t2", []string{p}, AttachOptions{}); !errors.Is(err, task.ErrInvalidInput) {
			t.Errorf("attaching %q: %v, want InvalidInput", p, err)
		}
	}
	if _, err := c.Attach(testCtx(t), "../etc", "t2", []string{a}, AttachOptions{}); !errors.Is(err, task.ErrInvalidInput) {
		t.Errorf("tenant ../etc: %v, want InvalidInput", err)
	}
	if _, err := LocalPaths("out", []task.ObjectRef{{Key: "data/00/acme/t1/../../../etc/passwd"}}); err == nil {
		t.Error("LocalPaths took a key that climbs out of the folder")
	}
}

// Attachments uploaded at the same time by several clients all end up in
// the manifest.
func TestAttachConcurrently(t *testing.T) {
	s := minioStore(t)
	c := &Client{Store: s}
	dir := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		p := writeFile(t, dir, fmt.Sprintf("f%d.txt", i), []byte(fmt.Sprintf("file %d\n", i)))
		wg.Go(func() { _, errs[i] = c.Attach(testCtx(t), "acme", "t3", []string{p}, AttachOptions{}) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	m, _, err := storage.ReadManifest(testCtx(t), s, "acme", "t3")
	if err != nil || len(m.Objects) != n {
		t.Errorf("manifest lists %d objects (%v), want %d", len(m.Objects), err, n)
	}
}
