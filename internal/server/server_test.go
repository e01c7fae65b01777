package server

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestBatchStatus(t *testing.T) {
	cases := []struct {
		state      task.State
		cancelling bool
		want       string
	}{
		{task.Submitted, false, "validating"},
		{task.AwaitingApproval, false, "validating"}, // OpenAI has no "awaiting approval"
		{task.Approved, false, "validating"},
		{task.Running, false, "in_progress"},
		{task.Paused, false, "in_progress"},
		{task.Archiving, false, "finalizing"},
		{task.Completed, false, "completed"},
		{task.Rejected, false, "failed"},
		{task.Failed, false, "failed"},
		{task.Expired, false, "expired"},
		{task.Running, true, "cancelling"},
		{task.Cancelled, true, "cancelled"},
	}
	for _, c := range cases {
		if got := batchStatus(c.state, c.cancelling); got != c.want {
			t.Errorf("%s (cancelling %v): %s, want %s", c.state, c.cancelling, got, c.want)
		}
	}
}

func TestOwnKey(t *testing.T) {
	own, _ := storage.Key(storage.Data, "demo", "t1", "output.jsonl")
	other, _ := storage.Key(storage.Data, "demo", "t2", "output.jsonl")
	acme, _ := storage.Key(storage.Data, "acme", "t1", "output.jsonl")
	if !ownKey(own, "demo", "t1") || ownKey(other, "demo", "t1") || ownKey(acme, "demo", "t1") || ownKey("data/xx/demo/t1", "demo", "t1") {
		t.Fatal("ownKey lets a key of another task or tenant through")
	}
}

func TestHTTPStatus(t *testing.T) {
	for typ, want := range map[task.ErrorType]int{
		task.InvalidInput: 400, task.PermissionDenied: 403, task.NotFound: 404,
		task.WrongState: 409, task.Conflict: 409, task.QuotaExceeded: 429,
	} {
		if got := httpStatus(task.Errorf(typ, "x")); got != want {
			t.Errorf("%s: %d, want %d", typ, got, want)
		}
	}
	if got := httpStatus(errUnauthenticated); got != 401 {
		t.Errorf("unauthenticated: %d", got)
	}
	if got := httpStatus(errors.New("boom")); got != 500 {
		t.Errorf("untyped: %d", got)
	}
}

// TestAuthentication: only a key whose hash is in the policy gets in, in
// both APIs' error shapes; no header, a header of another scheme, or a
// made-up key is 401. No Temporal is needed to refuse them.
func TestAuthentication(t *testing.T) {
	key, entry, err := authz.NewAPIKey("alice", "demo", "")
	if err != nil {
		t.Fatal(err)
	}
	p := authz.Default()
	p.APIKeys = []authz.APIKey{entry}
	s := &Server{Policy: authz.Static(p)}
	h := s.Handler()
	for _, auth := range []string{"", "Basic " + key, "Bearer ", "Bearer agk_made-up", "Bearer " + key + "x"} {
		for _, path := range []string{"/api/v1/whoami", "/v1/batches"} {
			req := httptest.NewRequest("GET", path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s with %q: %d, want 401", path, auth, rec.Code)
			}
		}
	}
	req := httptest.NewRequest("GET", "/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !contains(rec.Body.String(), `"user":"alice"`) {
		t.Fatalf("whoami with alice's key: %d %s", rec.Code, rec.Body)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestNameFile: the spool file's path in a message becomes the user's
// name for the file, with the error's type kept; with no file, the
// message is as it was.
func TestNameFile(t *testing.T) {
	err := task.Errorf(task.InvalidInput, "/tmp/autoglm-server-1 is image/png")
	if got := nameFile(err, "/tmp/autoglm-server-1", "pic.jsonl"); got.Error() != "pic.jsonl is image/png" || task.TypeOf(got) != task.InvalidInput {
		t.Errorf("named: %v (%s)", got, task.TypeOf(got))
	}
	if got := nameFile(err, "", "the request's body"); got != err {
		t.Errorf("no file: %v", got)
	}
}
