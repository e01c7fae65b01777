package activities

import (
	"cmp"
	"context"
	"fmt"
	"io"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// checkSource refuses a source that is not the task's own object in this
// worker's bucket. Any Temporal client can start a TaskWorkflow, so the
// worker, not the caller, decides what a task may read.
func (a *Activities) checkSource(tenant, taskID string, ref task.ObjectRef) error {
	if ref.Bucket != "" && ref.Bucket != a.Store.Bucket() {
		return task.Errorf(task.PermissionDenied, "the task's input is in bucket %s; a task reads only from %s", ref.Bucket, a.Store.Bucket())
	}
	return storage.CheckOwnKey(tenant, taskID, ref.Key)
}

// pin records in ref the version of the object info describes.
func pin(ref task.ObjectRef, info storage.Info) task.ObjectRef {
	if info.VersionID != "null" {
		ref.VersionID = info.VersionID
	}
	ref.ETag = info.ETag
	return ref
}

// openPinned reads ref from offset, and only the version pinned in it:
// the content screening counted and a reviewer approved, not whatever was
// written at the key since. A ref without a pin (a task screened before
// pins existed) reads the current version.
func (a *Activities) openPinned(ctx context.Context, ref task.ObjectRef, offset int64) (io.ReadCloser, error) {
	rc, info, err := a.Store.GetRange(ctx, ref.Key, offset)
	if err != nil {
		return nil, fmt.Errorf("reading the task's input: %w", err)
	}
	changed := ref.VersionID != "" && info.VersionID != ref.VersionID ||
		ref.VersionID == "" && ref.ETag != "" && info.ETag != ref.ETag
	if changed {
		rc.Close()
		// No retry reads the screened version back: fail the task.
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the task's input %s was replaced after screening (version %q, screened %q); submit it again", ref.Key, cmp.Or(info.VersionID, info.ETag), cmp.Or(ref.VersionID, ref.ETag)),
			string(task.Conflict), nil)
	}
	return rc, nil
}
