package server

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// actorOf is who last moved the task to state, by its audit trail.
func actorOf(st server.TaskStatus, state task.State) string {
	by := ""
	for _, tr := range st.Audit {
		if tr.To == state {
			by = tr.Actor
		}
	}
	return by
}

// uploadFile sends a batch file to POST /v1/files as user, as the OpenAI
// clients do (multipart/form-data, purpose=batch).
func uploadFile(t *testing.T, ctx context.Context, user string, content []byte) server.File {
	t.Helper()
	return uploadPurpose(t, ctx, user, "batch", content)
}

// uploadPurpose is uploadFile for a file of any purpose.
func uploadPurpose(t *testing.T, ctx context.Context, user, purpose string, content []byte) server.File {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("purpose", purpose)
	fw, _ := mw.CreateFormFile("file", "requests.jsonl")
	fw.Write(content)
	mw.Close()
	req, _ := http.NewRequestWithContext(ctx, "POST", suite.url+"/v1/files", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+suite.keys[user])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var f server.File
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("uploading a file as %s: %d", user, resp.StatusCode)
	}
	if err := jsonDecode(resp.Body, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTenantIsolation is the matrix of callers × endpoints: each role of
// tenant demo, zed of tenant acme, a made-up key and no key, against
// status, list, events, result, results, files, batches, cancel and
// approve. Every answer is what the role table says, a user of another
// tenant learns nothing (404, as for a task that does not exist), and no
// answer to zed names a task or file of demo.
func TestTenantIsolation(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	id := submitBatch(t, ctx, "alice", 12)
	file := uploadFile(t, ctx, "alice", batchFile(12, "iso"))
	var b server.Batch
	must(t, ctx, http.StatusOK, "alice", "POST", "/v1/batches", map[string]any{
		"input_file_id": file.ID, "endpoint": "/v1/chat/completions", "completion_window": "24h",
		"metadata": map[string]string{"phone": "+1-555-0100", "project": "iso"},
	}, &b)
	batchTask := strings.TrimPrefix(b.ID, "batch_")
	waitState(t, ctx, batchTask, "AWAITING_APPROVAL")

	const (
		ok      = http.StatusOK
		denied  = http.StatusForbidden
		hidden  = http.StatusNotFound
		noAuth  = http.StatusUnauthorized
		anyRole = "demo roles"
	)
	demo := []string{"alice", "dave", "bob", "olga", "carol", "aldo"}
	callers := append(append([]string{}, demo...), "zed", "made-up-key", "")
	reads := []struct{ method, path string }{
		{"GET", "/api/v1/tasks/" + id},
		{"GET", "/api/v1/tasks/" + id + "/changes?wait=1s"},
		{"GET", "/api/v1/tasks/" + id + "/result?wait=1s"},
		{"GET", "/api/v1/tasks/" + id + "/results"},
		{"GET", "/v1/files/" + file.ID},
		{"GET", "/v1/files/" + file.ID + "/content"},
		{"GET", "/v1/batches/" + b.ID},
	}
	crossReads := 0
	for _, r := range reads {
		for _, who := range callers {
			code, body := call(t, ctx, who, r.method, r.path, nil)
			want := ok
			switch {
			case who == "zed":
				want = hidden
			case who == "made-up-key" || who == "":
				want = noAuth
			case strings.Contains(r.path, "/result?"):
				want = http.StatusAccepted // still waiting for approval
			}
			if code != want {
				t.Errorf("%s %s as %q: %d %s; want %d", r.method, r.path, who, code, body, want)
			}
			if users[who] != "demo" && code < 300 {
				crossReads++
			}
			// An error echoes the ID the caller sent; anything else must
			// not name demo's tasks or content.
			if users[who] != "demo" && code < 300 && (strings.Contains(string(body), id) || strings.Contains(string(body), batchTask) || strings.Contains(string(body), "iso-1")) {
				t.Errorf("%s %s as %q named demo's task or content: %s", r.method, r.path, who, body)
				crossReads++
			}
		}
	}
	// list: every demo role sees the task; zed sees only acme; no key, nothing.
	for _, who := range callers {
		code, body := call(t, ctx, who, "GET", "/api/v1/tasks?limit=1000", nil)
		switch {
		case users[who] == "demo":
			if code != ok || !strings.Contains(string(body), id) {
				t.Errorf("list as %s: %d, task listed %v", who, code, strings.Contains(string(body), id))
			}
		case who == "zed":
			if code != ok || strings.Contains(string(body), id) || strings.Contains(string(body), `"demo"`) {
				t.Errorf("list as zed: %d %s", code, body)
				crossReads++
			}
		default:
			if code != noAuth {
				t.Errorf("list as %q: %d, want 401", who, code)
			}
		}
		code, body = call(t, ctx, who, "GET", "/v1/batches?limit=100", nil)
		if who == "zed" && (code != ok || strings.Contains(string(body), batchTask)) {
			t.Errorf("batches list as zed: %d %s", code, body)
			crossReads++
		}
		if users[who] == "demo" && (code != ok || !strings.Contains(string(body), batchTask)) {
			t.Errorf("batches list as %s: %d, batch listed %v", who, code, strings.Contains(string(body), batchTask))
		}
	}
	// To zed, demo's task is as absent as one that never existed.
	_, real := call(t, ctx, "zed", "GET", "/api/v1/tasks/"+id, nil)
	_, none := call(t, ctx, "zed", "GET", "/api/v1/tasks/"+id+"x", nil)
	if strings.Replace(string(none), id+"x", id, 1) != string(real) {
		t.Errorf("zed can tell demo's task from none: %s vs %s", real, none)
	}
	// zed asks for demo's tenant by name: refused, not listed.
	if code, _ := call(t, ctx, "zed", "GET", "/api/v1/tasks?tenant=demo", nil); code != denied {
		t.Errorf("zed listing tenant demo: %d, want 403", code)
	}

	// Field masking: the phone number is for admins only.
	for who, masked := range map[string]bool{"carol": false, "olga": true, "alice": true, "aldo": true} {
		var got server.Batch
		must(t, ctx, ok, who, "GET", "/v1/batches/"+b.ID, nil, &got)
		var st server.TaskStatus
		must(t, ctx, ok, who, "GET", "/api/v1/tasks/"+batchTask, nil, &st)
		for _, md := range []map[string]string{got.Metadata, st.Metadata} {
			if (md["phone"] == "***") != masked || md["project"] != "iso" {
				t.Errorf("metadata as %s: %v (phone masked: want %v)", who, md, masked)
			}
		}
	}

	// Actions refused by the role table leave the task as it is.
	refusals := []struct {
		path string
		who  string
		want int
	}{
		{"/api/v1/tasks/" + id + "/approve", "alice", denied}, // her own task
		{"/api/v1/tasks/" + id + "/approve", "dave", denied},
		{"/api/v1/tasks/" + id + "/approve", "olga", denied},
		{"/api/v1/tasks/" + id + "/approve", "aldo", denied},
		{"/api/v1/tasks/" + id + "/approve", "zed", hidden},
		{"/api/v1/tasks/" + id + "/approve", "", noAuth},
		{"/api/v1/tasks/" + id + "/cancel", "bob", denied},
		{"/api/v1/tasks/" + id + "/cancel", "dave", denied}, // not his task
		{"/api/v1/tasks/" + id + "/cancel", "aldo", denied},
		{"/api/v1/tasks/" + id + "/cancel", "zed", hidden},
		{"/api/v1/tasks/" + id + "/cancel", "", noAuth},
		{"/v1/batches/" + b.ID + "/cancel", "aldo", denied},
		{"/v1/batches/" + b.ID + "/cancel", "zed", hidden},
		{"/v1/batches/" + b.ID + "/cancel", "", noAuth},
	}
	for _, r := range refusals {
		if code, body := call(t, ctx, r.who, "POST", r.path, map[string]string{}); code != r.want {
			t.Errorf("POST %s as %q: %d %s; want %d", r.path, r.who, code, body, r.want)
		}
	}
	var st server.TaskStatus
	must(t, ctx, ok, "carol", "GET", "/api/v1/tasks/"+id, nil, &st)
	if st.State != "AWAITING_APPROVAL" || len(st.Approvals) != 0 || len(st.Audit) != 4 {
		t.Fatalf("refused actions changed the task: %s, approvals %v, %d audit entries", st.State, st.Approvals, len(st.Audit))
	}

	// Actions the role table allows, each on a task of its own.
	allowed := []struct{ action, who string }{
		{"approve", "bob"}, {"approve", "carol"},
		{"cancel", "carol"}, {"cancel", "olga"}, {"cancel", "alice"},
	}
	for _, a := range allowed {
		tid := submitBatch(t, ctx, "alice", 12)
		must(t, ctx, ok, a.who, "POST", "/api/v1/tasks/"+tid+"/"+a.action, map[string]string{"reason": "matrix"}, &st)
		want := task.Approved
		if a.action == "cancel" {
			want = task.Cancelled
			waitState(t, ctx, tid, want)
			must(t, ctx, ok, "carol", "GET", "/api/v1/tasks/"+tid, nil, &st)
		}
		if by := actorOf(st, want); by != a.who {
			t.Errorf("%s by %s: the audit trail says %s did it", a.action, a.who, by)
		}
	}
	must(t, ctx, ok, "olga", "POST", "/v1/batches/"+b.ID+"/cancel", nil, &b)
	if b.Status != "cancelling" && b.Status != "cancelled" {
		t.Errorf("batch after cancel: %s", b.Status)
	}
	if crossReads != 0 {
		t.Fatalf("%d cross-tenant reads", crossReads)
	}
	t.Logf("tenant isolation: %d callers x %d read endpoints, %d refused actions, 0 cross-tenant reads", len(callers), len(reads)+2, len(refusals))
}
