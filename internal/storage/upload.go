package storage

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// UploadFile creates key from a local file, resumably: a file larger than
// one part goes as a multipart upload whose ID is kept in a small state
// file, so that an upload interrupted (Ctrl-C, a crash, a lost network) and
// started again asks S3 which parts it has (ListParts) and sends only the
// others. At most the part that was in flight is sent twice.
//
// The sha256 is checked end to end: the file is hashed before the upload
// (the digest is stored as MetaSHA256, so Stat and downloads can check it,
// multipart or not); every part goes with its Content-MD5, which the server
// checks; a part found on resume is reused only if its ETag is the MD5 of
// the same bytes of the file now; and a file that changes during the upload
// fails it. A declared PutOptions.SHA256 that the file does not hash to
// refuses the upload before anything is sent. Like Create, it never overwrites: an existing key is a
// Conflict, unless it holds this very file (an earlier run that finished),
// which is success.
func UploadFile(ctx context.Context, s Store, key, path string, o UploadOptions) (UploadResult, error) {
	ms, ok := s.(multipartStore)
	if !ok {
		return UploadResult{}, fmt.Errorf("storage: %T cannot upload resumably", s)
	}
	return uploadFile(ctx, ms, key, path, o)
}

// UploadOptions tune UploadFile.
type UploadOptions struct {
	PutOptions
	// PartSize of a multipart upload; 0 is the store's (16 MiB), and
	// parts grow for files past 10,000 of them. A file no larger than one
	// part goes in one PUT.
	PartSize int64
	// StateDir holds the state of unfinished uploads; "" is
	// DefaultStateDir().
	StateDir string
	// Progress, if set, is told the bytes stored so far after each part
	// (parts found on resume count at once) and the file's size.
	Progress func(done, total int64)
}

// UploadResult is what UploadFile stored.
type UploadResult struct {
	Info
	// Parts is the number of parts; 0 for a file sent in one PUT.
	Parts int
	// Reused are the parts an earlier, interrupted run had stored.
	Reused int
	// Existed: the key already held this file; nothing was sent.
	Existed bool
}

// DefaultStateDir is where UploadFile keeps the state of unfinished
// uploads: autoglm/uploads in the user's cache folder.
func DefaultStateDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("storage: no folder for upload state (set UploadOptions.StateDir): %w", err)
	}
	return dir + "/autoglm/uploads", nil
}

// errNoUpload: the upload a state file names is gone (completed, aborted,
// or expired by the server); the upload starts again.
var errNoUpload = errors.New("storage: no such multipart upload")

// listedPart is a part S3 holds for an unfinished upload.
type listedPart struct {
	number int32
	etag   string
	size   int64
}

type partLister interface {
	listParts(ctx context.Context, req request, uploadID string) ([]listedPart, error)
}

// multipartStore is a Store whose driver exposes its S3 calls; both
// drivers are.
type multipartStore interface {
	Store
	uploader
	partLister
	defaultPartSize() int64
}

// fileDigest is what the first pass over a file learns.
type fileDigest struct {
	sha256 string
	md5s   [][md5.Size]byte // of each part
	head   []byte           // to sniff the content type
}

func uploadFile(ctx context.Context, ms multipartStore, key, path string, o UploadOptions) (UploadResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return UploadResult{}, task.Errorf(task.InvalidInput, "%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return UploadResult{}, err
	}
	if !fi.Mode().IsRegular() {
		return UploadResult{}, task.Errorf(task.InvalidInput, "%s is not a regular file", path)
	}
	size := fi.Size()
	ps := o.PartSize
	if ps == 0 {
		ps = ms.defaultPartSize()
	}
	if ps < minPartSize {
		return UploadResult{}, fmt.Errorf("storage: part size %d is below S3's minimum %d", ps, minPartSize)
	}
	if (size+ps-1)/ps > maxParts {
		ps = ((size/maxParts)>>20 + 1) << 20
	}
	d, err := digestFile(f, size, ps)
	if err != nil {
		return UploadResult{}, fmt.Errorf("storage: reading %s: %w", path, err)
	}
	if d.sha256 != o.SHA256 && o.SHA256 != "" {
		return UploadResult{}, fmt.Errorf("%w: %s hashes to %s, declared %s", ErrSHA256Mismatch, path, d.sha256, o.SHA256)
	}
	if o.ContentType == "" {
		o.ContentType, _ = Sniff(d.head)
	}
	progress := func(done int64) {
		if o.Progress != nil {
			o.Progress(done, size)
		}
	}
	if size <= min(ps, ms.defaultPartSize()) {
		res, err := putFile(ctx, ms, key, f, size, d.sha256, o.PutOptions)
		if err == nil {
			progress(size)
		}
		return res, err
	}
	u := &resumable{ms: ms, f: f, fi: fi, size: size, partSize: ps, d: d, progress: progress}
	u.req = request{key: key, contentType: o.ContentType, metadata: maps.Clone(o.Metadata), tags: o.Tags, cond: precondition{absent: true}}
	if u.req.metadata == nil {
		u.req.metadata = map[string]string{}
	}
	u.req.metadata[MetaSHA256] = d.sha256
	dir := o.StateDir
	if dir == "" {
		if dir, err = DefaultStateDir(); err != nil {
			return UploadResult{}, err
		}
	}
	u.state = newStateFile(dir, ms.Bucket(), key, path, fi)
	return u.run(ctx)
}

