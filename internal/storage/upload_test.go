package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// partCounter records the parts a multipart store is asked to send and can
// interrupt the upload while one part is in flight, as a Ctrl-C or a lost
// network would.
type partCounter struct {
	multipartStore
	mu        sync.Mutex
	sent      []int32
	interrupt int32 // cancel the upload while this part is being sent
	cancel    context.CancelFunc
}

func (c *partCounter) putPart(ctx context.Context, req request, id string, n int32, body []byte, md5 string) (string, error) {
	c.mu.Lock()
	c.sent = append(c.sent, n)
	c.mu.Unlock()
	if n == c.interrupt {
		time.AfterFunc(5*time.Millisecond, c.cancel)
	}
	return c.multipartStore.putPart(ctx, req, id, n, body, md5)
}

// writeFile writes n pseudo-random bytes from seed to a file in dir and
// returns its path and sha256.
func writeFile(t *testing.T, dir string, seed byte, n int64) (string, string) {
	t.Helper()
	path := filepath.Join(dir, "upload.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), stream(seed, n)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

// An interrupted 64 MiB upload, run again, sends only the parts S3 does not
// have: at most the part that was in flight is sent twice, and what is
// stored is the file, sha256 for sha256.
func testUploadResumes(t *testing.T, s Store, p string) {
	const size, partSize = 64 << 20, 8 << 20 // 8 parts
	dir := t.TempDir()
	path, want := writeFile(t, dir, 42, size)
	stateDir := filepath.Join(dir, "state")
	key := p + "attachments/upload.bin"

	ctx, cancel := context.WithCancel(testContext(t))
	first := &partCounter{multipartStore: s.(multipartStore), interrupt: 4, cancel: cancel}
	_, err := uploadFile(ctx, first, key, path, UploadOptions{PartSize: partSize, StateDir: stateDir})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted upload: %v, want context.Canceled", err)
	}
	if states, _ := filepath.Glob(filepath.Join(stateDir, "*.json")); len(states) != 1 {
		t.Fatalf("upload state files %q, want one kept for the resume", states)
	}
	if _, err := s.Stat(testContext(t), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the interrupted upload left an object: %v", err)
	}

	var reports []int64
	second := &partCounter{multipartStore: s.(multipartStore)}
	res, err := uploadFile(testContext(t), second, key, path, UploadOptions{
		PartSize: partSize, StateDir: stateDir,
		Progress: func(done, total int64) { reports = append(reports, done) },
	})
	if err != nil {
		t.Fatalf("resumed upload: %v", err)
	}
	t.Logf("first run sent parts %v, the resume sent %v and reused %d", first.sent, second.sent, res.Reused)
	resent := 0
	for _, n := range second.sent {
		if slices.Contains(first.sent, n) {
			resent++
		}
	}
	if resent > 1 {
		t.Errorf("the resume sent %d parts again (%v after %v), want at most the one in flight", resent, second.sent, first.sent)
	}
	if res.Parts != 8 || res.Reused+len(second.sent) != 8 || res.Reused < 3 {
		t.Errorf("result %d parts, %d reused, %d sent; want 8 parts, at least 3 reused", res.Parts, res.Reused, len(second.sent))
	}
	if res.SHA256 != want || res.Size != size {
		t.Errorf("result size %d sha256 %s, want %d %s", res.Size, res.SHA256, size, want)
	}
	if len(reports) != 8 || reports[len(reports)-1] != size {
		t.Errorf("progress reports %v, want one per part ending at %d", reports, size)
	}

	// What is stored is the file, and says so.
	rc, info, err := s.Get(testContext(t), key)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if got := hex.EncodeToString(h.Sum(nil)); err != nil || n != size || got != want || info.SHA256 != want {
		t.Errorf("stored %d bytes (%v) with sha256 %s, metadata sha256 %s; want %d bytes, %s", n, err, got, info.SHA256, size, want)
	}
	if states, _ := filepath.Glob(filepath.Join(stateDir, "*.json")); len(states) != 0 {
		t.Errorf("upload state files %q left after success", states)
	}

	// The same file again is already there: nothing is sent.
	third := &partCounter{multipartStore: s.(multipartStore)}
	res, err = uploadFile(testContext(t), third, key, path, UploadOptions{PartSize: partSize, StateDir: stateDir})
	if err != nil || !res.Existed || len(third.sent) != 0 {
		t.Errorf("uploading it again: %v, existed %t, sent %v; want success with nothing sent", err, res.Existed, third.sent)
	}
	// Another file to the same key is a conflict.
	other, _ := writeFile(t, t.TempDir(), 43, 9<<20)
	if _, err := uploadFile(testContext(t), third, key, other, UploadOptions{PartSize: partSize, StateDir: stateDir}); !errors.Is(err, ErrConflict) {
		t.Errorf("another file to the same key: %v, want ErrConflict", err)
	}
}

// A file of one part goes in one PUT, with the same guarantees.
func testUploadSmallFile(t *testing.T, s Store, p string) {
	dir := t.TempDir()
	path, want := writeFile(t, dir, 7, 1000)
	key := p + "attachments/small.bin"
	o := UploadOptions{StateDir: dir}
	res, err := UploadFile(testContext(t), s, key, path, o)
	if err != nil || res.SHA256 != want || res.Parts != 0 || res.ContentType == "" {
		t.Fatalf("UploadFile = %+v, %v; want one PUT with sha256 %s", res, err, want)
	}
	if st, err := s.Stat(testContext(t), key); err != nil || st.SHA256 != want {
		t.Errorf("Stat = %+v, %v", st, err)
	}
	if res, err := UploadFile(testContext(t), s, key, path, o); err != nil || !res.Existed {
		t.Errorf("again: %+v, %v; want Existed", res, err)
	}
	other, _ := writeFile(t, t.TempDir(), 8, 1000)
	if _, err := UploadFile(testContext(t), s, key, other, o); !errors.Is(err, ErrConflict) {
		t.Errorf("another file to the same key: %v, want ErrConflict", err)
	}
}

// A file that changes between two runs is not resumed into a mix of both.
func testUploadChangedFileStartsAgain(t *testing.T, s Store, p string) {
	const size, partSize = 12 << 20, 5 << 20 // 3 parts
	dir := t.TempDir()
	path, _ := writeFile(t, dir, 1, size)
	stateDir := filepath.Join(dir, "state")
	key := p + "attachments/changing.bin"
	ctx, cancel := context.WithCancel(testContext(t))
	first := &partCounter{multipartStore: s.(multipartStore), interrupt: 2, cancel: cancel}
	if _, err := uploadFile(ctx, first, key, path, UploadOptions{PartSize: partSize, StateDir: stateDir}); err == nil {
		t.Fatal("the interrupted upload succeeded")
	}
	// Same size, other bytes, and the old modification time: only the
	// content tells.
	fi, _ := os.Stat(path)
	_, want := writeFile(t, dir, 2, size)
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	second := &partCounter{multipartStore: s.(multipartStore)}
	res, err := uploadFile(testContext(t), second, key, path, UploadOptions{PartSize: partSize, StateDir: stateDir})
	if err != nil || res.Reused != 0 || len(second.sent) != 3 || res.SHA256 != want {
		t.Errorf("upload of the changed file: %+v, %v, sent %v; want all 3 parts sent again, sha256 %s", res, err, second.sent, want)
	}
}

// A one-PUT body is signed with the sha256 write computed: a body that is
// not what was hashed never becomes an object.
func testOnePutBodyIsChecked(t *testing.T, s Store, p string) {
	u := s.(uploader)
	body := []byte("the content")
	req := request{key: p + "k", contentType: "text/plain", sha256: sha("other content")}
	if _, err := u.putOne(testContext(t), req, body); err == nil {
		t.Fatal("a body with the wrong sha256 was stored")
	}
	if _, err := s.Stat(testContext(t), p+"k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after the refused PUT: %v, want ErrNotFound", err)
	}
	req.sha256 = sha(string(body))
	if _, err := u.putOne(testContext(t), req, body); err != nil {
		t.Errorf("the right sha256: %v", err)
	}
}
