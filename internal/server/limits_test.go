package server

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
)

// testServer is a server with one tenant and a key per user, its spool
// in a folder of the test's own; no Temporal or bucket: the routes tested
// here refuse before they would reach either.
func testServer(t *testing.T, l Limits) (*Server, http.Handler, map[string]string) {
	t.Helper()
	keys := map[string]string{}
	yaml := "tenants:\n  acme:\n    models: [glm-4]\n    users: {alice: [submitter], bob: [submitter], olga: [admin]}\napi_keys:\n"
	for _, u := range []string{"alice", "bob", "olga"} {
		key, k, err := authz.NewAPIKey(u, "acme", u)
		if err != nil {
			t.Fatal(err)
		}
		keys[u] = key
		yaml += fmt.Sprintf("  - {sha256: %s, user: %s, tenant: %s}\n", k.SHA256, u, "acme")
	}
	p, err := authz.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Policy: authz.Static(p), TempDir: t.TempDir(), Limits: l}
	return s, s.Handler(), keys
}

func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A multipart upload with 50 file parts is refused at the second, and
// leaves nothing in the spool folder; nor does one over the size cap.
func TestUploadFormWithManyFilesIsRefusedAndLeavesNothing(t *testing.T) {
	s, h, keys := testServer(t, Limits{})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("purpose", "batch")
	for i := range 50 {
		w, _ := mw.CreateFormFile("file", fmt.Sprintf("part-%d.jsonl", i))
		_, _ = w.Write(bytes.Repeat([]byte("x"), 64<<10))
	}
	mw.Close()
	req := httptest.NewRequest("POST", "/v1/files", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+keys["alice"])
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "more than one file") {
		t.Fatalf("50 file parts: %d %s, want 400 naming the extra file", rec.Code, rec.Body)
	}
	if left := spoolFiles(t, s.TempDir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if u, all := s.limits.spooled.held("alice"); u != 0 || all != 0 {
		t.Fatalf("spool budget still holds %d bytes of alice's, %d in all", u, all)
	}
}

// The spool budget: a body that would pass the user's share is cut off
// with 507 and removed; while one user's upload holds the server's whole
// budget another's is refused with 507; past the upload count, 429 with
// Retry-After.
func TestSpoolCaps(t *testing.T) {
	s, h, keys := testServer(t, Limits{SpoolBytes: 3 << 20, SpoolBytesPerUser: 2 << 20, UploadsPerUser: 1, Uploads: 2})
	submit := func(user string, body io.Reader) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", APIPrefix+"/tasks?model=glm-4", body)
		req.Header.Set("Content-Type", "application/jsonl")
		req.Header.Set("Authorization", "Bearer "+keys[user])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	rec := submit("alice", bytes.NewReader(bytes.Repeat([]byte("x"), 3<<20)))
	if rec.Code != http.StatusInsufficientStorage || !strings.Contains(rec.Body.String(), "InsufficientStorage") {
		t.Fatalf("a body over alice's share: %d %s, want 507", rec.Code, rec.Body)
	}
	if left := spoolFiles(t, s.TempDir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}

	// alice holds 2 MiB (her share) in an upload that has not ended.
	pr, pw := io.Pipe()
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- submit("alice", io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("x"), 2<<20)), pr)) }()
	for u, _ := s.limits.spooled.held("alice"); u != 2<<20; u, _ = s.limits.spooled.held("alice") {
		runtime.Gosched()
	}
	if rec := submit("alice", strings.NewReader("{}\n")); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("alice's second upload at once: %d %s, want 429 with Retry-After", rec.Code, rec.Body)
	}
	if rec := submit("bob", bytes.NewReader(bytes.Repeat([]byte("x"), 2<<20))); rec.Code != http.StatusInsufficientStorage {
		t.Errorf("bob's 2 MiB while alice holds 2 of the 3: %d %s, want 507", rec.Code, rec.Body)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF) // alice's client goes away
	if rec := <-done; rec.Code != http.StatusBadRequest {
		t.Errorf("alice's broken upload: %d %s, want 400", rec.Code, rec.Body)
	}
	if left := spoolFiles(t, s.TempDir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	for _, u := range []string{"alice", "bob"} {
		if n, all := s.limits.spooled.held(u); n != 0 || all != 0 {
			t.Errorf("the budget still holds %d bytes of %s's, %d in all", n, u, all)
		}
		if n, all := s.limits.uploads.held(u); n != 0 || all != 0 {
			t.Errorf("%d uploads of %s's still counted, %d in all", n, u, all)
		}
	}
}

// Long polls past a user's cap are refused with 429 before anything is
// asked of Temporal; another user is not affected.
func TestLongPollCap(t *testing.T) {
	s, h, keys := testServer(t, Limits{LongPollsPerUser: 2})
	var releases []func()
	for range 2 {
		r, err := s.limits.startLongPoll("alice")
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	for _, path := range []string{"/tasks/t1/changes", "/tasks/t1/result"} {
		req := httptest.NewRequest("GET", APIPrefix+path, nil)
		req.Header.Set("Authorization", "Bearer "+keys["alice"])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s past the cap: %d %s, want 429", path, rec.Code, rec.Body)
		}
	}
	if _, err := s.limits.startLongPoll("bob"); err != nil {
		t.Errorf("bob refused for alice's polls: %v", err)
	}
	for _, r := range releases {
		r()
	}
	if _, err := s.limits.startLongPoll("alice"); err != nil {
		t.Errorf("alice refused after hers ended: %v", err)
	}
}

// /metrics answers only a user who may read every tenant.
func TestMetricsNeedAKey(t *testing.T) {
	s, _, keys := testServer(t, Limits{})
	s.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("autoglm_up 1\n")) })
	h := s.Handler()
	for who, want := range map[string]int{"": 401, "alice": 403, "olga": 200} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		if who != "" {
			req.Header.Set("Authorization", "Bearer "+keys[who])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%q: %d, want %d", who, rec.Code, want)
		}
	}
}

// The long poll's first path sends a client on to /changes, with its
// query, and a client that follows it reaches the long poll (here: its
// cap, which answers before anything is asked of Temporal).
func TestEventsPathRedirectsToChanges(t *testing.T) {
	s, h, keys := testServer(t, Limits{LongPollsPerUser: 1})
	req := httptest.NewRequest("GET", APIPrefix+"/tasks/t1/events?after=3&wait=1s", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if want := APIPrefix + "/tasks/t1/changes?after=3&wait=1s"; rec.Code != http.StatusPermanentRedirect || rec.Header().Get("Location") != want {
		t.Fatalf("GET …/events: %d to %q; want 308 to %q", rec.Code, rec.Header().Get("Location"), want)
	}
	release, err := s.limits.startLongPoll("alice")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	srv := httptest.NewServer(h)
	defer srv.Close()
	get, _ := http.NewRequest("GET", srv.URL+APIPrefix+"/tasks/t1/events?after=3", nil)
	get.Header.Set("Authorization", "Bearer "+keys["alice"])
	resp, err := http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Request.URL.Path != APIPrefix+"/tasks/t1/changes" {
		t.Errorf("followed: %d at %s; want the long poll's 429 at …/changes", resp.StatusCode, resp.Request.URL.Path)
	}
}
