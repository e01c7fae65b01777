package activities

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// ListOldTaskLogsInput asks for the next tasks with logs to archive.
type ListOldTaskLogsInput struct {
	// After is the log key to list after ("" from the start).
	After string `json:"after,omitempty"`
	// Before: chunks last written before it are old.
	Before time.Time `json:"before"`
	// Limit is the most tasks to return; 0 is 100.
	Limit int `json:"limit,omitempty"`
}

// LogTask is a task with old log chunks.
type LogTask struct {
	Tenant string `json:"tenant"`
	TaskID string `json:"task_id"`
}

// ListOldTaskLogsResult is one page of tasks.
type ListOldTaskLogsResult struct {
	Tasks []LogTask `json:"tasks,omitempty"`
	// Next is the key to list after next time; "" when the listing is
	// done.
	Next string `json:"next,omitempty"`
}

// listPagesPerCall bounds one ListOldTaskLogs call (at 1,000 keys a page),
// so a bucket full of fresh logs does not make it run long.
const listPagesPerCall = 20

// ListOldTaskLogs walks the log folder in key order from in.After and
// returns the tasks that have chunks older than in.Before. It passes only
// names through the workflow, never log content.
func (a *Activities) ListOldTaskLogs(ctx context.Context, in ListOldTaskLogsInput) (ListOldTaskLogsResult, error) {
	limit := in.Limit
	if limit <= 0 {
		limit = 100
	}
	var res ListOldTaskLogsResult
	after := in.After
	for range listPagesPerCall {
		page, more, err := storage.ListPage(ctx, a.Store, string(storage.Log)+"/", after, storage.MaxListPage)
		if err != nil {
			return ListOldTaskLogsResult{}, err
		}
		for _, o := range page {
			t, ok := logTaskOf(o.Key)
			if ok && o.LastModified.Before(in.Before) && !slices.Contains(res.Tasks, t) {
				if len(res.Tasks) == limit {
					res.Next = after
					return res, nil
				}
				res.Tasks = append(res.Tasks, t)
			}
			after = o.Key
		}
		activity.RecordHeartbeat(ctx, after)
		if !more {
			return res, nil
		}
	}
	res.Next = after
	return res, nil
}

// logTaskOf is the task of a log key: log/<hash>/<tenant>/<task>/<name>.
func logTaskOf(key string) (LogTask, bool) {
	parts := strings.SplitN(key, "/", 5)
	if len(parts) < 5 || parts[0] != string(storage.Log) {
		return LogTask{}, false
	}
	t := LogTask{Tenant: parts[2], TaskID: parts[3]}
	if storage.TaskPrefix(storage.Log, t.Tenant, t.TaskID) != strings.Join(parts[:4], "/")+"/" {
		return LogTask{}, false // not a key of our layout
	}
	return t, true
}

// ArchiveTaskLogsInput names a task whose old logs to archive.
type ArchiveTaskLogsInput struct {
	Tenant string    `json:"tenant"`
	TaskID string    `json:"task_id"`
	Before time.Time `json:"before"`
}

// ArchiveTaskLogsResult says what was archived.
type ArchiveTaskLogsResult struct {
	Chunks   int              `json:"chunks"`
	Bytes    int64            `json:"bytes"`
	Archives []task.ObjectRef `json:"archives,omitempty"`
}

// ArchiveTaskLogs packs a task's log chunks older than in.Before into one
// archive per day, archive/<hash>/<tenant>/<task>/logs/<yyyymmdd>.tar.gz
// (one tar member per chunk, gzip'd, tagged for log retention), then
// removes the chunks. It is safe to run again at any point: an archive that
// exists is extended, members it already holds are not added twice, and a
// chunk is removed only once an archive holding it is written.
func (a *Activities) ArchiveTaskLogs(ctx context.Context, in ArchiveTaskLogsInput) (ArchiveTaskLogsResult, error) {
	if err := storage.CheckID("tenant", in.Tenant); err != nil {
		return ArchiveTaskLogsResult{}, asApplicationError(err)
	}
	if err := storage.CheckID("task id", in.TaskID); err != nil {
		return ArchiveTaskLogsResult{}, asApplicationError(err)
	}
	all, err := a.Store.List(ctx, storage.TaskPrefix(storage.Log, in.Tenant, in.TaskID))
	if err != nil {
		return ArchiveTaskLogsResult{}, err
	}
	days := map[string][]storage.Info{}
	var order []string
	for _, o := range all {
		if !o.LastModified.Before(in.Before) {
			continue
		}
		day := chunkDay(o)
		if _, ok := days[day]; !ok {
			order = append(order, day)
		}
		days[day] = append(days[day], o)
	}
	slices.Sort(order)
	var res ArchiveTaskLogsResult
	for _, day := range order {
		chunks := days[day]
		ref, err := a.archiveDay(ctx, in, day, chunks)
		if err != nil {
			return res, err
		}
		for _, c := range chunks {
			if err := a.Store.Delete(ctx, c.Key); err != nil {
				return res, err
			}
			res.Chunks++
			res.Bytes += c.Size
		}
		res.Archives = append(res.Archives, ref)
		activity.RecordHeartbeat(ctx, day)
	}
	return res, nil
}

