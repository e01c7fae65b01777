package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// eofApart is a body that hands over all its bytes with a nil error and
// says EOF only on a separate read, as chunked and HTTP/2 bodies may: a
// writer that stops at the declared size never sees that EOF.
type eofApart struct {
	b    []byte
	done bool
}

func (e *eofApart) Read(p []byte) (int, error) {
	if len(e.b) == 0 {
		e.done = true
		return 0, io.EOF
	}
	n := copy(p, e.b)
	e.b = e.b[n:]
	return n, nil
}

// testDeclaredSHA256 writes content with a declared sha256 in one PUT, as
// a multipart upload, as a streamed upload and from a file: a wrong
// declaration stores nothing and says so, whenever the body reports EOF;
// a right one stores the object with the digest as metadata.
func testDeclaredSHA256(t *testing.T, s Store, p string) {
	small := openTestStore(t, driverOf(s), s.Bucket(), minPartSize)
	for _, c := range []struct {
		name string
		size int64
		o    PutOptions
	}{
		{"one-put", 4 << 10, PutOptions{}},
		{"multipart", 11 << 20, PutOptions{}},
		{"streamed", 6 << 20, PutOptions{Stream: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			content, _ := io.ReadAll(stream(9, c.size))
			sum := sha256.Sum256(content)
			right := hex.EncodeToString(sum[:])
			wrong := sha("something else")

			o := c.o
			o.SHA256 = wrong
			body := &eofApart{b: content}
			_, err := small.Put(testContext(t), p+c.name, body, c.size, o)
			if !errors.Is(err, ErrSHA256Mismatch) {
				t.Fatalf("a body that does not match its declared sha256: %v; want ErrSHA256Mismatch", err)
			}
			if body.done {
				t.Fatal("the body's separate EOF was read: the check must not depend on it")
			}
			if _, err := s.Stat(testContext(t), p+c.name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("the refused write left an object: %v", err)
			}

			o.SHA256 = right
			info, err := small.Put(testContext(t), p+c.name, &eofApart{b: content}, c.size, o)
			if err != nil || info.SHA256 != right {
				t.Fatalf("the right declaration: %+v, %v", info, err)
			}
			st, err := s.Stat(testContext(t), p+c.name)
			if err != nil || st.SHA256 != right || st.Size != c.size {
				t.Fatalf("Stat of the verified object: %+v, %v; want sha256 %s", st, err, right)
			}
		})
	}
	t.Run("upload-file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(path, []byte("a file's content"), 0o600); err != nil {
			t.Fatal(err)
		}
		o := UploadOptions{PutOptions: PutOptions{SHA256: sha("other")}, StateDir: t.TempDir()}
		if _, err := UploadFile(testContext(t), s, p+"file", path, o); !errors.Is(err, ErrSHA256Mismatch) {
			t.Fatalf("UploadFile of a file that does not match its declaration: %v", err)
		}
		if _, err := s.Stat(testContext(t), p+"file"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the refused upload left an object: %v", err)
		}
	})
}
