package ops

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"

	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// browser is a headless Chromium driven over the DevTools protocol, with
// the flags that work on this machine and a fresh profile.
func browser(t *testing.T) context.Context {
	return testenv.Browser(t, "the Web UI test", 1600, 1000)
}

// page opens url and waits until the page's text holds every one of want,
// polling the DOM (the UI is a single-page app that fills in as its API
// calls return). It saves a screenshot named name in the test's folder
// either way, and returns the text.
func page(t *testing.T, ctx context.Context, shots, name, url string, want ...string) string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	var text string
	deadline := time.Now().Add(60 * time.Second)
	for {
		text, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			screenshot(t, ctx, shots, name)
			t.Fatalf("%s never showed %q; it shows:\n%.3000s", url, missing, text)
		}
		time.Sleep(300 * time.Millisecond)
	}
	screenshot(t, ctx, shots, name)
	return text
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// rowOf is the text of the list row that names workflowID.
func rowOf(text, workflowID string) string {
	for _, block := range strings.Split(text, "Select Workflow ") {
		if strings.HasPrefix(block, workflowID) {
			return block
		}
	}
	return ""
}

// The Temporal Web UI, in a real headless Chromium, as a reviewer reads
// it: in the list a rejected and a cancelled task are told apart from a
// completed one; no finished task's page shows a timer still open; a
// task's page shows its key facts and its audit trail.
func TestWebUIShowsOutcomesAndNoOpenTimers(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	bctx := browser(t)
	shots := filepath.Join(suite.Dir, "screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	// The UI here has no codec endpoint: run this test's tasks in the clear
	// so the pages can be read (the encryption test covers the codec).
	t.Setenv("AUTOGLM_CODEC_KEYS", "")
	startWorker(t)
	opts, err := config.TemporalOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tasks := &taskclient.Client{Temporal: tc, Store: suite.Store, Signer: suite.Signer}
	start := func(r taskclient.SubmitRequest) string {
		r.ID, r.Tenant, r.Submitter, r.Model = "ui-"+randHex(4), tenant, "alice", model
		if _, err := tasks.Submit(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	waitFor := func(id string, st task.State) {
		eventually(t, ctx, fmt.Sprintf("%s in %s", id, st), func() (bool, error) {
			s, err := tasks.Status(ctx, id)
			return err == nil && s.State == st, err
		})
	}
	completed := start(taskclient.SubmitRequest{Prompt: "Say hello"})
	rejected := start(taskclient.SubmitRequest{File: batchFile(t, 20, "Count to")})
	cancelled := start(taskclient.SubmitRequest{File: batchFile(t, 20, "Count to")})
	waitFor(rejected, task.AwaitingApproval)
	waitFor(cancelled, task.AwaitingApproval)
	if _, err := tasks.Decide(ctx, rejected, task.UpdateReject, task.DecisionRequest{Actor: "bob", Reason: "not this week"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tasks.Decide(ctx, cancelled, task.UpdateCancel, task.DecisionRequest{Actor: "alice", Reason: "superseded"}); err != nil {
		t.Fatal(err)
	}
	for id, st := range map[string]task.State{completed: task.Completed, rejected: task.Rejected, cancelled: task.Cancelled} {
		if res, err := tasks.Wait(ctx, id); err != nil || res.State != st {
			t.Fatalf("task %s: %+v, %v; want %s", id, res, err, st)
		}
	}

	ns := suite.Stack.UIURL + "/namespaces/" + suite.Stack.Namespace
	list := page(t, bctx, shots, "list", ns+"/workflows", task.WorkflowID(completed), task.WorkflowID(rejected), task.WorkflowID(cancelled))
	for id, want := range map[string]string{completed: "Completed", rejected: "Failed", cancelled: "Failed"} {
		row := rowOf(list, task.WorkflowID(id))
		if !strings.Contains(row, want) || (want != "Completed" && strings.Contains(row, "Completed")) {
			t.Errorf("the list's row of %s reads %q; want %s", id, row, want)
		}
	}

	closing := map[string]string{"completed": "Workflow Execution Completed", "rejected": "Workflow Execution Failed", "cancelled": "Workflow Execution Failed"}
	for name, id := range map[string]string{"completed": completed, "rejected": rejected, "cancelled": cancelled} {
		// The first and the last event: the whole history is on the page.
		text := page(t, bctx, shots, "task-"+name, ns+"/workflows/"+task.WorkflowID(id), "Workflow Execution Started", closing[name])
		started := strings.Count(text, "Timer Started")
		closed := strings.Count(text, "Timer Fired") + strings.Count(text, "Timer Canceled")
		if started != closed {
			t.Errorf("the %s task's page shows %d timer(s) started and %d fired or cancelled; want none left open", name, started, closed)
		}
		if name != "completed" && started == 0 {
			t.Errorf("the %s task's page shows no approval timer:\n%.2000s", name, text)
		}
		if name == "rejected" && !strings.Contains(text, "task REJECTED: not this week") {
			t.Errorf("the rejected task's page does not say why:\n%.2000s", text)
		}
		if !strings.Contains(text, "task of demo/alice on "+model) {
			t.Errorf("the %s task's page lacks its summary", name)
		}
	}

	// Where a reviewer looks: the rejected task's User Metadata tab holds
	// its key facts (static details) and its audit trail (current details).
	page(t, bctx, shots, "task-rejected-top", ns+"/workflows/"+task.WorkflowID(rejected), "User Metadata")
	clicked, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(() => {
		const tab = [...document.querySelectorAll('a, button, [role=tab]')].find(e => e.innerText.trim().startsWith('User Metadata'));
		if (tab) tab.click();
		return !!tab;
	})()`))
	if err != nil || !clicked {
		t.Fatalf("no User Metadata tab to click: %v", err)
	}
	meta := waitText(t, bctx, shots, "task-rejected-metadata", "Audit trail", "not this week", "AWAITING_APPROVAL", "autoglm approve "+rejected, "submitter")
	if strings.Contains(meta, "Count to") {
		t.Error("the task's metadata shows a prompt of its batch")
	}
}

// waitText waits, on the page already open, until its text holds every
// one of want, saves a screenshot, and returns the text. The UI renders
// markdown (summary, details, current details) in iframes of its own
// origin (/render), whose text is read too.
func waitText(t *testing.T, ctx context.Context, shots, name string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](
			`document.body.innerText + "\n" + [...document.querySelectorAll('iframe')].map(f => (f.contentDocument && f.contentDocument.body) ? f.contentDocument.body.innerText : '').join("\n")`))
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			screenshot(t, ctx, shots, name)
			return text
		}
		if time.Now().After(deadline) {
			screenshot(t, ctx, shots, name)
			frames, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('iframe')].map(f => f.outerHTML.slice(0, 600)).join("\n---\n")`))
			t.Fatalf("the page never showed %q; its frames: %s", missing, frames)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
