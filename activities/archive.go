package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/audittrail"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// ArchiveInput is the task as it ends.
type ArchiveInput struct {
	Status task.Status `json:"status"`
	Result task.Result `json:"result"`
}

// ArchiveResult points at the report and the manifest.
type ArchiveResult struct {
	Report   task.ObjectRef `json:"report"`
	Manifest task.ObjectRef `json:"manifest"`
}

// Report is report.json: the task's final status with its audit trail,
// and its request counts and outputs.
type Report struct {
	Task       task.Status `json:"task"`
	Result     task.Result `json:"result"`
	ArchivedAt time.Time   `json:"archived_at"`
}

// recordUsage keeps the tokens of a task that ran in the usage ledger,
// on the day of its final transition: the same day however often the
// archive is retried. A task that never ran (rejected, expired, or
// stopped before its work reached a node) is no task of the usage
// report's, whatever its result says; nor is one that ran and answered
// nothing.
func (a *Activities) recordUsage(ctx context.Context, in ArchiveInput) error {
	st := in.Status
	if st.EnteredAt(task.Running).IsZero() || in.Result.Usage.IsZero() && in.Result.Counts.Done() == 0 {
		return nil
	}
	end := time.Now()
	if n := len(st.Audit); n > 0 {
		end = st.Audit[n-1].Time
	}
	err := usage.Write(ctx, a.Store, usage.Record{Task: st.ID, Tenant: st.Tenant, Model: st.Model, Day: usage.Day(end), Usage: in.Result.Usage})
	if err != nil {
		return fmt.Errorf("archive: the usage ledger: %w", err)
	}
	return nil
}

// Archive writes the report of a task and adds its artifacts to the
// manifest. The report is a function of the task's final state, and the
// manifest update merges (attachments uploaded meanwhile stay listed), so
// doing it again is harmless.
func (a *Activities) Archive(ctx context.Context, in ArchiveInput) (ArchiveResult, error) {
	// The report keeps the whole audit trail: the earlier runs' part is
	// in the bucket.
	if err := audittrail.Whole(ctx, a.Store, &in.Status); err != nil {
		return ArchiveResult{}, fmt.Errorf("archive: %w", err)
	}
	st := in.Status
	reportKey, err := taskObject{storage.Data, st.Tenant, st.ID, NameReport}.key()
	if err != nil {
		return ArchiveResult{}, asApplicationError(err)
	}
	manifestKey, err := storage.ManifestKey(st.Tenant, st.ID)
	if err != nil {
		return ArchiveResult{}, asApplicationError(err)
	}
	report, err := a.putJSON(ctx, reportKey, storage.Data, Report{Task: st, Result: in.Result, ArchivedAt: time.Now().UTC()})
	if err != nil {
		return ArchiveResult{}, err
	}
	if err := a.recordUsage(ctx, in); err != nil {
		return ArchiveResult{}, err
	}
	var entries []storage.ManifestEntry
	for _, r := range append(st.Artifacts, report) {
		if r.Key == "" || r.Key == manifestKey {
			continue
		}
		e, err := storage.Describe(ctx, a.Store, r.Key, r.SHA256)
		if errors.Is(err, storage.ErrNotFound) {
			continue // a manifest lists what can be downloaded
		}
		if err != nil {
			return ArchiveResult{}, fmt.Errorf("archive: %w", err)
		}
		entries = append(entries, e)
	}
	_, info, err := storage.AddToManifest(ctx, a.Store, st.Tenant, st.ID, entries...)
	if err != nil {
		return ArchiveResult{}, err
	}
	manifest := task.ObjectRef{Bucket: a.Store.Bucket(), Key: info.Key, Size: info.Size, SHA256: info.SHA256, Category: string(storage.Data)}
	return ArchiveResult{Report: report, Manifest: manifest}, nil
}
