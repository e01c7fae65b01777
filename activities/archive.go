package activities

import (
	"context"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
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

// Manifest is manifest.json: every object of the task with its size,
// sha256 and category, so anyone can check what they download.
type Manifest struct {
	TaskID  string           `json:"task_id"`
	Tenant  string           `json:"tenant"`
	Objects []task.ObjectRef `json:"objects"`
}

// Archive writes the report and the manifest of a task. Both are a
// function of the task's final state, so writing them again is harmless.
func (a *Activities) Archive(ctx context.Context, in ArchiveInput) (ArchiveResult, error) {
	st := in.Status
	reportKey, err := taskObject{storage.Data, st.Tenant, st.ID, NameReport}.key()
	if err != nil {
		return ArchiveResult{}, asApplicationError(err)
	}
	manifestKey, err := taskObject{storage.Data, st.Tenant, st.ID, NameManifest}.key()
	if err != nil {
		return ArchiveResult{}, asApplicationError(err)
	}
	report, err := a.putJSON(ctx, reportKey, storage.Data, Report{Task: st, Result: in.Result, ArchivedAt: time.Now().UTC()})
	if err != nil {
		return ArchiveResult{}, err
	}
	m := Manifest{TaskID: st.ID, Tenant: st.Tenant}
	for _, r := range append(st.Artifacts, report) {
		if r.Key != "" {
			m.Objects = append(m.Objects, r)
		}
	}
	manifest, err := a.putJSON(ctx, manifestKey, storage.Data, m)
	return ArchiveResult{Report: report, Manifest: manifest}, err
}