// putFile creates key from a file that fits in one part, in one PUT
// (which write sends when the content fits in its part).
func putFile(ctx context.Context, ms multipartStore, key string, f *os.File, size int64, sum string, o PutOptions) (UploadResult, error) {
	info, err := ms.Create(ctx, key, io.NewSectionReader(f, 0, size), size, o)
	if errors.Is(err, ErrConflict) {
		return existing(ctx, ms, key, sum, err)
	}
	if err != nil {
		return UploadResult{}, err
	}
	if info.SHA256 != sum {
		return UploadResult{}, fmt.Errorf("storage: %s changed during the upload (sha256 %s, then %s)", f.Name(), sum, info.SHA256)
	}
	return UploadResult{Info: info}, nil
}

// digestFile reads f once: its sha256, the MD5 of each part, its head.
func digestFile(f *os.File, size, partSize int64) (fileDigest, error) {
	var d fileDigest
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); ; off += partSize {
		l := min(partSize, size-off)
		m := md5.New()
		n, err := io.CopyBuffer(io.MultiWriter(h, m), io.NewSectionReader(f, off, l), buf)
		if err != nil {
			return d, err
		}
		if n != l {
			return d, io.ErrUnexpectedEOF
		}
		d.md5s = append(d.md5s, [md5.Size]byte(m.Sum(nil)))
		if off+l >= size {
			break
		}
	}
	d.sha256 = hex.EncodeToString(h.Sum(nil))
	d.head = make([]byte, min(size, SniffLen))
	if _, err := f.ReadAt(d.head, 0); err != nil && !errors.Is(err, io.EOF) {
		return d, err
	}
	return d, nil
}

// existing answers a Create that found the key: success if it holds the
// file (an earlier run finished), else the conflict.
func existing(ctx context.Context, ms multipartStore, key, sum string, conflict error) (UploadResult, error) {
	info, err := ms.Stat(ctx, key)
	if err != nil {
		return UploadResult{}, errors.Join(conflict, err)
	}
	if info.SHA256 != sum {
		return UploadResult{}, conflict
	}
	return UploadResult{Info: info, Existed: true}, nil
}

// resumable is one multipart run of UploadFile.
type resumable struct {
	ms       multipartStore
	f        *os.File
	fi       os.FileInfo
	size     int64
	partSize int64
	d        fileDigest
	req      request
	state    *stateFile
	progress func(done int64)
}

