package model

import (
	"context"
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

	files, err := up.List(ctx, task.UpstreamHF, "org/m", "main")
	if err != nil || len(files) != 1 {
		t.Fatalf("List: %v %v", files, err)
	}
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
	files, err := Upstream{HTTPURL: hub.URL(), Token: "tok"}.List(ctx, task.UpstreamHTTP, "org/m", "main")
	if err != nil || len(files) != 1 || files[0].Size != 7 {
		t.Fatalf("plain HTTP manifest: %v %v", files, err)
	}
}
