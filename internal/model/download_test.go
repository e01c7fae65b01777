package model

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/model/testhub"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestDownloadResumesBrokenStreamsAcrossCalls(t *testing.T) {
	hub := testhub.New("tok")
	defer hub.Close()
	content := testhub.Fixture(1, 3<<20)
	hub.Add("org/m", "main", "model.safetensors", content)
	// Four breaks: the first call resumes twice and gives up on the third;
	// the second call goes on from the bytes the first one staged.
	hub.CutAfter("org/m", "main", "model.safetensors", 1<<20, 100<<10, 100<<10, 200<<10)
	up := Upstream{HubURL: hub.URL(), Token: "tok"}
	ctx := context.Background()

	l, err := up.List(ctx, task.UpstreamHF, "org/m", "main")
	if err != nil || len(l.Files) != 1 {
		t.Fatalf("List: %v %v", l, err)
	}
	files := l.Files
	path := filepath.Join(t.TempDir(), "staged")
	url := up.FileURL(task.UpstreamHF, "org/m", "main", files[0].Name)
	if _, err := up.Download(ctx, url, path, files[0], nil); err == nil {
		t.Fatal("the first call survived four broken streams; it should have given up after three")
	}
	d, err := up.Download(ctx, url, path, files[0], nil)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if d.Reused == 0 || d.SHA256 != files[0].SHA256 {
		t.Fatalf("second call reused %d staged bytes, sha256 %s; want >0 and %s", d.Reused, d.SHA256, files[0].SHA256)
	}
	got, _ := os.ReadFile(path)
	if string(got) != string(content) {
		t.Fatal("the staged file differs from the upstream's")
	}
	var sent int64
	resumed := 0
	for _, r := range hub.Requests() {
		sent += r.Sent
		if r.Offset > 0 {
			resumed++
		}
	}
	if resumed < 4 || sent != int64(len(content)) {
		t.Fatalf("hub saw %d ranged requests and sent %d bytes; want ≥4 and exactly %d (nothing sent twice)", resumed, sent, len(content))
	}
}

func TestDownloadRefusesWrongChecksumAndBadToken(t *testing.T) {
	hub := testhub.New("tok")
	defer hub.Close()
	hub.Add("org/m", "main", "a.bin", []byte("weights"))
	ctx := context.Background()
	up := Upstream{HubURL: hub.URL(), Token: "tok"}
	path := filepath.Join(t.TempDir(), "staged")
	want := task.ModelFile{Name: "a.bin", Size: 7, SHA256: "00000000000000000000000000000000000000000000000000000000000000aa"}
	_, err := up.Download(ctx, up.FileURL(task.UpstreamHF, "org/m", "main", "a.bin"), path, want, nil)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Fatal("a file that failed its checksum stayed staged")
	}
	_, err = Upstream{HubURL: hub.URL(), Token: "wrong"}.List(ctx, task.UpstreamHF, "org/m", "main")
	if !errors.Is(err, task.ErrPermissionDenied) {
		t.Fatalf("bad token: err = %v, want PermissionDenied", err)
	}
	l, err := Upstream{HTTPURL: hub.URL(), Token: "tok"}.List(ctx, task.UpstreamHTTP, "org/m", "main")
	if err != nil || len(l.Files) != 1 || l.Files[0].Size != 7 || l.Commit != ListingDigest(l.Files) {
		t.Fatalf("plain HTTP manifest: %v %v", l, err)
	}
}

// An upstream that sends more bytes than it listed stages no byte past
// the listed size, and the download is refused.
func TestDownloadStopsAtTheListedSize(t *testing.T) {
	hub := testhub.New("")
	defer hub.Close()
	hub.Add("org/m", "main", "w.safetensors", []byte("twelve bytes"))
	hub.ServeInstead("org/m", "main", "w.safetensors", bytes.Repeat([]byte("x"), 1<<20), false)
	up := Upstream{HubURL: hub.URL()}
	path := filepath.Join(t.TempDir(), "staged")
	want := task.ModelFile{Name: "w.safetensors", Size: 12, SHA256: testhubSHA("twelve bytes")}
	_, err := up.Download(context.Background(), up.FileURL(task.UpstreamHF, "org/m", "main", want.Name), path, want, nil)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("an upstream sending 1 MiB for a 12-byte file: %v; want ErrChecksum", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("staged %v bytes (%v); want none kept", fi.Size(), err)
	}
}

// The revision resolves to a commit; a file added upstream later makes
// another commit, and the first one still serves its own files only.
func TestListResolvesACommit(t *testing.T) {
	hub := testhub.New("")
	defer hub.Close()
	hub.Add("org/m", "main", "w.safetensors", []byte("weights"))
	up := Upstream{HubURL: hub.URL()}
	ctx := context.Background()
	first, err := up.List(ctx, task.UpstreamHF, "org/m", "main")
	if err != nil || len(first.Commit) != 40 {
		t.Fatalf("List: %+v %v", first, err)
	}
	hub.Add("org/m", "main", "pytorch_model.bin", []byte{0x80, 0x02})
	second, err := up.List(ctx, task.UpstreamHF, "org/m", "main")
	if err != nil || second.Commit == first.Commit || len(second.Files) != 2 {
		t.Fatalf("after a file was added: %+v %v; want a new commit with 2 files", second, err)
	}
	at, err := up.List(ctx, task.UpstreamHF, "org/m", first.Commit)
	if err != nil || at.Commit != first.Commit || len(at.Files) != 1 {
		t.Fatalf("listing the first commit: %+v %v; want its one file", at, err)
	}
}

func testhubSHA(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
