package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The contract every driver keeps, checked on a real MinIO. Each case gets
// its own key prefix, so cases and drivers never see each other's objects.

type contractCase struct {
	name string
	run  func(t *testing.T, s Store, p string)
}

var contract = []contractCase{
	{"CreateGetStatListDelete", testCreateGetStatListDelete},
	{"CreateExistingKeyConflicts", testCreateExisting},
	{"ReplaceNeedsCurrentETag", testReplace},
	{"ReplaceMissingKeyConflicts", testReplaceMissing},
	{"MissingKeyIsNotFound", testMissing},
	{"GetRangeResumes", testGetRange},
	{"PutOverwrites", testPut},
	{"ContentTypeIsSniffed", testSniffedContentType},
	{"StreamOfUnknownSize", testStream},
	{"StreamMemoryIsBounded", testStreamMemory},
	{"StreamedPutHoldsNoPart", testStreamedPut},
	{"RaceCreateOneWins", testRaceCreate},
	{"RaceReplaceOneWins", testRaceReplace},
	{"RaceMultipartCreateOneWins", testRaceMultipartCreate},
	{"MultipartReplaceStaleETagConflicts", testMultipartReplaceStale},
	{"EnsureBucketCreatesVersionedBucket", testEnsureBucket},
	{"ManifestConcurrentUpdatesLoseNothing", testManifestConcurrentUpdates},
	{"ManifestMergesOnConflict", testManifestMergesOnConflict},
	{"OnePutBodyIsCheckedBySHA256", testOnePutBodyIsChecked},
	{"DeclaredSHA256IsCheckedBeforeCompletion", testDeclaredSHA256},
	{"UploadResumesInterrupted64MiB", testUploadResumes},
	{"UploadSmallFile", testUploadSmallFile},
	{"UploadChangedFileStartsAgain", testUploadChangedFileStartsAgain},
	{"ListPagePages", testListPage},
	{"TagsAreStored", testTags},
	{"RetentionRulesReadBack", testRetention},
}

func TestContract(t *testing.T) {
	if stack == nil {
		t.Skip("-short: no MinIO")
	}
	for _, store := range testStores() {
		current = store
		for _, driver := range []string{DriverMinIO, DriverAWS} {
			t.Run(store.name+"/"+driver, func(t *testing.T) {
				s := openTestStore(t, driver, testBucket, 0)
				if err := EnsureBucket(testContext(t), s); err != nil {
					t.Fatal(err)
				}
				for _, c := range contract {
					t.Run(c.name, func(t *testing.T) {
						if l, ok := store.lacks[c.name]; ok {
							// The store lacks what the case checks: check
							// instead that the code refuses clearly.
							l.check(t, s)
							t.Skipf("%s lacks %s; instead %s", store.name, l.feature, l.instead)
						}
						c.run(t, s, driver+"/"+c.name+"/")
					})
				}
			})
		}
	}
	current = testStores()[0]
}

