package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Tuning of LogArchiveWorkflow.
const (
	// logArchiveTasksPerPage is how many tasks one listing returns.
	logArchiveTasksPerPage = 100
	// logArchiveParallel is how many tasks are archived at once.
	logArchiveParallel = 8
	// logArchivePagesPerRun bounds a run's history (about 10 events per
	// task): past it, or when the server suggests it, the run continues
	// as new from where it got.
	logArchivePagesPerRun = 10
)

// LogArchiveWorkflow packs the task logs older than in.OlderThan (7 days)
// into the archive category, one gzip'd tar per task and day, and removes
// the original chunks. A Temporal Schedule starts it (see
// taskclient.InstallLogArchiveSchedule). It walks the log folder a page of
// tasks at a time and continues as new when its history grows, keeping the
// cutoff of its first run. A task whose logs cannot be archived is counted
// in Failed and left for the next run; the run itself still completes.
func LogArchiveWorkflow(ctx workflow.Context, in task.LogArchiveInput) (task.LogArchiveResult, error) {
	if in.Now.IsZero() {
		in.Now = workflow.Now(ctx).UTC()
	}
	if in.OlderThan <= 0 {
		in.OlderThan = task.DefaultLogArchiveAge
	}
	before := in.Now.Add(-in.OlderThan)
	res := in.SoFar
	res.Runs++
	log := workflow.GetLogger(ctx)

	listCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		Summary:             "list task logs older than " + before.Format(time.RFC3339),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts: 5, NonRetryableErrorTypes: nonRetryable,
		},
	})
	archiveCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: 2 * time.Minute,
			MaximumAttempts: 4, NonRetryableErrorTypes: nonRetryable,
		},
	})

	after := in.After
	for pages := 1; ; pages++ {
		var page activities.ListOldTaskLogsResult
		err := workflow.ExecuteActivity(listCtx, a.ListOldTaskLogs, activities.ListOldTaskLogsInput{
			After: after, Before: before, Limit: logArchiveTasksPerPage,
		}).Get(ctx, &page)
		if err != nil {
			return res, err
		}
		archiveTasks(ctx, archiveCtx, page.Tasks, before, &res)
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("archived the logs of %d task(s), %d chunk(s); %d failed", res.Tasks, res.Chunks, res.Failed))
		if page.Next == "" {
			log.Info("task logs archived", "tasks", res.Tasks, "chunks", res.Chunks, "bytes", res.Bytes, "failed", res.Failed, "runs", res.Runs)
			return res, nil
		}
		after = page.Next
		if pages >= logArchivePagesPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			next := task.LogArchiveInput{Now: in.Now, OlderThan: in.OlderThan, After: after, SoFar: res}
			return res, workflow.NewContinueAsNewError(ctx, LogArchiveWorkflow, next)
		}
	}
}

// archiveTasks archives the tasks' logs, logArchiveParallel at a time, in
// the order listed, and adds up what was done.
func archiveTasks(ctx, actx workflow.Context, tasks []activities.LogTask, before time.Time, res *task.LogArchiveResult) {
	for start := 0; start < len(tasks); start += logArchiveParallel {
		batch := tasks[start:min(start+logArchiveParallel, len(tasks))]
		futures := make([]workflow.Future, len(batch))
		for i, t := range batch {
			opts := workflow.GetActivityOptions(actx)
			opts.Summary = fmt.Sprintf("archive the logs of task %s/%s", t.Tenant, t.TaskID)
			futures[i] = workflow.ExecuteActivity(workflow.WithActivityOptions(actx, opts), a.ArchiveTaskLogs, activities.ArchiveTaskLogsInput{
				Tenant: t.Tenant, TaskID: t.TaskID, Before: before,
			})
		}
		for i, f := range futures {
			var r activities.ArchiveTaskLogsResult
			if err := f.Get(ctx, &r); err != nil {
				workflow.GetLogger(ctx).Warn("task logs not archived; the next run tries again",
					"tenant", batch[i].Tenant, "task_id", batch[i].TaskID, "error", err)
				res.Failed++
				continue
			}
			if r.Chunks > 0 {
				res.Tasks++
			}
			res.Chunks += r.Chunks
			res.Bytes += r.Bytes
		}
	}
}
