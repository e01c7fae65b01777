package console

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// TestReviewerApprovesFromInbox: bob, a reviewer signed in through the
// identity provider (authorization code with PKCE), finds alice's batch
// in his inbox with its screening findings; Reject will not go without a
// reason; he approves from the keyboard, and the task moves on with his
// approval in its status. alice, its submitter, gets no decision buttons.
func TestReviewerApprovesFromInbox(t *testing.T) {
	ctx := testenv.Context(t, 4*time.Minute)
	root := newBrowser(t)
	id := submitBatch(t, ctx, "alice", 12, "inbox")

	bob := openTab(t, root, "bob")
	bob.signInWithOIDC(ctx, "bob")
	text := bob.open(ctx, "/console/inbox", "Approval inbox", id, "Screening findings", "submitted by alice")
	if !strings.Contains(text, "13 requests") {
		t.Errorf("the inbox does not show the screening's request count:\n%s", text)
	}
	bob.shot("approval-inbox")

	// Reject with no reason: the browser does not send the form.
	bob.do("pressing Reject with no reason", chromedp.Click(css(`form[action="/console/tasks/%s/reject"] button`, id)))
	if v := bob.eval(`document.getElementById("reject-` + id + `").validity.valueMissing ? "missing" : "given"`); v != "missing" {
		t.Errorf("Reject without a reason: the reason is %s", v)
	}
	if st, err := suite.tasks.Status(ctx, id); err != nil || st.State != task.AwaitingApproval {
		t.Fatalf("after Reject with no reason the task is %s (%v)", st.State, err)
	}

	bob.do("approving from the keyboard",
		chromedp.Focus(css("#approve-%s", id)),
		chromedp.SendKeys(css("#approve-%s", id), "checked the prompts\r"))
	bob.waitText(ctx, "Approved "+id)
	st := testenv.WaitState(t, ctx, suite.tasks, id, task.Completed)
	if len(st.Approvals) != 1 || st.Approvals[0].Actor != "bob" || st.Approvals[0].Reason != "checked the prompts" {
		t.Errorf("approvals %+v, want bob's with his reason", st.Approvals)
	}

	// The submitter sees her task in no inbox and with no decision forms.
	id2 := submitBatch(t, ctx, "alice", 12, "own")
	alice := openTab(t, root, "alice")
	alice.signInWithKey(ctx, "alice")
	if text := alice.open(ctx, "/console/tasks/"+id2, id2, "awaiting approval"); strings.Contains(text, "Approve") {
		t.Errorf("alice's own task offers her a decision:\n%s", text)
	}
	if n := alice.eval(`String(document.querySelectorAll('a[href="/console/inbox"]').length)`); n != "0" {
		t.Errorf("alice, a submitter, has an inbox link")
	}
	var rej server.TaskStatus
	api(t, ctx, http.StatusOK, "rita", "POST", "/api/v1/tasks/"+id2+"/reject", []byte(`{"reason":"not today"}`), "application/json", &rej)
}

// TestMemberWatchesProgressAndDownloads: alice opens her batch's page
// while it awaits approval; without reloading, the page follows it to
// COMPLETED with its counts, renders the first answers and the failed
// line, and its download link brings output.jsonl through a presigned URL.
func TestMemberWatchesProgressAndDownloads(t *testing.T) {
	ctx := testenv.Context(t, 4*time.Minute)
	root := newBrowser(t)
	id := submitBatch(t, ctx, "alice", 12, "watch")

	alice := openTab(t, root, "alice")
	alice.signInWithKey(ctx, "alice")
	list := alice.open(ctx, "/console/", id)
	row := alice.eval(`document.querySelector('tr[data-task="` + id + `"]').innerText`)
	for _, want := range []string{"AWAITING APPROVAL", "alice", "glm-4-test", "demo"} {
		if !strings.Contains(strings.ToUpper(row), strings.ToUpper(want)) {
			t.Errorf("the list's row of %s lacks %q: %q", id, want, row)
		}
	}
	_ = list
	// From the list to the task's page with the keyboard alone.
	alice.do("opening the task from the keyboard", chromedp.Focus(css(`tr[data-task="%s"] a`, id)), chromedp.KeyEvent("\r"))
	alice.waitText(ctx, "Audit trail", "awaiting approval")
	// A mark that a reload would wipe: the page must change without one.
	alice.eval(`window.stillHere = "yes"`)

	var st server.TaskStatus
	api(t, ctx, http.StatusOK, "rita", "POST", "/api/v1/tasks/"+id+"/approve", []byte(`{"reason":"fine"}`), "application/json", &st)
	text := alice.waitText(ctx, "completed", "13 of 13 answered", "12 completed", "1 failed", "output.jsonl", "First answers", "test model answer to: say 1")
	if alice.eval(`window.stillHere || "reloaded"`) != "yes" {
		t.Errorf("the task page reloaded instead of updating in place")
	}
	for _, want := range []string{"approved by rita", "malformed_line", "errors.jsonl", "Errors of single requests"} {
		if !strings.Contains(text, want) {
			t.Errorf("the task page lacks %q:\n%s", want, text)
		}
	}
	alice.shot("task-page")

	alice.do("downloading output.jsonl", chromedp.Click(css(`a[href="/console/tasks/%s/files/output.jsonl"]`, id)))
	out := alice.downloaded(ctx, "output.jsonl")
	if n := strings.Count(out, "\n"); n != 12 || !strings.Contains(out, `"custom_id":"watch-12"`) {
		t.Errorf("the downloaded output.jsonl has %d lines:\n%.500s", n, out)
	}

	list = alice.open(ctx, "/console/", id)
	row = alice.eval(`document.querySelector('tr[data-task="` + id + `"]').innerText`)
	for _, want := range []string{"COMPLETED", "13 / 13", "7.7%"} {
		if !strings.Contains(strings.ToUpper(row), want) {
			t.Errorf("the list's row of the finished %s lacks %q: %q", id, want, row)
		}
	}
	alice.shot("task-list")
}