func openTestStore(t *testing.T, driver, bucket string, partSize int64) Store {
	t.Helper()
	s, err := Open(testContext(t), Config{
		Driver: driver, Endpoint: current.stack.S3Endpoint, Bucket: bucket, Insecure: true,
		AccessKey: current.stack.AccessKey, SecretKey: current.stack.SecretKey, partSize: partSize,
		StatBeforeReplace: current.statBeforeReplace,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, s Store, key, content string) Info {
	t.Helper()
	info, err := s.Create(testContext(t), key, strings.NewReader(content), int64(len(content)), PutOptions{ContentType: "text/plain"})
	if err != nil {
		t.Fatalf("create %s: %v", key, err)
	}
	return info
}

func read(t *testing.T, s Store, key string) (string, Info) {
	t.Helper()
	rc, info, err := s.Get(testContext(t), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return string(b), info
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func testCreateGetStatListDelete(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	meta := map[string]string{"task-id": "t1"}
	info, err := s.Create(ctx, p+"a.json", strings.NewReader(`{"a":1}`), 7, PutOptions{ContentType: "application/json", Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != p+"a.json" || info.Size != 7 || info.ETag == "" || info.VersionID == "" || info.SHA256 != sha(`{"a":1}`) {
		t.Errorf("Create returned %+v", info)
	}
	create(t, s, p+"c.txt", "ccc")
	create(t, s, p+"b/nested.txt", "bb")
	create(t, s, p+"other-prefix/x", "x") // inside p, but see the List below

	got, gi := read(t, s, p+"a.json")
	if got != `{"a":1}` || gi.ETag != info.ETag || gi.VersionID != info.VersionID || gi.Size != 7 ||
		gi.ContentType != "application/json" || gi.SHA256 != info.SHA256 || gi.Metadata["task-id"] != "t1" {
		t.Errorf("Get = %q, %+v; want the created object %+v", got, gi, info)
	}
	st, err := s.Stat(ctx, p+"a.json")
	if err != nil {
		t.Fatal(err)
	}
	if st.ETag != info.ETag || st.Size != 7 || st.SHA256 != info.SHA256 || st.Metadata["task-id"] != "t1" || st.LastModified.IsZero() {
		t.Errorf("Stat = %+v; want the created object %+v", st, info)
	}

	list, err := s.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{p + "a.json", p + "b/nested.txt", p + "c.txt", p + "other-prefix/x"}
	if keys := keysOf(list); strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("List = %q, want %q (sorted, at any depth)", keys, want)
	}
	if list[0].ETag != info.ETag || list[0].Size != 7 {
		t.Errorf("listed %+v, want the ETag and size of %+v", list[0], info)
	}
	if list, _ := s.List(ctx, p+"b/"); len(list) != 1 {
		t.Errorf("List(%sb/) = %q, want one key", p, keysOf(list))
	}

	if err := s.Delete(ctx, p+"c.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, p+"c.txt"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, p+"c.txt"); err != nil {
		t.Errorf("deleting a missing key: %v, want no error", err)
	}
	if list, _ := s.List(ctx, p); len(list) != 3 {
		t.Errorf("List after Delete = %q, want 3 keys", keysOf(list))
	}
	if v, err := s.Versions(ctx, p+"c.txt"); err != nil || len(v) != 1 {
		t.Errorf("Versions of a deleted key = %v, %v; want the one old version kept", v, err)
	}
}

func keysOf(list []Info) []string {
	var keys []string
	for _, i := range list {
		keys = append(keys, i.Key)
	}
	return keys
}

func testCreateExisting(t *testing.T, s Store, p string) {
	create(t, s, p+"k", "first")
	_, err := s.Create(testContext(t), p+"k", strings.NewReader("second"), -1, PutOptions{})
	if !errors.Is(err, ErrConflict) || !errors.Is(err, task.ErrConflict) || task.TypeOf(err) != task.Conflict {
		t.Fatalf("second Create: %v, want ErrConflict", err)
	}
	if got, _ := read(t, s, p+"k"); got != "first" {
		t.Errorf("content = %q after a refused Create, want first", got)
	}
}

func testReplace(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	v1 := create(t, s, p+"k", "v1")
	v2, err := s.Replace(ctx, p+"k", v1.ETag, strings.NewReader("v2"), 2, PutOptions{})
	if err != nil {
		t.Fatalf("Replace with the current ETag: %v", err)
	}
	if v2.ETag == v1.ETag || v2.VersionID == v1.VersionID || v2.VersionID == "" {
		t.Errorf("Replace returned %+v, want a new ETag and VersionID than %+v", v2, v1)
	}
	_, err = s.Replace(ctx, p+"k", v1.ETag, strings.NewReader("v3"), 2, PutOptions{})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Replace with a stale ETag: %v, want ErrConflict", err)
	}
	if got, _ := read(t, s, p+"k"); got != "v2" {
		t.Errorf("content = %q, want v2", got)
	}
	versions, err := s.Versions(ctx, p+"k")
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 2 || versions[0].VersionID != v2.VersionID || versions[1].VersionID != v1.VersionID || versions[1].ETag != v1.ETag {
		t.Errorf("Versions = %+v, want v2 then v1 (%s, %s)", versions, v2.VersionID, v1.VersionID)
	}
}

func testReplaceMissing(t *testing.T, s Store, p string) {
	v1 := create(t, s, p+"k", "v1")
	if err := s.Delete(testContext(t), p+"k"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Replace(testContext(t), p+"k", v1.ETag, strings.NewReader("v2"), 2, PutOptions{})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("Replace of a deleted key: %v, want ErrConflict", err)
	}
	_, err = s.Replace(testContext(t), p+"never", v1.ETag, strings.NewReader("v2"), 2, PutOptions{})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("Replace of a key never written: %v, want ErrConflict", err)
	}
}

func testMissing(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	if _, _, err := s.Get(ctx, p+"missing"); !errors.Is(err, ErrNotFound) || !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Get: %v, want ErrNotFound", err)
	}
	if _, _, err := s.GetRange(ctx, p+"missing", 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRange: %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, p+"missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat: %v, want ErrNotFound", err)
	}
	if list, err := s.List(ctx, p); err != nil || len(list) != 0 {
		t.Errorf("List of an empty prefix = %v, %v", list, err)
	}
}

func testGetRange(t *testing.T, s Store, p string) {
	ctx := testContext(t)
	create(t, s, p+"k", "0123456789")
	rc, info, err := s.GetRange(ctx, p+"k", 4)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "456789" || info.Size != 10 {
		t.Errorf("GetRange(4) = %q, size %d; want 456789, size 10", b, info.Size)
	}
	rc, info, err = s.GetRange(ctx, p+"k", 10)
	if err != nil {
		t.Fatalf("GetRange at the end: %v", err)
	}
	b, _ = io.ReadAll(rc)
	rc.Close()
	if len(b) != 0 || info.Size != 10 {
		t.Errorf("GetRange(10) = %q, size %d; want nothing, size 10", b, info.Size)
	}
	if _, _, err := s.GetRange(ctx, p+"k", 11); !errors.Is(err, task.ErrInvalidInput) {
		t.Errorf("GetRange past the end: %v, want ErrInvalidInput", err)
	}
}

func testPut(t *testing.T, s Store, p string) {
	for i := range 2 {
		if _, err := s.Put(testContext(t), p+"part-00001", strings.NewReader("same"), 4, PutOptions{}); err != nil {
			t.Fatalf("Put #%d: %v", i+1, err)
		}
	}
	if got, _ := read(t, s, p+"part-00001"); got != "same" {
		t.Errorf("content = %q", got)
	}
}

func testSniffedContentType(t *testing.T, s Store, p string) {
	if _, err := s.Create(testContext(t), p+"report.bin", strings.NewReader(minimalPDF), -1, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stat(testContext(t), p+"report.bin"); err != nil || st.ContentType != "application/pdf" {
		t.Errorf("ContentType = %q, %v; want application/pdf", st.ContentType, err)
	}
}

// stream is n pseudo-random bytes from seed behind a bare Read, as a
// network body would be: not seekable, size unknown.
func stream(seed byte, n int64) io.Reader {
	return onlyReader{io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)}
}

func testStream(t *testing.T, s Store, p string) {
	const n = 20<<20 + 12345 // two parts of 16 MiB, the second short
	h := sha256.New()
	io.Copy(h, stream(7, n))
	want := hex.EncodeToString(h.Sum(nil))

	info, err := s.Create(testContext(t), p+"big", stream(7, n), -1, PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != n || info.SHA256 != want {
		t.Errorf("Create = size %d sha256 %s; want %d %s", info.Size, info.SHA256, n, want)
	}
	rc, gi, err := s.Get(testContext(t), p+"big")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h.Reset()
	got, err := io.Copy(h, rc)
	if err != nil || got != n || hex.EncodeToString(h.Sum(nil)) != want || gi.Size != n || gi.ETag != info.ETag {
		t.Errorf("read back %d bytes (%v), sha256 %x, info %+v; want %d bytes, %s", got, err, h.Sum(nil), gi, n, want)
	}
}

// testStreamMemory writes 30 MiB in 5 MiB parts and samples the heap
// meanwhile, with the GC made eager so that garbage does not hide what is
// live: the peak must stay near the partsInFlight+1 part buffers (15 MiB),
// well below the object.
func testStreamMemory(t *testing.T, s Store, p string) {
	ms := openTestStore(t, driverOf(s), s.Bucket(), minPartSize)
	const n = 30 << 20
	var info Info
	var err error
	grew := heapGrowth(func() { info, err = ms.Put(testContext(t), p+"big", stream(3, n), -1, PutOptions{}) })
	if err != nil || info.Size != n {
		t.Fatalf("Put = %+v, %v", info, err)
	}
	t.Logf("heap grew by at most %.1f MiB to stream %d MiB in 5 MiB parts", grew, n>>20)
	if grew > 20 {
		t.Errorf("heap grew by %.1f MiB to stream %d MiB: memory grows with the object", grew, n>>20)
	}
}

// testStreamedPut: PutOptions.Stream sends a known size as it reads it,
// so the heap does not grow by a part (5 MiB); the object reads back
// whole, a second Create of the key conflicts, and a reader that fails
// half way stores nothing and its error is what the write returns.
func testStreamedPut(t *testing.T, s Store, p string) {
	const n = 12<<20 + 777 // three parts, the last short
	h := sha256.New()
	io.Copy(h, stream(5, n))
	want := hex.EncodeToString(h.Sum(nil))
	opts := PutOptions{ContentType: "application/jsonl", Stream: true}

	var info Info
	var err error
	grew := heapGrowth(func() { info, err = s.Create(testContext(t), p+"merged", stream(5, n), n, opts) })
	if err != nil || info.Size != n || info.SHA256 != want || info.ContentType != "application/jsonl" {
		t.Fatalf("Create = %+v, %v; want size %d sha256 %s", info, err, n, want)
	}
	if grew > 4 {
		t.Errorf("heap grew by %.1f MiB to stream %d MiB: a part was held in memory", grew, n>>20)
	}
	rc, gi, err := s.Get(testContext(t), p+"merged")
	if err != nil {
		t.Fatal(err)
	}
	h.Reset()
	got, err := io.Copy(h, rc)
	rc.Close()
	if err != nil || got != n || hex.EncodeToString(h.Sum(nil)) != want || gi.ETag != info.ETag {
		t.Errorf("read back %d bytes (%v), sha256 %x; want %d bytes, %s", got, err, h.Sum(nil), n, want)
	}
	if _, err := s.Create(testContext(t), p+"merged", stream(5, n), n, opts); !errors.Is(err, ErrConflict) {
		t.Errorf("a second streamed Create of the key: want Conflict, got %v", err)
	}

	broken := errors.New("part 3 is corrupt")
	pr, pw := io.Pipe()
	go func() {
		io.CopyN(pw, stream(6, n), 7<<20)
		pw.CloseWithError(broken)
	}()
	if _, err := s.Put(testContext(t), p+"broken", pr, n, opts); !errors.Is(err, broken) {
		t.Errorf("a reader failing half way: want its error, got %v", err)
	}
	if _, err := s.Stat(testContext(t), p+"broken"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed streamed write left an object: %v", err)
	}
}

// heapBytes is the memory of heap objects, live or not yet swept.
// heapGrowth runs f and returns by how many MiB, at most, the heap's live
// objects grew meanwhile, sampled every 2 ms with the GC made eager so that
// garbage does not hide what is live.
func heapGrowth(f func()) float64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	base := heapBytes()
	var peak atomic.Uint64
	done, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak.Store(max(peak.Load(), heapBytes()))
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	<-sampled
	return float64(peak.Load()-min(base, peak.Load())) / (1 << 20)
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func testEnsureBucket(t *testing.T, s Store, _ string) {
	bucket := "contract-new-" + driverOf(s)
	ns := openTestStore(t, driverOf(s), bucket, 0)
	ctx := testContext(t)
	for range 2 { // idempotent
		if err := EnsureBucket(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	v1 := create(t, ns, "k", "v1")
	if _, err := ns.Replace(ctx, "k", v1.ETag, strings.NewReader("v2"), 2, PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if v, err := ns.Versions(ctx, "k"); err != nil || len(v) != 2 {
		t.Errorf("Versions = %+v, %v; want 2 (versioning on)", v, err)
	}
}

func driverOf(s Store) string {
	if _, ok := s.(*awsStore); ok {
		return DriverAWS
	}
	return DriverMinIO
}
