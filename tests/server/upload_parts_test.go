package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// cutOnce is a transport that loses the answer to the nth request for an
// upload's part: the part reached the server, the client never heard.
type cutOnce struct {
	n     int32
	seen  atomic.Int32
	parts atomic.Int32
}

func (c *cutOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && strings.HasSuffix(r.URL.Path, "/parts") {
		c.parts.Add(1)
		if c.seen.Add(1) == c.n {
			resp.Body.Close()
			return nil, errors.New("connection reset (test)")
		}
	}
	return resp, err
}

// TestLargeFilesGoUpInParts: the CLI's server client sends a batch file
// and an attachment larger than two parts through the Uploads API; a
// part whose answer is lost is sent again, and the task gets exactly the
// file: its input's size and category are the file's.
func TestLargeFilesGoUpInParts(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	dir := t.TempDir()
	var b bytes.Buffer
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, `{"custom_id":"parts-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"%s %d"}]}}`+"\n", i, strings.Repeat("long prompt ", 40), i)
	}
	file := filepath.Join(dir, "big.jsonl")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	att := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(att, bytes.Repeat([]byte("attachment line\n"), 300), 0o644); err != nil {
		t.Fatal(err)
	}
	cut := &cutOnce{n: 2}
	c := &apiclient.Client{BaseURL: suite.url, Key: suite.keys["dave"], HTTP: &http.Client{Transport: cut}, PartSize: 1024}
	sub, err := c.Submit(ctx, taskclient.SubmitRequest{File: file, Attach: []string{att}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := int32((b.Len()+1023)/1024 + (300*16+1023)/1024 + 1); cut.parts.Load() != want {
		t.Errorf("%d parts sent; want %d (every part once, and the lost one again)", cut.parts.Load(), want)
	}
	st := testenv.WaitState(t, ctx, suite.tasks, sub.ID, task.Completed)
	if st.Screening.Bytes != int64(b.Len()) || st.Progress.Completed != 8 {
		t.Errorf("the task read %d bytes and answered %d; the file has %d bytes and 8 requests", st.Screening.Bytes, st.Progress.Completed, b.Len())
	}
	var input *task.ObjectRef
	for i, a := range st.Artifacts {
		if strings.HasSuffix(a.Key, "/input.jsonl") {
			input = &st.Artifacts[i]
		}
	}
	var res struct{ Files []server.ResultFile }
	must(t, ctx, http.StatusOK, "dave", "GET", "/api/v1/tasks/"+sub.ID+"/results", nil, &res)
	var notes *server.ResultFile
	for i, f := range res.Files {
		if strings.HasSuffix(f.Name, "notes.txt") {
			notes = &res.Files[i]
		}
	}
	if input == nil || input.Size != int64(b.Len()) || input.Category != "data" {
		t.Errorf("the task's input: %+v; want %d bytes of data", input, b.Len())
	}
	if notes == nil || notes.Size != 300*16 {
		t.Errorf("the attachment: %+v in %+v", notes, res.Files)
	}
	// The same task as an OpenAI batch: its input file is the task's own,
	// its times are Unix times of today.
	var bt server.Batch
	must(t, ctx, http.StatusOK, "dave", "GET", "/v1/batches/"+server.BatchIDPrefix+sub.ID, nil, &bt)
	now := time.Now().Unix()
	if bt.CreatedAt < now-3600 || bt.ExpiresAt == nil || *bt.ExpiresAt != bt.CreatedAt+24*3600 {
		t.Errorf("batch times: created_at %d, expires_at %v", bt.CreatedAt, bt.ExpiresAt)
	}
	var in server.File
	must(t, ctx, http.StatusOK, "dave", "GET", "/v1/files/"+bt.InputFileID, nil, &in)
	if in.Bytes != int64(b.Len()) || in.Purpose != "batch" {
		t.Errorf("the batch's input file %+v; want %d bytes", in, b.Len())
	}
	if code, _ := call(t, ctx, "dave", "DELETE", "/v1/files/"+bt.InputFileID, nil); code != http.StatusBadRequest {
		t.Errorf("deleting a task's own input: %d", code)
	}
	rc, _, err := suite.Store.Get(context.Background(), input.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	_, _ = got.ReadFrom(rc)
	if got.String() != b.String() {
		t.Errorf("the task's input is not the file (%d bytes, want %d)", got.Len(), b.Len())
	}
}

// TestMessagesNameTheUsersFile: a file refused for what it holds is named
// as the user named it, whether it went up as a body or in parts, never
// as the server's temporary copy.
func TestMessagesNameTheUsersFile(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	png := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), bytes.Repeat([]byte{0, 1, 2, 3}, 1024)...)
	path := filepath.Join(t.TempDir(), "picture.jsonl")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, partSize := range []int64{0, 1024} {
		c := &apiclient.Client{BaseURL: suite.url, Key: suite.keys["dave"], HTTP: http.DefaultClient, PartSize: partSize}
		_, err := c.Submit(ctx, taskclient.SubmitRequest{File: path}, nil)
		if task.TypeOf(err) != task.InvalidInput || !strings.Contains(err.Error(), "picture.jsonl") || strings.Contains(err.Error(), "autoglm-server-") {
			t.Errorf("part size %d: %v", partSize, err)
		}
		t.Logf("part size %d: %v", partSize, err)
	}
}
