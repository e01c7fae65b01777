package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// mirrorParallel is how many files of one model are copied at once: a
// model is a few large weight files, and each already streams at link speed.
const mirrorParallel = 4

var mirror *activities.Mirror

// MirrorWorkflow copies a model revision from its upstream into
// models/<name>/<revision>/ in the bucket, one activity per file, then
// writes the revision's cache.meta. The files are the ones the input
// lists, at its commit (what screening recorded), or else the revision's
// listing at the commit it resolves to: never files the upstream added
// later. A file already there and verified is skipped, so running it
// again finishes what an earlier run left.
func MirrorWorkflow(ctx workflow.Context, in task.MirrorInput) (task.MirrorResult, error) {
	res := task.MirrorResult{Name: in.Name, Revision: in.Revision}
	if in.Upstream == "" {
		in.Upstream = task.UpstreamHF
	}
	listCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts: 5, NonRetryableErrorTypes: nonRetryable,
		},
	})
	list := activities.ListModelFilesResult{Commit: in.Commit, Files: in.Files}
	if len(in.Files) == 0 {
		if err := workflow.ExecuteActivity(listCtx, mirror.ListModelFiles, in).Get(ctx, &list); err != nil {
			return res, err
		}
		in.Commit = list.Commit
	}
	fileCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// A file can be tens of GiB; the heartbeat, not the overall
		// timeout, is what notices a stuck download.
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts: 10, NonRetryableErrorTypes: nonRetryable,
		},
	})
	for start := 0; start < len(list.Files); start += mirrorParallel {
		files := list.Files[start:min(start+mirrorParallel, len(list.Files))]
		futures := make([]workflow.Future, len(files))
		for i, f := range files {
			opts := workflow.GetActivityOptions(fileCtx)
			opts.Summary = fmt.Sprintf("copy %s (%d bytes)", f.Name, f.Size)
			futures[i] = workflow.ExecuteActivity(workflow.WithActivityOptions(fileCtx, opts), mirror.MirrorModelFile, activities.MirrorFileInput{Model: fileModel(in), File: f})
		}
		for _, fut := range futures {
			var r activities.MirrorFileResult
			if err := fut.Get(ctx, &r); err != nil {
				return res, err
			}
			res.Files++
			res.Bytes += r.Size
			if r.Skipped {
				res.Skipped++
			}
		}
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("copied %d of %d files of %s@%s", res.Files, len(list.Files), in.Name, in.Revision))
	}
	meta := activities.WriteModelMetaInput{Model: fileModel(in), Files: list.Files, FetchedAt: workflow.Now(ctx).UTC()}
	err := workflow.ExecuteActivity(listCtx, mirror.WriteModelMeta, meta).Get(ctx, &res.Meta)
	return res, err
}

// fileModel is the model as each file's activity needs it: without the
// list of files, which would make every input as large as all of them.
func fileModel(in task.MirrorInput) task.MirrorInput {
	in.Files = nil
	return in
}