func (u *resumable) run(ctx context.Context) (UploadResult, error) {
	st, listed, err := u.resume(ctx)
	if err != nil {
		return UploadResult{}, err
	}
	if st.UploadID == "" {
		// Complete checks If-None-Match atomically; asking first spares
		// sending every part of a file that is already there (AWS, unlike
		// MinIO, does not check the precondition when an upload starts).
		if _, err := u.ms.Stat(ctx, u.req.key); err == nil {
			return existing(ctx, u.ms, u.req.key, u.d.sha256, task.Errorf(task.Conflict, "storage: %s already exists", u.req.key))
		} else if !errors.Is(err, ErrNotFound) {
			return UploadResult{}, err
		}
		id, err := u.ms.startMultipart(ctx, u.req)
		if errors.Is(err, ErrConflict) {
			u.state.remove()
			return existing(ctx, u.ms, u.req.key, u.d.sha256, err)
		}
		if err != nil {
			return UploadResult{}, err
		}
		st = uploadState{UploadID: id, PartSize: u.partSize, SHA256: u.d.sha256, Started: time.Now().UTC()}
		if err := u.state.save(st); err != nil {
			u.abort(st.UploadID)
			return UploadResult{}, err
		}
	}
	res := UploadResult{Parts: len(u.d.md5s)}
	parts := make([]part, 0, len(u.d.md5s))
	var buf []byte
	var done int64
	for i, sum := range u.d.md5s {
		n := int32(i + 1)
		off := int64(i) * u.partSize
		l := min(u.partSize, u.size-off)
		if lp, ok := listed[n]; ok && lp.size == l && lp.etag == hex.EncodeToString(sum[:]) {
			parts = append(parts, part{number: n, etag: lp.etag})
			res.Reused++
			done += l
			u.progress(done)
			continue
		}
		if buf == nil {
			buf = make([]byte, u.partSize)
		}
		b := buf[:l]
		if _, err := u.f.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && int64(len(b)) == l) {
			return UploadResult{}, fmt.Errorf("storage: reading part %d of %s: %w", n, u.f.Name(), err)
		}
		if md5.Sum(b) != sum {
			return UploadResult{}, u.changed(st)
		}
		etag, err := u.ms.putPart(ctx, u.req, st.UploadID, n, b, base64.StdEncoding.EncodeToString(sum[:]))
		if err != nil {
			// The state stays: the next run resumes from the parts S3 has.
			return UploadResult{}, fmt.Errorf("%w (%d of %d parts are stored; uploading the same file to the same key resumes)", err, len(parts), len(u.d.md5s))
		}
		etag = unquote(etag)
		if isMD5(etag) && etag != hex.EncodeToString(sum[:]) {
			return UploadResult{}, fmt.Errorf("storage: the server stored part %d of %s with MD5 %s, not %x", n, u.req.key, etag, sum)
		}
		parts = append(parts, part{number: n, etag: etag})
		done += l
		u.progress(done)
	}
	if fi, err := u.f.Stat(); err != nil || fi.Size() != u.fi.Size() || !fi.ModTime().Equal(u.fi.ModTime()) {
		return UploadResult{}, u.changed(st)
	}
	info, err := u.ms.complete(ctx, u.req, st.UploadID, parts)
	if errors.Is(err, ErrConflict) {
		u.abort(st.UploadID)
		u.state.remove()
		return existing(ctx, u.ms, u.req.key, u.d.sha256, err)
	}
	if err != nil {
		return UploadResult{}, err
	}
	u.state.remove()
	info.Key, info.Size, info.SHA256, info.ContentType, info.Metadata = u.req.key, u.size, u.d.sha256, u.req.contentType, u.req.metadata
	res.Info = info
	return res, nil
}

// resume loads the state of an earlier run of the same upload and lists
// the parts S3 holds for it. A state that does not fit the file now, or an
// upload S3 no longer has, starts afresh.
func (u *resumable) resume(ctx context.Context) (uploadState, map[int32]listedPart, error) {
	st, ok := u.state.load()
	if !ok {
		return uploadState{}, nil, nil
	}
	if st.SHA256 != u.d.sha256 || st.PartSize != u.partSize {
		u.abort(st.UploadID)
		return uploadState{}, nil, nil
	}
	parts, err := u.ms.listParts(ctx, u.req, st.UploadID)
	if errors.Is(err, errNoUpload) {
		return uploadState{}, nil, nil
	}
	if err != nil {
		return uploadState{}, nil, err
	}
	listed := make(map[int32]listedPart, len(parts))
	for _, p := range parts {
		listed[p.number] = p
	}
	return st, listed, nil
}

// changed gives up on an upload whose file changed under it.
func (u *resumable) changed(st uploadState) error {
	u.abort(st.UploadID)
	u.state.remove()
	return fmt.Errorf("storage: %s changed during the upload; upload it again", u.f.Name())
}

// abort drops an upload's parts, best effort: S3 (and lifecycle rules)
// expire forgotten ones anyway.
func (u *resumable) abort(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = u.ms.abort(ctx, u.req, id)
}

// isMD5 reports whether etag looks like the MD5 S3 gives an unencrypted
// part (32 hex digits); other ETags cannot be checked.
func isMD5(etag string) bool {
	if len(etag) != 2*md5.Size {
		return false
	}
	_, err := hex.DecodeString(etag)
	return err == nil
}
