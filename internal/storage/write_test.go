package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// fakeUploader keeps what write sends, to check how it cuts a stream.
type fakeUploader struct {
	mu           sync.Mutex
	one, aborted bool
	parts        [][]byte
	biggest      int
	completeErr  error
	partErr      int32 // fail this part
	stored       []byte
	meta         map[string]string
}

func (f *fakeUploader) putOne(_ context.Context, req request, body []byte) (Info, error) {
	f.one, f.stored, f.meta = true, bytes.Clone(body), req.metadata
	return Info{ETag: "e1"}, nil
}

func (f *fakeUploader) startMultipart(_ context.Context, req request) (string, error) {
	f.meta = req.metadata
	return "u1", nil
}

func (f *fakeUploader) putPart(_ context.Context, _ request, _ string, n int32, body []byte, _ string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n == f.partErr {
		return "", errors.New("part refused")
	}
	for len(f.parts) < int(n) {
		f.parts = append(f.parts, nil)
	}
	f.parts[n-1] = bytes.Clone(body)
	f.biggest = max(f.biggest, cap(body))
	return fmt.Sprintf("p%d", n), nil
}

func (f *fakeUploader) complete(_ context.Context, _ request, _ string, parts []part) (Info, error) {
	if f.completeErr != nil {
		return Info{}, f.completeErr
	}
	for i, p := range parts {
		if p.number != int32(i+1) || p.etag != fmt.Sprintf("p%d", i+1) {
			return Info{}, fmt.Errorf("completed with part %d = %+v", i+1, p)
		}
	}
	f.stored = bytes.Join(f.parts, nil)
	return Info{ETag: "e2-2"}, nil
}

func (f *fakeUploader) abort(context.Context, request, string) error {
	f.aborted = true
	return nil
}

// onlyReader hides every method but Read, as a network stream would.
type onlyReader struct{ io.Reader }

func TestWriteCutsStreams(t *testing.T) {
	const ps = 1024
	for _, tc := range []struct {
		name      string
		n         int
		size      int64 // -1: unknown
		wantParts int   // 0: one PUT
	}{
		{"empty, size unknown", 0, -1, 0},
		{"small, size unknown", 10, -1, 0},
		{"small, size known", 10, 10, 0},
		{"one part exactly, size known", ps, ps, 0},
		{"one part exactly, size unknown", ps, -1, 1},
		{"two and a half parts, size unknown", 2*ps + ps/2, -1, 3},
		{"two and a half parts, size known", 2*ps + ps/2, 2*ps + ps/2, 3},
		{"three parts exactly, size unknown", 3 * ps, -1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := bytes.Repeat([]byte("0123456789abcdef"), tc.n/16+1)[:tc.n]
			f := &fakeUploader{}
			info, err := write(context.Background(), f, ps, "k", onlyReader{bytes.NewReader(data)}, tc.size, PutOptions{}, precondition{})
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if info.SHA256 != hex.EncodeToString(sum[:]) || info.Size != int64(tc.n) {
				t.Errorf("info = %+v; want size %d, sha256 %x", info, tc.n, sum)
			}
			if !bytes.Equal(f.stored, data) {
				t.Errorf("stored %d bytes, not the %d written", len(f.stored), len(data))
			}
			if len(f.parts) != tc.wantParts || f.one != (tc.wantParts == 0) {
				t.Errorf("%d parts (one PUT: %t), want %d", len(f.parts), f.one, tc.wantParts)
			}
			if f.biggest > ps {
				t.Errorf("a part buffer grew to %d bytes, past the part size %d", f.biggest, ps)
			}
			if got := f.meta[MetaSHA256]; f.one && got != info.SHA256 || !f.one && got != "" {
				t.Errorf("sha256 metadata %q (one PUT: %t)", got, f.one)
			}
		})
	}
}

func TestWriteRefusesShortStream(t *testing.T) {
	for _, n := range []int{10, 3000} { // one PUT, multipart
		f := &fakeUploader{}
		_, err := write(context.Background(), f, 1024, "k", strings.NewReader(strings.Repeat("x", n)), int64(n+1), PutOptions{}, precondition{})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%d of %d bytes: err = %v, want io.ErrUnexpectedEOF", n, n+1, err)
		}
		if f.stored != nil || n > 1024 && !f.aborted {
			t.Errorf("%d of %d bytes: stored %t, aborted %t", n, n+1, f.stored != nil, f.aborted)
		}
	}
}

