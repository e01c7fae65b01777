package integration

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// TestLargeBatchRunsAsPiecesOnTwoNodes cuts a 300-request batch into three
// pieces, runs them on two nodes, and checks the merged output answers
// every line once, in input order.
func TestLargeBatchRunsAsPiecesOnTwoNodes(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	a := startWorker(t, workerOptions{PieceRequests: 100})
	b := startWorker(t, workerOptions{PieceRequests: 100})

	in := writeBatch(t, "piece", 300)
	id := newID("piece")
	submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", File: in.path})
	waitState(t, ctx, id, task.AwaitingApproval)
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: "bob"}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, ctx, id)
	if res.State != task.Completed || res.Counts != (task.Counts{Total: 300, Completed: 300}) {
		t.Fatalf("result: %+v", res)
	}
	st := status(t, ctx, id)
	if !strings.Contains(st.Node, a.node) || !strings.Contains(st.Node, b.node) {
		t.Errorf("three pieces on two nodes should use both; status says %q", st.Node)
	}
	if !slices.ContainsFunc(st.Audit, func(tr task.Transition) bool {
		return tr.To == task.Screened && strings.HasSuffix(tr.Reason, "in 3 pieces")
	}) {
		t.Errorf("screening should record 3 pieces: %+v", st.Audit)
	}
	out := outputLines(t, download(t, ctx, res.Output))
	if len(out) != 300 {
		t.Fatalf("output has %d lines, want 300", len(out))
	}
	for i, ol := range out {
		if ol.CustomID != in.ids[i] {
			t.Fatalf("line %d is %s, want %s: pieces merged out of order", i+1, ol.CustomID, in.ids[i])
		}
	}
	checkAnswers(t, out, in.bodies)
	// The tokens of the three pieces add up to those of the merged output.
	want := outputUsage(t, out)
	if want.TotalTokens == 0 || res.Usage != want || st.Usage != want {
		t.Errorf("usage: result %+v, status %+v; the output's sum is %+v", res.Usage, st.Usage, want)
	}
}
