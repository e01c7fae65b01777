package workflows

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// logArchiveEnv is a test environment with the log archive's activities
// registered, to be mocked.
func logArchiveEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(LogArchiveWorkflow, workflow.RegisterOptions{Name: task.LogArchiveWorkflowType})
	env.RegisterActivity(&activities.Activities{})
	return env
}

// logListing answers ListOldTaskLogs from pages of task IDs, the cursor being
// the page number, and records the cutoffs it was asked for.
type logListing struct {
	mu      sync.Mutex
	pages   [][]string
	befores []time.Time
}

func (l *logListing) list(_ context.Context, in activities.ListOldTaskLogsInput) (activities.ListOldTaskLogsResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.befores = append(l.befores, in.Before)
	n := 0
	if in.After != "" {
		fmt.Sscanf(in.After, "page-%d", &n)
	}
	var res activities.ListOldTaskLogsResult
	for _, id := range l.pages[n] {
		res.Tasks = append(res.Tasks, activities.LogTask{Tenant: "acme", TaskID: id})
	}
	if n+1 < len(l.pages) {
		res.Next = fmt.Sprintf("page-%d", n+1)
	}
	return res, nil
}

func archivedChunks(chunks int) func(context.Context, activities.ArchiveTaskLogsInput) (activities.ArchiveTaskLogsResult, error) {
	return func(context.Context, activities.ArchiveTaskLogsInput) (activities.ArchiveTaskLogsResult, error) {
		return activities.ArchiveTaskLogsResult{Chunks: chunks, Bytes: int64(100 * chunks)}, nil
	}
}

func TestLogArchivePagesThroughTasks(t *testing.T) {
	env := logArchiveEnv(t)
	l := &logListing{pages: [][]string{{"t1", "t2", "t3"}, {}, {"t4"}}}
	env.OnActivity(a.ListOldTaskLogs, mock.Anything, mock.Anything).Return(l.list)
	var mu sync.Mutex
	var seen []string
	env.OnActivity(a.ArchiveTaskLogs, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ArchiveTaskLogsInput) (activities.ArchiveTaskLogsResult, error) {
			mu.Lock()
			seen = append(seen, in.TaskID)
			mu.Unlock()
			if in.TaskID == "t2" { // nothing old after all
				return activities.ArchiveTaskLogsResult{}, nil
			}
			return activities.ArchiveTaskLogsResult{Chunks: 2, Bytes: 200}, nil
		})
	now := time.Date(2026, 5, 20, 3, 0, 0, 0, time.UTC)
	env.ExecuteWorkflow(LogArchiveWorkflow, task.LogArchiveInput{Now: now})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res task.LogArchiveResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	want := task.LogArchiveResult{Tasks: 3, Chunks: 6, Bytes: 600, Runs: 1}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	if len(seen) != 4 {
		t.Errorf("archived tasks %v, want t1-t4 once each", seen)
	}
	cutoff := now.Add(-7 * 24 * time.Hour)
	for _, b := range l.befores {
		if !b.Equal(cutoff) {
			t.Errorf("listed with cutoff %s, want %s (Now - 7 days)", b, cutoff)
		}
	}
}

// Without Now, the cutoff is the workflow's own clock minus OlderThan.
func TestLogArchiveCutoffFromWorkflowClock(t *testing.T) {
	env := logArchiveEnv(t)
	start := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	env.SetStartTime(start)
	l := &logListing{pages: [][]string{{}}}
	env.OnActivity(a.ListOldTaskLogs, mock.Anything, mock.Anything).Return(l.list)
	env.ExecuteWorkflow(LogArchiveWorkflow, task.LogArchiveInput{OlderThan: 48 * time.Hour})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(l.befores) != 1 || !l.befores[0].Equal(start.Add(-48*time.Hour)) {
		t.Errorf("cutoffs %v, want %s", l.befores, start.Add(-48*time.Hour))
	}
}

// A failing task is retried with backoff (the test clock skips the waits),
// then counted as failed; the others are archived and the run completes.
func TestLogArchiveRetriesThenCountsFailure(t *testing.T) {
	env := logArchiveEnv(t)
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	env.SetStartTime(start)
	l := &logListing{pages: [][]string{{"flaky", "broken", "fine"}}}
	env.OnActivity(a.ListOldTaskLogs, mock.Anything, mock.Anything).Return(l.list)
	var mu sync.Mutex
	attempts := map[string]int{}
	env.OnActivity(a.ArchiveTaskLogs, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ArchiveTaskLogsInput) (activities.ArchiveTaskLogsResult, error) {
			mu.Lock()
			attempts[in.TaskID]++
			n := attempts[in.TaskID]
			mu.Unlock()
			switch {
			case in.TaskID == "broken", in.TaskID == "flaky" && n < 3:
				return activities.ArchiveTaskLogsResult{}, errors.New("bucket unavailable")
			}
			return activities.ArchiveTaskLogsResult{Chunks: 1, Bytes: 10}, nil
		})
	env.ExecuteWorkflow(LogArchiveWorkflow, task.LogArchiveInput{})
	end := env.Now()
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res task.LogArchiveResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Tasks != 2 || res.Failed != 1 || attempts["flaky"] != 3 || attempts["broken"] != 4 {
		t.Errorf("result %+v, attempts %v; want 2 archived, broken failed after 4 attempts, flaky on its 3rd", res, attempts)
	}
	// broken waited 5 + 10 + 20 s between its attempts: skipped, not slept.
	if waited := end.Sub(start); waited < 35*time.Second {
		t.Errorf("the workflow clock moved %s, want the 35 s of backoff skipped through", waited)
	}
}

// Past logArchivePagesPerRun pages a run continues as new, carrying its
// cutoff, its cursor and its counts.
func TestLogArchiveContinuesAsNew(t *testing.T) {
	env := logArchiveEnv(t)
	pages := make([][]string, logArchivePagesPerRun+5)
	for i := range pages {
		pages[i] = []string{fmt.Sprintf("t%02d", i)}
	}
	l := &logListing{pages: pages}
	env.OnActivity(a.ListOldTaskLogs, mock.Anything, mock.Anything).Return(l.list)
	env.OnActivity(a.ArchiveTaskLogs, mock.Anything, mock.Anything).Return(archivedChunks(1))
	now := time.Date(2026, 5, 20, 3, 0, 0, 0, time.UTC)
	env.ExecuteWorkflow(LogArchiveWorkflow, task.LogArchiveInput{Now: now, OlderThan: time.Hour})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	var next task.LogArchiveInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	want := task.LogArchiveInput{
		Now: now, OlderThan: time.Hour, After: fmt.Sprintf("page-%d", logArchivePagesPerRun),
		SoFar: task.LogArchiveResult{Tasks: logArchivePagesPerRun, Chunks: logArchivePagesPerRun, Bytes: 100 * logArchivePagesPerRun, Runs: 1},
	}
	if !next.Now.Equal(want.Now) || next.OlderThan != want.OlderThan || next.After != want.After || next.SoFar != want.SoFar {
		t.Errorf("continued with %+v, want %+v", next, want)
	}
}
