package server

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestPresignedResults: the results endpoint hands out URLs that fetch
// their own object, with the sha256 the task recorded, until they expire;
// the same signature on another key (the next object of the task, or
// another task's output) is refused by the bucket. The server under test
// here signs for 2 s; the test waits for the expiry as a condition.
func TestPresignedResults(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	short := *suite.api
	short.PresignTTL = 2 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: short.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	run := func() string {
		var sub server.Submitted
		must(t, ctx, http.StatusCreated, "alice", "POST", "/api/v1/tasks", batchFile(5, "presign"), &sub)
		eventually(t, ctx, "task "+sub.ID+" to complete", func() (bool, error) {
			code, body := call(t, ctx, "alice", "GET", "/api/v1/tasks/"+sub.ID+"/result?wait=10s", nil)
			return code == http.StatusOK && strings.Contains(string(body), string(task.Completed)), nil
		})
		return sub.ID
	}
	id, other := run(), run()

	get := func(url string) (int, []byte) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	results := func(id string) map[string]server.ResultFile {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/api/v1/tasks/"+id+"/results", nil)
		req.Header.Set("Authorization", "Bearer "+suite.keys["aldo"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Files []server.ResultFile }
		if resp.StatusCode != http.StatusOK || jsonDecode(resp.Body, &out) != nil {
			t.Fatalf("results of %s: %d", id, resp.StatusCode)
		}
		m := map[string]server.ResultFile{}
		for _, f := range out.Files {
			m[f.Name] = f
		}
		return m
	}
	files, others := results(id), results(other)
	out, ok := files["output.jsonl"]
	if !ok || files["input.jsonl"].URL == "" {
		t.Fatalf("results: %+v", files)
	}
	code, body := get(out.URL)
	sum := sha256.Sum256(body)
	if code != http.StatusOK || hex.EncodeToString(sum[:]) != out.SHA256 || strings.Count(string(body), "\n") != 5 {
		t.Fatalf("GET of the presigned output URL: %d, %d bytes, sha256 match %v", code, len(body), hex.EncodeToString(sum[:]) == out.SHA256)
	}
	for _, forged := range []string{
		strings.Replace(out.URL, "/output.jsonl?", "/input.jsonl?", 1),
		strings.Replace(out.URL, "/"+id+"/", "/"+other+"/", 1),
	} {
		if forged == out.URL {
			t.Fatalf("could not forge a URL from %s", out.URL)
		}
		if code, body := get(forged); code != http.StatusForbidden {
			t.Errorf("the signature on another key: %d %s, want 403", code, body)
		}
	}
	if others["output.jsonl"].URL == out.URL {
		t.Fatal("two tasks got the same URL")
	}
	eventually(t, ctx, "the presigned URL to expire", func() (bool, error) {
		code, body := get(out.URL)
		if code == http.StatusOK {
			return false, nil
		}
		if code != http.StatusForbidden || !strings.Contains(string(body), "expired") {
			t.Fatalf("after expiry: %d %s", code, body)
		}
		return true, nil
	})
}
