package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// TestNoTaskIDSquattingNorOracle: attaching to an ID no task has yet
// reserves it for the one who attached; a colleague can neither attach to
// it nor submit under it, and writes no metadata there; its owner submits
// and the task carries only her file. A submit that fails before its task
// starts leaves the ID free for the retry. A user of another tenant who
// submits under an existing ID learns nothing of the task: the answer is
// the one for a reserved ID, without its state.
func TestNoTaskIDSquattingNorOracle(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	id := "squat-" + strings.ToLower(taskclient.NewID())
	attach := func(user, name, body string) (int, []byte) {
		return call(t, ctx, user, "POST", "/api/v1/tasks/"+id+"/attachments?name="+name, []byte(body))
	}
	if code, body := attach("alice", "spec.txt", "alice's spec\n"); code != http.StatusCreated {
		t.Fatalf("alice reserving %s: %d %s", id, code, body)
	}
	if code, body := attach("dave", "evil.txt", "dave's file\n"); code != http.StatusConflict || !strings.Contains(string(body), "not available") {
		t.Fatalf("dave attaching to alice's reserved ID: %d %s, want 409 not available", code, body)
	}
	prompt := func(user, id, model string, md map[string]string) (int, []byte) {
		return call(t, ctx, user, "POST", "/api/v1/tasks", server.SubmitRequest{ID: id, Model: model, Prompt: "review the attached spec", Metadata: md})
	}
	if code, body := prompt("dave", id, "glm-4-test", map[string]string{"owner": "dave"}); code != http.StatusConflict || !strings.Contains(string(body), "not available") {
		t.Fatalf("dave submitting under alice's reserved ID: %d %s, want 409 not available", code, body)
	}
	mdKey, _ := storage.Key(storage.Data, "demo", id, "metadata.json")
	if _, err := suite.Store.Stat(ctx, mdKey); err == nil {
		t.Fatal("dave's refused submit wrote the ID's metadata")
	}
	var sub server.Submitted
	must(t, ctx, http.StatusCreated, "alice", "POST", "/api/v1/tasks", server.SubmitRequest{ID: id, Model: "glm-4-test", Prompt: "review the attached spec", Metadata: map[string]string{"owner": "alice"}}, &sub)
	var atts []string
	for _, c := range storage.Categories {
		infos, err := suite.Store.List(ctx, storage.TaskPrefix(c, "demo", id)+taskclient.AttachmentsDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range infos {
			atts = append(atts, storage.NameOf(in.Key))
		}
	}
	if len(atts) != 1 || atts[0] != taskclient.AttachmentsDir+"spec.txt" {
		t.Fatalf("the task's attachments are %v, want alice's spec.txt only", atts)
	}

	// The same tenant's user learns the task exists; another tenant's
	// learns only that the ID is not available.
	if code, body := prompt("alice", id, "glm-4-test", nil); code != http.StatusConflict || !strings.Contains(string(body), "already exists") {
		t.Fatalf("alice submitting under her own task's ID: %d %s, want 409 already exists", code, body)
	}
	code, body := call(t, ctx, "zed", "POST", "/api/v1/tasks", server.SubmitRequest{ID: id, Tenant: "acme", Model: "glm-4-test", Prompt: "hello"})
	var e server.APIError
	_ = json.Unmarshal(body, &e)
	if code != http.StatusConflict || !strings.Contains(e.Error.Message, "not available") {
		t.Fatalf("zed submitting under demo's task ID: %d %s, want 409 not available", code, body)
	}
	for _, leak := range []string{"exists", "Running", "Completed", "AWAITING", "RUNNING", "COMPLETED", "SUBMITTED", "demo", "alice"} {
		if strings.Contains(e.Error.Message, leak) {
			t.Errorf("the answer to zed tells %q: %s", leak, e.Error.Message)
		}
	}
	if code, body := call(t, ctx, "zed", "POST", "/api/v1/tasks/"+id+"/attachments?name=x.txt&tenant=acme", []byte("x")); code != http.StatusNotFound {
		t.Errorf("zed attaching to demo's task: %d %s, want 404", code, body)
	}

	// A submit that fails before its task starts (a blank prompt) writes
	// metadata only after the ID was found free, and a retry under the
	// same ID succeeds.
	retry := "retry-" + strings.ToLower(taskclient.NewID())
	code, body = call(t, ctx, "alice", "POST", "/api/v1/tasks", server.SubmitRequest{ID: retry, Model: "glm-4-test", Prompt: "   ", Metadata: map[string]string{"try": "1"}})
	if code != http.StatusBadRequest {
		t.Fatalf("a submit with a blank prompt: %d %s, want 400", code, body)
	}
	must(t, ctx, http.StatusCreated, "alice", "POST", "/api/v1/tasks", server.SubmitRequest{ID: retry, Model: "glm-4-test", Prompt: "hello again", Metadata: map[string]string{"try": "2"}}, &sub)
	var st server.TaskStatus
	must(t, ctx, http.StatusOK, "alice", "GET", "/api/v1/tasks/"+retry, nil, &st)
	if st.Metadata["try"] != "2" {
		t.Fatalf("the retried task's metadata %v, want try=2", st.Metadata)
	}
}
