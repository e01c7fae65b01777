package activities

import (
	"context"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/audittrail"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// TestAuditTrailAcrossRunsAndTheReport, on a real MinIO: two runs of a
// task hand their audit trail to the bucket (KeepAudit) as they continue
// as new; the reference reads back the whole trail in order, a retried
// write gives the same object, and an object that is not the one the
// task wrote is refused. The report of the last run holds the whole
// trail, and the usage ledger counts the task, which ran.
func TestAuditTrailAcrossRunsAndTheReport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, store := startMinIO(t, ctx)
	a := &Activities{Store: store}
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	tr := func(to task.State, actor string) task.Transition {
		at = at.Add(time.Minute)
		return task.Transition{Time: at, To: to, Actor: actor}
	}
	run0 := []task.Transition{tr(task.Submitted, "alice"), tr(task.Authorized, "policy"), tr(task.AwaitingApproval, "screening")}
	run1 := []task.Transition{tr(task.AwaitingApproval, "bob")}
	run2 := []task.Transition{tr(task.Approved, "rita"), tr(task.Running, "dispatch"), tr(task.Completed, "autoglm")}

	e0, err := a.KeepAudit(ctx, KeepAuditInput{TaskID: "t1", Tenant: "acme", Run: 0, Transitions: run0})
	if err != nil {
		t.Fatal(err)
	}
	e1, err := a.KeepAudit(ctx, KeepAuditInput{TaskID: "t1", Tenant: "acme", Run: 1, Earlier: &e0, Transitions: run1})
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.KeepAudit(ctx, KeepAuditInput{TaskID: "t1", Tenant: "acme", Run: 1, Earlier: &e0, Transitions: run1})
	if err != nil || again != e1 {
		t.Errorf("a retried KeepAudit gave %+v (%v), the first %+v", again, err, e1)
	}
	if e1.Transitions != 4 {
		t.Errorf("the trail after two runs counts %d transitions, want 4", e1.Transitions)
	}
	got, err := audittrail.Read(ctx, store, &e1)
	if err != nil || len(got) != 4 || got[0].To != task.Submitted || got[3].Actor != "bob" {
		t.Fatalf("read back %+v (%v)", got, err)
	}
	forged := e1
	forged.Ref.SHA256 = e0.Ref.SHA256
	if _, err := audittrail.Read(ctx, store, &forged); err == nil {
		t.Errorf("a reference whose sha256 is not the object's was read")
	}

	st := task.Status{ID: "t1", Tenant: "acme", Model: "m", State: task.Completed, Audit: run2, EarlierAudit: &e1}
	res := task.Result{ID: "t1", State: task.Completed, Counts: task.Counts{Total: 1, Completed: 1}, Usage: task.Usage{PromptTokens: 3, TotalTokens: 3}}
	arch, err := a.Archive(ctx, ArchiveInput{Status: st, Result: res})
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := a.getJSON(ctx, arch.Report.Key, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Task.EarlierAudit != nil || len(rep.Task.Audit) != 7 || rep.Task.Audit[0].To != task.Submitted || rep.Task.Audit[6].To != task.Completed {
		t.Errorf("the report's audit trail: %+v (earlier %+v); want all 7 transitions", rep.Task.Audit, rep.Task.EarlierAudit)
	}
	recs, err := usage.Read(ctx, store, "acme", at, at)
	if err != nil || len(recs) != 1 || recs[0].Usage != res.Usage {
		t.Errorf("usage ledger %+v (%v); want the task's record", recs, err)
	}
}

// TestUsageLeavesOutTasksThatNeverRan, on a real MinIO: archiving a
// REJECTED task and one that expired awaiting approval writes no usage
// record, even with a result that claims answers; the report shows one
// row for the one task that ran.
func TestUsageLeavesOutTasksThatNeverRan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, store := startMinIO(t, ctx)
	a := &Activities{Store: store}
	day := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	waited := []task.Transition{{Time: day, To: task.Submitted, Actor: "alice"}, {Time: day, To: task.AwaitingApproval, Actor: "screening"}}
	claims := task.Result{Counts: task.Counts{Total: 2, Failed: 2}}
	for id, end := range map[string]task.Transition{
		"rejected": {Time: day, To: task.Rejected, Actor: "bob", Reason: "not today"},
		"expired":  {Time: day, To: task.Expired, Actor: "timer"},
	} {
		st := task.Status{ID: id, Tenant: "acme", Model: "m", State: end.To, Audit: append(append([]task.Transition(nil), waited...), end)}
		res := claims
		res.ID, res.State = id, end.To
		if _, err := a.Archive(ctx, ArchiveInput{Status: st, Result: res}); err != nil {
			t.Fatal(err)
		}
	}
	ran := task.Status{ID: "ran", Tenant: "acme", Model: "m", State: task.Completed, Audit: []task.Transition{
		{Time: day, To: task.Submitted, Actor: "alice"}, {Time: day, To: task.Running, Actor: "dispatch"}, {Time: day, To: task.Completed, Actor: "autoglm"},
	}}
	if _, err := a.Archive(ctx, ArchiveInput{Status: ran, Result: task.Result{ID: "ran", State: task.Completed, Counts: task.Counts{Total: 2, Failed: 2}}}); err != nil {
		t.Fatal(err)
	}
	recs, err := usage.Read(ctx, store, "acme", day, day)
	if err != nil {
		t.Fatal(err)
	}
	rows := usage.Rows(recs)
	if len(recs) != 1 || recs[0].Task != "ran" || len(rows) != 1 || rows[0].Tasks != 1 {
		t.Errorf("usage records %+v, rows %+v; want the one task that ran (all its items failed, 0 tokens)", recs, rows)
	}
}