// chunkDay is the UTC day a chunk belongs to: from its name, which the
// writer dated, or else from when it was stored.
func chunkDay(o storage.Info) string {
	if m := chunkName.FindStringSubmatch(storage.NameOf(o.Key)); m != nil {
		return m[1]
	}
	return o.LastModified.UTC().Format("20060102")
}

// archiveTries bounds the re-reads when the day's archive changes under a
// write (two runs at once).
const archiveTries = 5

// archiveDay writes the day's archive with the chunks added: Create when
// there is none, else Replace on the ETag it read.
func (a *Activities) archiveDay(ctx context.Context, in ArchiveTaskLogsInput, day string, chunks []storage.Info) (task.ObjectRef, error) {
	key, err := storage.Key(storage.Archive, in.Tenant, in.TaskID, "logs/"+day+".tar.gz")
	if err != nil {
		return task.ObjectRef{}, asApplicationError(err)
	}
	for try := 1; ; try++ {
		info, err := a.writeArchive(ctx, key, chunks)
		if err == nil {
			return task.ObjectRef{Bucket: a.Store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256, Category: string(storage.Archive)}, nil
		}
		if !errors.Is(err, storage.ErrConflict) || try == archiveTries {
			return task.ObjectRef{}, fmt.Errorf("archiving logs of %s for %s: %w", in.TaskID, day, err)
		}
	}
}

// writeArchive streams the archive at key (if any) and the chunks into a
// new version of it, through a pipe: memory holds a copy buffer and one
// part, whatever the size of the logs.
func (a *Activities) writeArchive(ctx context.Context, key string, chunks []storage.Info) (storage.Info, error) {
	var old io.ReadCloser
	var cur storage.Info
	rc, info, err := a.Store.Get(ctx, key)
	switch {
	case err == nil:
		old, cur = rc, info
		defer rc.Close()
	case !errors.Is(err, storage.ErrNotFound):
		return storage.Info{}, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(a.packLogs(ctx, pw, old, chunks)) }()
	o := storage.PutOptions{ContentType: "application/gzip", Tags: map[string]string{storage.TagKind: storage.KindLogArc}}
	if cur.ETag == "" {
		info, err = a.Store.Create(ctx, key, pr, -1, o)
	} else {
		info, err = a.Store.Replace(ctx, key, cur.ETag, pr, -1, o)
	}
	pr.CloseWithError(err) // unblocks packLogs if the write gave up early
	return info, err
}

// packLogs writes a gzip'd tar of the old archive's members followed by
// the chunks it does not hold yet, in name order. The output depends only
// on its input (no gzip time stamp), so a redone archive is the same.
func (a *Activities) packLogs(ctx context.Context, w io.Writer, old io.Reader, chunks []storage.Info) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	have := map[string]bool{}
	if old != nil {
		zr, err := gzip.NewReader(old)
		if err != nil {
			return fmt.Errorf("reading the old archive: %w", err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("reading the old archive: %w", err)
			}
			have[h.Name] = true
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
		}
	}
	slices.SortFunc(chunks, func(x, y storage.Info) int { return strings.Compare(x.Key, y.Key) })
	for _, c := range chunks {
		name := storage.NameOf(c.Key)
		if have[name] {
			continue // archived by an earlier try that did not get to delete it
		}
		if err := a.packChunk(ctx, tw, name, c); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func (a *Activities) packChunk(ctx context.Context, tw *tar.Writer, name string, c storage.Info) error {
	rc, info, err := a.Store.Get(ctx, c.Key)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := &tar.Header{Name: name, Mode: 0o644, Size: info.Size, ModTime: c.LastModified.UTC(), Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, rc)
	if err != nil {
		return fmt.Errorf("reading %s: %w", c.Key, err)
	}
	if n != info.Size {
		return fmt.Errorf("reading %s: %d of %d bytes", c.Key, n, info.Size)
	}
	return nil
}
