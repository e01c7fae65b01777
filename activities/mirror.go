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
	case err == nil && info.Size == in.File.Size && (info.Metadata[storage.MetaSHA256] == in.File.SHA256 || info.Metadata[metaVerified] == in.File.SHA256):
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

// metaVerified is the user metadata of a file copied in one stream: the
// sha256 it was checked against before its upload was allowed to complete.
const metaVerified = "verified-sha256"

// stream is the fast path of a fresh copy: the download goes to the bucket
// as it arrives (a multipart upload, parts in flight while the next ones
// download), and to the staging file and the hash beside it. The upload
// completes only if the last byte hashes to the upstream's sha256; a
// broken stream aborts it, and the staged bytes let the slow path resume
// with Range requests. done is false when the fast path did not apply or
// did not finish.
func (m *Mirror) stream(ctx context.Context, in MirrorFileInput, key, staged string, progress func(int64)) (done bool, err error) {
	if fi, err := os.Stat(staged); err == nil && fi.Size() > 0 {
		return false, nil // an earlier attempt staged bytes: resume from them
	}
	body, _, err := m.Upstream.Open(ctx, m.Upstream.FileURL(in.Model.Upstream, in.Model.Repo, in.Model.Revision, in.File.Name), 0)
	if err != nil {
		return false, err
	}
	defer body.Close()
	f, err := os.Create(staged)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	var n int64
	tee := io.TeeReader(body, writerFunc(func(p []byte) (int, error) {
		if _, err := f.Write(p); err != nil {
			return 0, err
		}
		h.Write(p)
		n += int64(len(p))
		progress(n)
		return len(p), nil
	}))
	vr := &verifyingReader{r: tee, check: func() error {
		if got := hex.EncodeToString(h.Sum(nil)); n != in.File.Size || got != in.File.SHA256 {
			return fmt.Errorf("%w: %s is %d bytes with sha256 %s, the upstream lists %d bytes with %s", model.ErrChecksum, in.File.Name, n, got, in.File.Size, in.File.SHA256)
		}
		return nil
	}}
	_, err = m.Store.Put(ctx, key, vr, in.File.Size, storage.PutOptions{
		ContentType: "application/octet-stream",
		Metadata:    map[string]string{"revision": in.Model.Revision, metaVerified: in.File.SHA256},
	})
	return err == nil, err
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// verifyingReader turns its reader's EOF into check's error, so that an
// upload of bytes that do not verify never completes.
type verifyingReader struct {
	r     io.Reader
	check func() error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if err == io.EOF {
		if cerr := v.check(); cerr != nil {
			return n, cerr
		}
	}
	return n, err
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
