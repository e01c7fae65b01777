package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// ListModelFilesResult names a revision's commit and files.
type ListModelFilesResult struct {
	// Commit is empty in histories recorded before the listing resolved
	// one; their files are copied at the revision.
	Commit string           `json:"commit,omitempty"`
	Files  []task.ModelFile `json:"files"`
}

// ListModelFiles resolves a revision to its commit and asks the upstream
// for its files and their sha256, once the model name is known to be
// free or bound to this repository.
func (m *Mirror) ListModelFiles(ctx context.Context, in task.MirrorInput) (ListModelFilesResult, error) {
	if err := in.Validate(); err != nil {
		return ListModelFilesResult{}, asApplicationError(err)
	}
	if err := checkOrigin(ctx, m.Store, in); err != nil {
		return ListModelFilesResult{}, asApplicationError(err)
	}
	l, err := m.Upstream.List(ctx, in.Upstream, in.Repo, in.Revision)
	if err != nil {
		return ListModelFilesResult{}, asApplicationError(err)
	}
	return ListModelFilesResult{Commit: l.Commit, Files: l.Files}, nil
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

// MirrorModelFile copies one file into models/<name>/<revision>/ from
// the upstream at the input's commit: streamed to the bucket with its
// sha256 declared, so the store completes the upload only if the bytes
// match; or, when that breaks, downloaded to a staging file (resumed with
// Range requests, hashed as it arrives) and uploaded resumably, declared
// the same way. The object's metadata then holds the verified sha256, so
// a later run can skip it. A model name bound to another repository is
// refused before any byte moves.
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
	if err := claimOrigin(ctx, m.Store, in.Model); err != nil {
		return MirrorFileResult{}, err
	}
	key := task.ModelPrefix(in.Model.Name, in.Model.Revision) + in.File.Name
	ref := task.ObjectRef{Bucket: m.Store.Bucket(), Key: key, Size: in.File.Size, SHA256: in.File.SHA256}
	switch info, err := m.Store.Stat(ctx, key); {
	case err == nil && info.Size == in.File.Size && info.SHA256 == in.File.SHA256:
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
	if done, err := m.stream(ctx, in, key, staged, heartbeat); err == nil && done {
		_ = os.Remove(staged)
		return MirrorFileResult{ObjectRef: ref}, nil
	}
	d, err := m.download(ctx, in, staged, heartbeat)
	if err != nil {
		return MirrorFileResult{}, err
	}
	_, err = storage.UploadFile(ctx, m.Store, key, staged, storage.UploadOptions{
		PutOptions: m.putOptions(in),
		StateDir:   filepath.Join(dir, "uploads"),
		Progress:   func(done, _ int64) { heartbeat(in.File.Size + done) },
	})
	if err != nil {
		return MirrorFileResult{}, fmt.Errorf("mirror: uploading %s: %w", key, err)
	}
	_ = os.Remove(staged)
	return MirrorFileResult{ObjectRef: ref, Reused: d.Reused, Resumes: d.Resumes}, nil
}

// fileURL is where the file is downloaded from: the upstream at the
// commit, or at the revision for inputs recorded without one.
func (m *Mirror) fileURL(in MirrorFileInput) string {
	return m.Upstream.FileURL(in.Model.Upstream, in.Model.Repo, orDefault(in.Model.Commit, in.Model.Revision), in.File.Name)
}

// putOptions declare the file's sha256 to the store, which refuses to
// complete an upload whose bytes do not match it.
func (m *Mirror) putOptions(in MirrorFileInput) storage.PutOptions {
	meta := map[string]string{"revision": in.Model.Revision}
	if in.Model.Commit != "" {
		meta["commit"] = in.Model.Commit
	}
	return storage.PutOptions{ContentType: "application/octet-stream", Metadata: meta, SHA256: in.File.SHA256}
}

// download stages the file, resuming what an earlier attempt staged. A
// file that does not hash to its sha256 is fetched once more from its
// first byte, which a broken proxy's flipped byte survives; if the
// second copy does not match either, the upstream serves other bytes than
// it listed, and the copy is refused for good.
func (m *Mirror) download(ctx context.Context, in MirrorFileInput, staged string, progress func(int64)) (model.Downloaded, error) {
	url := m.fileURL(in)
	d, err := m.Upstream.Download(ctx, url, staged, in.File, progress)
	if !errors.Is(err, model.ErrChecksum) {
		return d, err
	}
	d, err = m.Upstream.Download(ctx, url, staged, in.File, progress)
	if errors.Is(err, model.ErrChecksum) {
		return d, task.Errorf(task.ScreeningFailed, "mirror: %s@%s serves %s twice with other bytes than it listed: %v", in.Model.Repo, orDefault(in.Model.Commit, in.Model.Revision), in.File.Name, err)
	}
	return d, err
}

// stream is the fast path of a fresh copy: the download goes to the bucket
// as it arrives (a multipart upload, parts in flight while the next ones
// download), and to the staging file beside it. The store reads exactly
// the listed size and completes the upload only if those bytes hash to
// the declared sha256, whenever the body reports its end; a broken or
// refused stream aborts it, and the staged bytes let the slow path go on
// with Range requests. done is false when the fast path did not apply or
// did not finish.
func (m *Mirror) stream(ctx context.Context, in MirrorFileInput, key, staged string, progress func(int64)) (done bool, err error) {
	if fi, err := os.Stat(staged); err == nil && fi.Size() > 0 {
		return false, nil // an earlier attempt staged bytes: resume from them
	}
	body, _, err := m.Upstream.Open(ctx, m.fileURL(in), 0)
	if err != nil {
		return false, err
	}
	defer body.Close()
	f, err := os.Create(staged)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var n int64
	tee := io.TeeReader(body, writerFunc(func(p []byte) (int, error) {
		if _, err := f.Write(p); err != nil {
			return 0, err
		}
		n += int64(len(p))
		progress(n)
		return len(p), nil
	}))
	_, err = m.Store.Put(ctx, key, tee, in.File.Size, m.putOptions(in))
	return err == nil, err
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// WriteModelMetaInput is a mirrored revision's files.
type WriteModelMetaInput struct {
	Model task.MirrorInput `json:"model"`
	Files []task.ModelFile `json:"files"`
	// FetchedAt is when the workflow finished the copy.
	FetchedAt time.Time `json:"fetched_at"`
}

// WriteModelMeta writes the revision's cache.meta, which nodes read to
// bring the model into their cache and to verify it there; never for a
// name bound to another repository.
func (m *Mirror) WriteModelMeta(ctx context.Context, in WriteModelMetaInput) (task.ObjectRef, error) {
	if err := claimOrigin(ctx, m.Store, in.Model); err != nil {
		return task.ObjectRef{}, asApplicationError(err)
	}
	meta := task.CacheMeta{Name: in.Model.Name, Repo: in.Model.Repo, Revision: in.Model.Revision, Commit: in.Model.Commit, Files: in.Files, FetchedAt: in.FetchedAt}
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
