package usage

import (
	"context"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestRowsSumPerDayTenantAndModel(t *testing.T) {
	u := func(p, c int64) task.Usage {
		return task.Usage{PromptTokens: p, CompletionTokens: c, TotalTokens: p + c}
	}
	rows := Rows([]Record{
		{Task: "b", Tenant: "demo", Model: "m", Day: "2026-12-04", Usage: u(1, 2)},
		{Task: "a", Tenant: "acme", Model: "m", Day: "2026-12-04", Usage: u(5, 5)},
		{Task: "c", Tenant: "demo", Model: "m", Day: "2026-12-04", Usage: u(10, 20)},
		{Task: "d", Tenant: "demo", Model: "m", Day: "2026-12-03", Usage: u(7, 0)},
	})
	want := []Row{
		{Day: "2026-12-03", Tenant: "demo", Model: "m", Tasks: 1, PromptTokens: 7, TotalTokens: 7},
		{Day: "2026-12-04", Tenant: "acme", Model: "m", Tasks: 1, PromptTokens: 5, CompletionTokens: 5, TotalTokens: 10},
		{Day: "2026-12-04", Tenant: "demo", Model: "m", Tasks: 2, PromptTokens: 11, CompletionTokens: 22, TotalTokens: 33},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, rows[i], want[i])
		}
	}
}

func TestReadRefusesBadRanges(t *testing.T) {
	now := time.Now()
	for name, c := range map[string]struct{ since, until time.Time }{
		"until before since": {now, now.AddDate(0, 0, -1)},
		"over a year":        {now.AddDate(0, 0, -MaxDays), now},
	} {
		if _, err := Read(context.Background(), nil, "demo", c.since, c.until); task.TypeOf(err) != task.InvalidInput {
			t.Errorf("%s: %v, want InvalidInput", name, err)
		}
	}
}

// A training attempt's record adds its seconds to its day's row, not a
// task: the task's own record counts it once.
func TestRowsAddTrainingSeconds(t *testing.T) {
	recs := []Record{
		{Task: "ft", Tenant: "demo", Model: "m", Day: "2026-12-04", Attempt: "a1x", TrainingSeconds: 30},
		{Task: "ft", Tenant: "demo", Model: "m", Day: "2026-12-04", Attempt: "a2y", TrainingSeconds: 12.5},
		{Task: "ft", Tenant: "demo", Model: "m", Day: "2026-12-04"},
	}
	rows := Rows(recs)
	if want := (Row{Day: "2026-12-04", Tenant: "demo", Model: "m", Tasks: 1, TrainingSeconds: 42.5}); len(rows) != 1 || rows[0] != want {
		t.Fatalf("rows %+v, want [%+v]", rows, want)
	}
	if got := TrainingSeconds(recs); got != 42.5 {
		t.Errorf("TrainingSeconds %g, want 42.5", got)
	}
}