func TestWriteAbortsOnFailedPart(t *testing.T) {
	f := &fakeUploader{partErr: 2}
	_, err := write(context.Background(), f, 1024, "k", strings.NewReader(strings.Repeat("x", 10000)), -1, PutOptions{}, precondition{})
	if err == nil || !f.aborted || f.stored != nil {
		t.Errorf("err = %v, aborted = %t, stored %t; want the error, an abort and nothing stored", err, f.aborted, f.stored != nil)
	}
}

func TestWriteAbortsFailedMultipart(t *testing.T) {
	f := &fakeUploader{completeErr: errors.New("boom")}
	_, err := write(context.Background(), f, 1024, "k", strings.NewReader(strings.Repeat("x", 3000)), -1, PutOptions{}, precondition{absent: true})
	if err == nil || !f.aborted {
		t.Errorf("err = %v, aborted = %t; want the error and an abort", err, f.aborted)
	}
}

func TestWriteSniffsContentType(t *testing.T) {
	f := &fakeUploader{}
	info, err := write(context.Background(), f, 1024, "k", strings.NewReader(minimalPDF), -1, PutOptions{}, precondition{})
	if err != nil || info.ContentType != "application/pdf" {
		t.Errorf("ContentType = %q, %v; want application/pdf", info.ContentType, err)
	}
	info, _ = write(context.Background(), f, 1024, "k", strings.NewReader(minimalPDF), -1, PutOptions{ContentType: "x/y"}, precondition{})
	if info.ContentType != "x/y" {
		t.Errorf("ContentType = %q, want the caller's x/y", info.ContentType)
	}
}

// A write given a part size cuts its parts to it (never below S3's 5 MiB)
// and still sends a body of at most one default part in one PUT.
func TestWriteTakesAPartSize(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name        string
		size        int64
		partSize    int64
		wantParts   int
		wantBiggest int
	}{
		{"40 MiB in 16 MiB parts", 40 * mib, 16 * mib, 3, 16 * mib},
		{"40 MiB in parts asked as 1 MiB", 40 * mib, 1 * mib, 8, 5 * mib},
		{"16 MiB", 16 * mib, 16 * mib, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := bytes.Repeat([]byte("0123456789abcdef"), int(tc.size/16))
			f := writeToFake(t, bytes.NewReader(data), data, tc.size, PutOptions{PartSize: tc.partSize})
			if len(f.parts) != tc.wantParts || f.one != (tc.wantParts == 0) || (tc.wantParts > 0 && f.biggest != tc.wantBiggest) {
				t.Errorf("%d parts (one PUT: %t, biggest buffer %d), want %d of %d", len(f.parts), f.one, f.biggest, tc.wantParts, tc.wantBiggest)
			}
		})
	}
}

// writeToFake writes r, which holds data, at the default part size and
// checks that what was stored is data.
func writeToFake(t *testing.T, r io.Reader, data []byte, size int64, o PutOptions) *fakeUploader {
	t.Helper()
	f := &fakeUploader{}
	if _, err := write(context.Background(), f, defaultPartSize, "k", r, size, o, precondition{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.stored, data) {
		t.Errorf("stored %d bytes, not the %d written", len(f.stored), len(data))
	}
	return f
}

// TestWriteMultipartInSmallParts: at the default part size, an object
// that fits one part goes in one PUT, and a larger one, or a stream of
// unknown size past S3's minimum part, goes in parts of that minimum, so
// the part buffers cost what a part needs.
func TestWriteMultipartInSmallParts(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name      string
		n         int
		size      int64
		wantParts int // 0: one PUT
	}{
		{"10 MiB, size known", 10 * mib, 10 * mib, 0},
		{"16 MiB, size known", 16 * mib, 16 * mib, 0},
		{"20 MiB, size known", 20 * mib, 20 * mib, 4},
		{"4 MiB, size unknown", 4 * mib, -1, 0},
		{"12 MiB, size unknown", 12 * mib, -1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := bytes.Repeat([]byte("0123456789abcdef"), tc.n/16)
			f := writeToFake(t, onlyReader{bytes.NewReader(data)}, data, tc.size, PutOptions{})
			if len(f.parts) != tc.wantParts || f.one != (tc.wantParts == 0) {
				t.Errorf("%d parts (one PUT: %t), want %d", len(f.parts), f.one, tc.wantParts)
			}
			if f.biggest > minPartSize {
				t.Errorf("a part buffer grew to %d bytes, past %d", f.biggest, minPartSize)
			}
		})
	}
}
