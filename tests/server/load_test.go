package server

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
)

// patternReader is n bytes of one repeated byte, made as they are read:
// 200 bodies of 50 MiB cost the test no memory.
type patternReader struct {
	n int64
	b byte
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	for i := range b {
		b[i] = p.b
	}
	p.n -= int64(len(b))
	return len(b), nil
}

// memory is this process's resident set and its peak, in MiB, from
// /proc/self/status: the API server runs in this process.
func memory(t *testing.T) (rss, peak int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status to read the RSS from")
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb >> 10
		case "VmHWM:":
			peak = kb >> 10
		}
	}
	return rss, peak
}

// TestServerStaysUpUnderHostileLoad runs an API server of its own (the
// suite's Temporal, bucket and worker, a spool folder of its own, a small
// spool quota) and sends it a file upload form with 50 file parts, then
// at once 200 uploads of 50 MiB from four users and 1,000 long polls by
// one user on her task. Every answer is a clear status (2xx, 400, 429 with
// Retry-After, 507), the server still answers afterwards, its memory stays
// bounded (RSS printed), and no spool file is left.
func TestServerStaysUpUnderHostileLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test")
	}
	ctx := testCtx(t, 5*time.Minute)
	spool := t.TempDir()
	api := &server.Server{
		Tasks: suite.tasks, Policy: suite.api.Policy, TempDir: spool, Log: suite.api.Log,
		Limits: server.Limits{Uploads: 16, UploadsPerUser: 8, SpoolBytes: 256 << 20, SpoolBytesPerUser: 128 << 20, LongPollsPerUser: 16},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := api.HTTPServer()
	go hs.Serve(ln)
	defer hs.Close()
	root := "http://" + ln.Addr().String()
	// Uploads ask before they send (Expect: 100-continue), as a client of
	// big bodies should: a refusal then comes before the body.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1200, ExpectContinueTimeout: 30 * time.Second}}
	do := func(user, method, path, ct string, body io.Reader) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, method, root+path, body)
		if err != nil {
			return 0, "", err
		}
		if body != nil {
			req.Header.Set("Expect", "100-continue")
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		req.Header.Set("Authorization", "Bearer "+suite.keys[user])
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			return resp.StatusCode, string(b), fmt.Errorf("429 without Retry-After")
		}
		return resp.StatusCode, string(b), nil
	}

	id := submitBatch(t, ctx, "alice", 12) // awaits approval: nothing changes while polled
	rss0, _ := memory(t)

	type outcome struct {
		what string
		code int
		err  error
	}
	out := make(chan outcome, 1300)
	// First the form with 50 file parts, while the upload slots are free
	// (in the flood it would be refused for them, 429, before its parts).
	func() {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		_ = mw.WriteField("purpose", "batch")
		for j := range 50 {
			w, _ := mw.CreateFormFile("file", fmt.Sprintf("part-%d.jsonl", j))
			_, _ = io.Copy(w, &patternReader{n: 1 << 20, b: 'x'})
		}
		mw.Close()
		code, msg, err := do("dave", "POST", "/v1/files", mw.FormDataContentType(), &body)
		if err == nil && (code != http.StatusBadRequest || !strings.Contains(msg, "more than one file")) {
			err = fmt.Errorf("%d %s, want 400 naming the extra file", code, msg)
		}
		out <- outcome{"50-file form", code, err}
	}()
	var wg sync.WaitGroup
	uploaders := []string{"alice", "dave", "carol", "zed"}
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Zero bytes: a binary file, refused once spooled, so no task
			// starts from it.
			code, _, err := do(uploaders[i%len(uploaders)], "POST", "/api/v1/tasks?model=glm-4-test", "application/jsonl", &patternReader{n: 50 << 20})
			out <- outcome{"upload", code, err}
		}()
	}
	// Long polls for changes after now: each waits until its wait ends.
	after := time.Now().Add(time.Hour).UnixNano()
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, err := do("alice", "GET", fmt.Sprintf("/api/v1/tasks/%s/changes?after=%d&wait=5s", id, after), "", nil)
			out <- outcome{"long poll", code, err}
		}()
	}
	wg.Wait()
	close(out)

	counts := map[string]int{}
	for o := range out {
		key := fmt.Sprintf("%s %d", o.what, o.code)
		if o.err != nil {
			key = fmt.Sprintf("%s error", o.what)
			t.Logf("%s: %v", o.what, o.err)
		}
		counts[key]++
		switch {
		case o.err != nil:
		case o.what == "upload" && o.code != 400 && o.code != 429 && o.code != 507:
			t.Errorf("an upload answered %d", o.code)
		case o.what == "long poll" && o.code != 200 && o.code != 429:
			t.Errorf("a long poll answered %d", o.code)
		}
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("%-20s %d", k, counts[k])
	}
	if counts["long poll 429"] == 0 || counts["long poll 200"] == 0 || counts["upload 429"] == 0 || counts["upload 507"] == 0 {
		t.Errorf("want long polls both served and refused, uploads refused both for count (429) and room (507): %v", counts)
	}
	if n := counts["long poll error"] + counts["50-file form error"]; n > 0 {
		t.Errorf("%d long polls or forms got no clear answer", n)
	}
	// A client cut off mid-body may see the connection close before it
	// reads the answer the server wrote; the server's side is what counts.
	if n := counts["upload error"]; n > 20 {
		t.Errorf("%d of 200 uploads got no answer", n)
	}

	rss1, peak := memory(t)
	fmt.Printf("RSS of the test process (API server, worker, clients): before %d MiB, after %d MiB, peak %d MiB\n", rss0, rss1, peak)
	if peak-rss0 > 1024 {
		t.Errorf("the peak RSS grew %d MiB for 10 GB of uploads; the bodies are held in memory", peak-rss0)
	}
	if code, _, err := do("alice", "GET", "/api/v1/whoami", "", nil); err != nil || code != 200 {
		t.Fatalf("after the load: whoami %d, %v", code, err)
	}
	left, _ := filepath.Glob(filepath.Join(spool, "*"))
	if len(left) != 0 {
		t.Fatalf("spool files left behind: %v", left)
	}
}
