package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Mirror holds the activities of MirrorWorkflow. They run on the shared
// queue: any worker can copy a model, and a retried file resumes from the
// bytes staged by an earlier attempt when it lands on the same worker.
type Mirror struct {
	Store    storage.Store
	Upstream model.Upstream
	// Policy has the access rules that screen access requests.
	Policy *authz.Source
	// StagingDir holds files being downloaded; "" is a folder under the
	// system's temporary folder.
	StagingDir string
}

func (m *Mirror) stagingDir() (string, error) {
	dir := m.StagingDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "autoglm-mirror")
	}
	return dir, os.MkdirAll(dir, 0o700)
}

// ListModelFilesResult names a revision's files.
type ListModelFilesResult struct {
	Files []task.ModelFile `json:"files"`
}

// ListModelFiles asks the upstream for a revision's files and their sha256.
func (m *Mirror) ListModelFiles(ctx context.Context, in task.MirrorInput) (ListModelFilesResult, error) {
	if err := in.Validate(); err != nil {
		return ListModelFilesResult{}, asApplicationError(err)
	}
	files, err := m.Upstream.List(ctx, in.Upstream, in.Repo, in.Revision)
	if err != nil {
		return ListModelFilesResult{}, asApplicationError(err)
	}
	return ListModelFilesResult{Files: files}, nil
}

// MirrorFileInput is one file to copy.
type MirrorFileInput struct {
	Model task.MirrorInput `json:"model"`
	File  task.ModelFile   `json:"file"`
}

// MirrorFileResult is what one file's copy did.
type MirrorFileResult struct {
	task.ObjectRef
	// Skipped: the bucket held the verified file already.
	Skipped bool `json:"skipped,omitempty"`
	// Reused bytes were staged by an earlier attempt; Resumes counts the
	// Range requests that went on from a broken stream.
	Reused  int64 `json:"reused,omitempty"`
	Resumes int   `json:"resumes,omitempty"`
}

// MirrorModelFile copies one file into models/<name>/<revision>/: it is
// downloaded to a staging file (resumed with Range requests, hashed as it
// arrives and checked against the upstream's sha256), then uploaded
// resumably in parts, with the sha256 kept as the object's metadata so a
// later run can tell the copy is verified and skip it.
func (m *Mirror) MirrorModelFile(ctx context.Context, in MirrorFileInput) (MirrorFileResult, error) {
	res, err := m.CopyFile(ctx, in, func(n int64) { activity.RecordHeartbeat(ctx, n) })
	return res, asApplicationError(err)
}

// CopyFile is the work of MirrorModelFile; progress hears the bytes done
// (downloaded, then downloaded plus uploaded).
func (m *Mirror) CopyFile(ctx context.Context, in MirrorFileInput, progress func(int64)) (MirrorFileResult, error) {
	if err := in.Model.Validate(); err != nil {
		return MirrorFileResult{}, err
	}
	if err := task.CheckModelFileName(in.File.Name); err != nil {
		return MirrorFileResult{}, err
	}
	key := task.ModelPrefix(in.Model.Name, in.Model.Revision) + in.File.Name
	ref := task.ObjectRef{Bucket: m.Store.Bucket(), Key: key, Size: in.File.Size, SHA256: in.File.SHA256}
	switch info, err := m.Store.Stat(ctx, key); {
	case err == nil && info.Size == in.File.Size && info.Metadata[storage.MetaSHA256] == in.File.SHA256:
		return MirrorFileResult{ObjectRef: ref, Skipped: true}, nil
	case err == nil:
		// A copy that does not verify (an older revision's file under the
		// same name, or a broken write) is replaced.
		if err := m.Store.Delete(ctx, key); err != nil {
			return MirrorFileResult{}, err
		}
	case !errors.Is(err, storage.ErrNotFound):
		return MirrorFileResult{}, err
	}

	dir, err := m.stagingDir()
	if err != nil {
		return MirrorFileResult{}, err
	}
	sum := sha256.Sum256([]byte(m.Store.Bucket() + "/" + key))
	staged := filepath.Join(dir, hex.EncodeToString(sum[:12])+".part")
	heartbeat := func(n int64) {
		if progress != nil {
			progress(n)
		}
	}
	d, err := m.Upstream.Download(ctx, m.Upstream.FileURL(in.Model.Upstream, in.Model.Repo, in.Model.Revision, in.File.Name), staged, in.File, heartbeat)
	if err != nil {
		return MirrorFileResult{}, err
	}
	_, err = storage.UploadFile(ctx, m.Store, key, staged, storage.UploadOptions{
		PutOptions: storage.PutOptions{ContentType: "application/octet-stream", Metadata: map[string]string{"revision": in.Model.Revision}},
		StateDir:   filepath.Join(dir, "uploads"),
		Progress:   func(done, _ int64) { heartbeat(in.File.Size + done) },
	})
	if err != nil {
		return MirrorFileResult{}, fmt.Errorf("mirror: uploading %s: %w", key, err)
	}
	_ = os.Remove(staged)
	return MirrorFileResult{ObjectRef: ref, Reused: d.Reused, Resumes: d.Resumes}, nil
}

// WriteModelMetaInput is a mirrored revision's files.
type WriteModelMetaInput struct {
	Model task.MirrorInput `json:"model"`
	Files []task.ModelFile `json:"files"`
	// FetchedAt is when the workflow finished the copy.
	FetchedAt time.Time `json:"fetched_at"`
}

// WriteModelMeta writes the revision's cache.meta, which nodes read to
// bring the model into their cache and to verify it there.
func (m *Mirror) WriteModelMeta(ctx context.Context, in WriteModelMetaInput) (task.ObjectRef, error) {
	meta := task.CacheMeta{Name: in.Model.Name, Repo: in.Model.Repo, Revision: in.Model.Revision, Files: in.Files, FetchedAt: in.FetchedAt}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return task.ObjectRef{}, err
	}
	key := task.ModelPrefix(in.Model.Name, in.Model.Revision) + task.CacheMetaName
	info, err := m.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	if err != nil {
		return task.ObjectRef{}, asApplicationError(err)
	}
	return task.ObjectRef{Bucket: m.Store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256}, nil
}
