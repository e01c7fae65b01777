package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// The races of the contract: n writers released at once, one must win.

// race runs f from n goroutines released at once and counts who won and
// who got ErrConflict; any other error fails the test.
func race(t *testing.T, n int, f func(i int) (Info, error)) (winner int, wins Info) {
	t.Helper()
	var (
		mu        sync.Mutex
		won, lost int
		others    []error
		start     = make(chan struct{})
		wg        sync.WaitGroup
	)
	winner = -1
	for i := range n {
		wg.Go(func() {
			<-start
			info, err := f(i)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
				winner, wins = i, info
			case errors.Is(err, ErrConflict):
				lost++
			default:
				others = append(others, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if won != 1 || lost != n-1 || len(others) > 0 {
		t.Fatalf("%d of %d won, %d got ErrConflict, other errors: %v; want exactly one winner", won, n, lost, others)
	}
	return winner, wins
}

func payload(i int) string { return fmt.Sprintf("writer %02d", i) }

func testRaceCreate(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	winner, info := race(t, 16, func(i int) (Info, error) {
		return s.Create(ctx, p+"k", strings.NewReader(payload(i)), -1, PutOptions{})
	})
	if got, gi := read(t, s, p+"k"); got != payload(winner) || gi.ETag != info.ETag {
		t.Errorf("stored %q (etag %s), want the winner's %q (etag %s)", got, gi.ETag, payload(winner), info.ETag)
	}
}

func testRaceReplace(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	v1 := create(t, s, p+"k", "v1")
	winner, info := race(t, 16, func(i int) (Info, error) {
		return s.Replace(ctx, p+"k", v1.ETag, strings.NewReader(payload(i)), -1, PutOptions{})
	})
	if got, _ := read(t, s, p+"k"); got != payload(winner) {
		t.Errorf("stored %q, want the winner's %q", got, payload(winner))
	}
	if v, err := s.Versions(ctx, p+"k"); err != nil || len(v) != 2 || v[0].VersionID != info.VersionID {
		t.Errorf("Versions = %+v, %v; want the winner's and v1", v, err)
	}
}

// A multipart write checks its precondition when it completes; a store
// with 5 MiB parts makes 6 MiB objects multipart.
func testRaceMultipartCreate(t *testing.T, s Store, p string) {
	ms := openTestStore(t, driverOf(s), s.Bucket(), minPartSize)
	ctx := testContext(t)
	const n = 6 << 20
	winner, info := race(t, 4, func(i int) (Info, error) {
		return ms.Create(ctx, p+"k", stream(byte(i), n), -1, PutOptions{})
	})
	h := sha256.New()
	io.Copy(h, stream(byte(winner), n))
	if st, err := ms.Stat(ctx, p+"k"); err != nil || st.ETag != info.ETag || info.SHA256 != hex.EncodeToString(h.Sum(nil)) {
		t.Errorf("stored %+v, %v; want the winner's %+v", st, err, info)
	}
	if !strings.Contains(info.ETag, "-") {
		t.Errorf("ETag %s is not a multipart ETag: the test did not exercise multipart", info.ETag)
	}
}

func testMultipartReplaceStale(t *testing.T, s Store, p string) {
	ms := openTestStore(t, driverOf(s), s.Bucket(), minPartSize)
	ctx := testContext(t)
	v1 := create(t, ms, p+"k", "v1")
	v2, err := ms.Replace(ctx, p+"k", v1.ETag, stream(1, 6<<20), -1, PutOptions{})
	if err != nil {
		t.Fatalf("multipart Replace with the current ETag: %v", err)
	}
	if _, err := ms.Replace(ctx, p+"k", v1.ETag, stream(2, 6<<20), -1, PutOptions{}); !errors.Is(err, ErrConflict) {
		t.Errorf("multipart Replace with a stale ETag: %v, want ErrConflict", err)
	}
	if st, _ := ms.Stat(ctx, p+"k"); st.ETag != v2.ETag {
		t.Errorf("ETag %s, want %s", st.ETag, v2.ETag)
	}
}