// TestOtherTenantSeesNothing: zed, of tenant acme, sees none of demo's
// tasks in his list, and a demo task's page, its download and its
// decision are "not found" to him, as the API answers.
func TestOtherTenantSeesNothing(t *testing.T) {
	ctx := testenv.Context(t, 3*time.Minute)
	root := newBrowser(t)
	id := submitBatch(t, ctx, "alice", 12, "acme")

	zed := openTab(t, root, "zed")
	zed.signInWithKey(ctx, "zed")
	if text := zed.open(ctx, "/console/", "Tasks"); strings.Contains(text, id) || strings.Contains(text, "alice") {
		t.Errorf("zed's task list shows demo's task:\n%s", text)
	}
	if text := zed.open(ctx, "/console/tasks/"+id, "Not found"); strings.Contains(text, "alice") || strings.Contains(text, "Audit trail") {
		t.Errorf("zed's view of demo's task:\n%s", text)
	}
	if text := zed.open(ctx, "/console/inbox", "Approval inbox"); strings.Contains(text, id) {
		t.Errorf("zed's inbox shows demo's task:\n%s", text)
	}
	zed.open(ctx, "/console/tasks/"+id+"/files/output.jsonl", "Not found")
	// A forged form post from zed's own session goes through the API too.
	zed.open(ctx, "/console/inbox", "Approval inbox")
	zed.eval(`(() => { const f = document.createElement("form"); f.method = "post"; f.action = "/console/tasks/` + id + `/approve"; document.body.append(f); f.submit(); return "sent"; })()`)
	zed.waitText(ctx, "Not found")
	if st, err := suite.tasks.Status(ctx, id); err != nil || st.State != task.AwaitingApproval || len(st.Approvals) != 0 {
		t.Errorf("after zed's post the task is %s with approvals %+v (%v)", st.State, st.Approvals, err)
	}
	api(t, ctx, http.StatusOK, "bob", "POST", "/api/v1/tasks/"+id+"/reject", []byte(`{"reason":"test over"}`), "application/json", nil)
}

// TestSignedOutSeesNothing: a browser that never signed in, or signed
// out, is shown the sign-in page for every page, and nothing of a task.
func TestSignedOutSeesNothing(t *testing.T) {
	ctx := testenv.Context(t, 3*time.Minute)
	root := newBrowser(t)
	id := submitBatch(t, ctx, "alice", 12, "out")
	anon := openTab(t, root, "anonymous")
	for _, path := range []string{"/console/", "/console/tasks/" + id, "/console/inbox", "/console/usage", "/console/fleet", "/console/tasks/" + id + "/files/output.jsonl"} {
		text := anon.open(ctx, path, "Sign in", "API key")
		if strings.Contains(text, id) || strings.Contains(text, "alice") {
			t.Errorf("signed out, %s shows:\n%s", path, text)
		}
	}
	if got := anon.eval(`document.cookie`); got != "" {
		t.Errorf("cookies a script can read: %q", got)
	}

	alice := openTab(t, root, "alice")
	alice.signInWithKey(ctx, "alice")
	alice.open(ctx, "/console/", id)
	if got := alice.eval(`document.cookie`); got != "" {
		t.Errorf("signed in, a script reads the cookies %q", got)
	}
	if html := alice.eval(`document.documentElement.outerHTML`); strings.Contains(html, suite.keys["alice"]) {
		t.Errorf("the page holds alice's key")
	}
	alice.do("signing out", chromedp.Click(chromedp.CSS(`form[action="/console/logout"] button`)))
	alice.waitText(ctx, "API key")
	if text := alice.open(ctx, "/console/tasks/"+id, "Sign in"); strings.Contains(text, "Audit trail") {
		t.Errorf("after signing out, the task page shows:\n%s", text)
	}
	api(t, ctx, http.StatusOK, "bob", "POST", "/api/v1/tasks/"+id+"/reject", []byte(`{"reason":"test over"}`), "application/json", nil)
}

// TestFleetPageFollowsRoles: olga, an operator, sees the fleet's node; a
// submitter has no fleet link, and the page tells her the API refused.
func TestFleetPageFollowsRoles(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	root := newBrowser(t)
	olga := openTab(t, root, "olga")
	olga.signInWithKey(ctx, "olga")
	olga.open(ctx, "/console/fleet", node, "glm-4-test", "alive")

	alice := openTab(t, root, "alice")
	alice.signInWithKey(ctx, "alice")
	links := alice.eval(`Array.from(document.querySelectorAll("nav a")).map(a => a.textContent).join(",")`)
	if slices.Contains(strings.Split(links, ","), "Fleet") {
		t.Errorf("alice's navigation: %s", links)
	}
	if text := alice.open(ctx, "/console/fleet", "Fleet"); strings.Contains(text, node) {
		t.Errorf("alice sees the fleet:\n%s", text)
	}
}
