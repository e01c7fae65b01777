package integration

import (
	"os"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// TestResubmitRunsOnlyTheFailedItems fails some items with a 400, then
// resubmits the task with --failed once the model server is well: the new
// task runs exactly the failed items, and malformed lines, which would
// fail again unchanged, are skipped.
func TestResubmitRunsOnlyTheFailedItems(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	m := testmodel.New(testmodel.Options{Faults: testmodel.Faults{BadRequest: 0.3}, Seed: 11})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	startWorker(t, workerOptions{Model: m})

	in := writeBatch(t, "resub", 8) // auto-approved: at most 10 requests
	path := appendLines(t, in.path, `{"custom_id":"broken"`)
	id := newID("resub")
	submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", File: path})
	res := wait(t, ctx, id)
	failed := outputLines(t, download(t, ctx, res.Errors))
	if res.Counts.Failed < 2 || len(failed) != res.Counts.Failed {
		t.Fatalf("the 400s and the malformed line should fail: %+v", res.Counts)
	}

	m.SetFaults(testmodel.Faults{})
	again, err := suite.tasks.ResubmitFailed(ctx, id, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if again.Items != res.Counts.Failed-1 || again.Skipped != 1 {
		t.Fatalf("resubmit: %d items, %d skipped; want %d and 1 (the malformed line)", again.Items, again.Skipped, res.Counts.Failed-1)
	}
	res2 := wait(t, ctx, again.Task.ID)
	if res2.State != task.Completed || res2.Counts.Completed != again.Items || res2.Counts.Failed != 0 {
		t.Fatalf("resubmitted task: %+v", res2)
	}
	want := map[string]bool{}
	for _, ol := range failed {
		if ol.CustomID != "" && ol.CustomID != "broken" {
			want[ol.CustomID] = true
		}
	}
	for _, ol := range outputLines(t, download(t, ctx, res2.Output)) {
		if !want[ol.CustomID] {
			t.Errorf("%s did not fail the first time but ran again", ol.CustomID)
		}
		delete(want, ol.CustomID)
	}
	if len(want) > 0 {
		t.Errorf("failed items not resubmitted: %v", want)
	}
}

// appendLines adds lines to the end of a batch file and returns its path.
func appendLines(t *testing.T, path string, lines ...string) string {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
