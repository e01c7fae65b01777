package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

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

// archiveReads bounds the archive's bucket requests in flight, whatever the
// number of attachments.
const archiveReads = 16

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
	reportJSON, err := json.MarshalIndent(Report{Task: st, Result: in.Result, ArchivedAt: time.Now().UTC()}, "", "  ")
	if err != nil {
		return ArchiveResult{}, err
	}
	// The report, the usage record and what the manifest says of each
	// artifact are written and read side by side: the archive is on the
	// path of every task, and none of them needs another.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(archiveReads)
	var reportInfo storage.Info
	g.Go(func() (err error) {
		reportInfo, err = a.Store.Put(gctx, reportKey, bytes.NewReader(reportJSON), int64(len(reportJSON)), storage.PutOptions{ContentType: "application/json"})
		if err != nil {
			return fmt.Errorf("writing %s: %w", reportKey, err)
		}
		return nil
	})
	g.Go(func() error { return a.recordUsage(gctx, in) })
	described := make([]*storage.ManifestEntry, len(st.Artifacts))
	for i, r := range st.Artifacts {
		if r.Key == "" || r.Key == manifestKey || r.Key == reportKey {
			continue
		}
		g.Go(func() error {
			e, err := storage.Describe(gctx, a.Store, r.Key, r.SHA256)
			if errors.Is(err, storage.ErrNotFound) {
				return nil // a manifest lists what can be downloaded
			}
			if err != nil {
				return fmt.Errorf("archive: %w", err)
			}
			described[i] = &e
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return ArchiveResult{}, err
	}
	report := task.ObjectRef{Bucket: a.Store.Bucket(), Key: reportKey, Size: reportInfo.Size, SHA256: reportInfo.SHA256, Category: string(storage.Data)}
	var entries []storage.ManifestEntry
	for _, e := range described {
		if e != nil {
			entries = append(entries, *e)
		}
	}
	entries = append(entries, storage.Entry(a.Store.Bucket(), reportInfo))
	_, info, err := storage.AddToManifest(ctx, a.Store, st.Tenant, st.ID, entries...)
	if err != nil {
		return ArchiveResult{}, err
	}
	manifest := task.ObjectRef{Bucket: a.Store.Bucket(), Key: info.Key, Size: info.Size, SHA256: info.SHA256, Category: string(storage.Data)}
	return ArchiveResult{Report: report, Manifest: manifest}, nil
}
