package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"sync"
	"time"
)

// precondition is what a write expects of the key's current object.
type precondition struct {
	absent  bool   // If-None-Match: *
	ifMatch string // If-Match: "<etag>"
}

// request is one object write as the drivers see it.
type request struct {
	key         string
	contentType string
	metadata    map[string]string
	tags        map[string]string
	cond        precondition
	// sha256 is the hex digest of a one-PUT body, which the writer has
	// already computed: a driver sends it for the server to check, instead
	// of hashing the body again to sign it.
	sha256 string
}

// part is an uploaded part of a multipart write.
type part struct {
	number int32
	etag   string
}

// uploader is the five S3 calls a write is made of; each driver implements
// it. Only putOne and complete carry the precondition: S3 checks it when the
// object comes into being, which is what makes a conditional multipart write
// atomic. (minio-go's own PutObject drops If-None-Match/If-Match from
// CompleteMultipartUpload, so a multipart Create could silently overwrite;
// that is why the minio driver does not use it for large objects.)
type uploader interface {
	putOne(ctx context.Context, req request, body []byte) (Info, error)
	startMultipart(ctx context.Context, req request) (uploadID string, err error)
	// putPart sends part p; a non-empty md5 (base64) goes as Content-MD5,
	// so the server refuses a body that is not what the caller hashed.
	//
	// Parts go with an unsigned payload (x-amz-content-sha256:
	// UNSIGNED-PAYLOAD), as both SDKs already send them over HTTPS, rather
	// than hash each part a second time to sign it over plain HTTP: write
	// hashes every byte once, and that sha256 is what ties the stored
	// object to its content (it comes back in Info.SHA256, the manifest
	// keeps it, downloads check it). A one-PUT body is signed with that
	// same sha256 (request.sha256), so the server checks it.
	putPart(ctx context.Context, req request, uploadID string, p int32, body []byte, md5 string) (etag string, err error)
	complete(ctx context.Context, req request, uploadID string, parts []part) (Info, error)
	abort(ctx context.Context, req request, uploadID string) error
}

// streamUploader also sends a part as it reads it, for PutOptions.Stream.
type streamUploader interface {
	uploader
	// putPartStream sends part p of size bytes read from r, unsigned, as
	// putPart does; r cannot be read again, so the driver does not retry.
	putPartStream(ctx context.Context, req request, uploadID string, p int32, r io.Reader, size int64) (etag string, err error)
}

// maxParts is S3's limit of parts in one upload.
const maxParts = 10000

// write streams r to key: one PUT when the content fits in a part, else a
// multipart upload that holds one part in memory at a time. It hashes what
// it reads. size -1 means unknown; a known size must be what r holds.
func write(ctx context.Context, u uploader, partSize int64, key string, r io.Reader, size int64, o PutOptions, cond precondition) (Info, error) {
	if size < -1 {
		return Info{}, fmt.Errorf("storage: write %s: negative size %d", key, size)
	}
	if err := checkDeclared(key, o.SHA256); err != nil {
		return Info{}, err
	}
	if su, ok := u.(streamUploader); ok && o.Stream && size > streamAbove {
		return writeStream(ctx, su, key, r, size, o, cond)
	}
	full := partSize
	if size < 0 || size > partSize {
		// Multipart: parts as small as S3 allows, so the buffers
		// (partsInFlight+1 of them) cost 15 MiB, not 48. An object that
		// fits one part of partSize still goes in one PUT. Past
		// streamedSmallParts parts, a stream of unknown size goes on at
		// partSize; a known size grows its parts below to fit 10,000.
		partSize = min(partSize, minPartSize)
		if o.PartSize > 0 {
			partSize = max(o.PartSize, minPartSize)
		}
	}
	if size > 0 && (size+partSize-1)/partSize > maxParts {
		// Grow parts (in whole MiB) so that a known size fits in 10,000.
		partSize = ((size/maxParts)>>20 + 1) << 20
	}
	h := sha256.New()
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size)
	}
	src = io.TeeReader(src, h)

	first := int(partSize)
	if size >= 0 && size < partSize {
		first = int(size)
	}
	var buf []byte
	if size >= 0 {
		buf = make([]byte, 0, first) // no need to grow it as data comes
	}
	buf, err := readChunk(src, buf, first)
	if err != nil {
		return Info{}, fmt.Errorf("storage: write %s: read: %w", key, err)
	}
	req := request{key: key, contentType: o.ContentType, metadata: maps.Clone(o.Metadata), tags: o.Tags, cond: cond}
	if req.contentType == "" {
		req.contentType, _ = Sniff(buf)
	}

	var info Info
	total := int64(len(buf))
	if int64(len(buf)) < partSize || size == partSize {
		if size >= 0 && total != size {
			return Info{}, fmt.Errorf("storage: write %s: %w after %d of %d bytes", key, io.ErrUnexpectedEOF, total, size)
		}
		if err := verifyDeclared(key, o.SHA256, h, total); err != nil {
			return Info{}, err
		}
		sum := hex.EncodeToString(h.Sum(nil))
		if req.metadata == nil {
			req.metadata = map[string]string{}
		}
		req.metadata[MetaSHA256] = sum
		req.sha256 = sum
		if info, err = u.putOne(ctx, req, buf); err != nil {
			return Info{}, err
		}
		info.SHA256 = sum
	} else {
		delete(req.metadata, MetaSHA256) // it would describe another content
		if o.SHA256 != "" {
			// Sent before the content, but the object exists only if
			// writeParts finds the content matches it.
			if req.metadata == nil {
				req.metadata = map[string]string{}
			}
			req.metadata[MetaSHA256] = o.SHA256
		}
		if info, total, err = writeParts(ctx, u, req, buf, src, size, full, h, o.SHA256); err != nil {
			return Info{}, err
		}
		info.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	info.Key, info.Size, info.ContentType = key, total, req.contentType
	info.Metadata = req.metadata
	return info, nil
}

// partsInFlight is how many parts of one write are sent at once. While
// they go, the next part is read and hashed, so the network, the hash and
// the server's work overlap: memory is partsInFlight+1 parts at most.
const partsInFlight = 2

// streamedSmallParts is how many parts of a write of unknown size are
// minPartSize before the rest go at defaultPartSize.
const streamedSmallParts = 1000

// abortOnError aborts the multipart upload id when *err is set. It aborts
// even when ctx is done, or the parts would linger until a lifecycle rule
// removes them; an abort that fails joins *err.
func abortOnError(ctx context.Context, u uploader, req request, id string, err *error) {
	if *err == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if aerr := u.abort(actx, req, id); aerr != nil {
		*err = errors.Join(*err, aerr)
	}
}

// writeParts uploads first and the rest of src as parts and completes the
// upload; on any error it aborts it. A stream of unknown size goes on in
// parts of full bytes after streamedSmallParts. Parts are read and hashed in order,
// and sent partsInFlight at a time. A declared sha256 is checked against
// h before the upload completes.
func writeParts(ctx context.Context, u uploader, req request, first []byte, src io.Reader, size, full int64, h hash.Hash, declared string) (_ Info, total int64, err error) {
	id, err := u.startMultipart(ctx, req)
	if err != nil {
		return Info{}, 0, err
	}
	defer abortOnError(ctx, u, req, id, &err)
	ps := newPartSender(ctx, u, req, id, len(first))
	buf := first // full: len(first) is the part size
	limit := len(first)
	for n := int32(1); ; n++ {
		if n > maxParts {
			ps.fail(fmt.Errorf("storage: write %s: more than %d parts of %d bytes", req.key, maxParts, limit))
			break
		}
		if !ps.send(n, buf) {
			break
		}
		total += int64(len(buf))
		if len(buf) < limit {
			break
		}
		if size < 0 && n == streamedSmallParts && int64(limit) < full {
			// A large stream: the remaining parts at the configured size,
			// so 10,000 parts still hold (1,000 of 5 MiB and 9,000 of
			// 16 MiB by default, about 145 GB).
			limit = int(full)
		}
		if buf, err = readChunk(src, ps.buffer(), limit); err != nil {
			ps.fail(fmt.Errorf("storage: write %s: read: %w", req.key, err))
			break
		}
		if len(buf) == 0 {
			break
		}
	}
	parts, err := ps.wait()
	if err != nil {
		return Info{}, 0, err
	}
	if size >= 0 && total != size {
		return Info{}, 0, fmt.Errorf("storage: write %s: %w after %d of %d bytes", req.key, io.ErrUnexpectedEOF, total, size)
	}
	if err = verifyDeclared(req.key, declared, h, total); err != nil {
		return Info{}, 0, err
	}
	info, err := u.complete(ctx, req, id, parts)
	return info, total, err
}

// partSender sends the parts of one upload, partsInFlight at a time, and
// recycles their buffers.
type partSender struct {
	ctx    context.Context
	cancel context.CancelFunc
	u      uploader
	req    request
	id     string

	slots    chan struct{} // one per part being sent
	free     chan []byte   // buffers of parts sent
	partSize int
	made     int // buffers made, at most partsInFlight+1

	mu    sync.Mutex
	parts []part
	err   error
	wg    sync.WaitGroup
}

func newPartSender(ctx context.Context, u uploader, req request, id string, partSize int) *partSender {
	ctx, cancel := context.WithCancel(ctx)
	return &partSender{
		ctx: ctx, cancel: cancel, u: u, req: req, id: id, partSize: partSize,
		slots: make(chan struct{}, partsInFlight), free: make(chan []byte, partsInFlight+1),
		made: 1, // the caller's first buffer
	}
}

// send starts sending part n once a slot is free; false if the upload has
// failed, and the caller should stop reading.
func (ps *partSender) send(n int32, body []byte) bool {
	select {
	case ps.slots <- struct{}{}:
	case <-ps.ctx.Done():
		ps.fail(ps.ctx.Err())
		return false
	}
	if ps.failed() {
		<-ps.slots
		return false
	}
	ps.wg.Go(func() {
		defer func() { <-ps.slots }()
		etag, err := ps.u.putPart(ps.ctx, ps.req, ps.id, n, body, "")
		ps.free <- body
		if err != nil {
			ps.fail(err)
			return
		}
		ps.mu.Lock()
		defer ps.mu.Unlock()
		for len(ps.parts) < int(n) {
			ps.parts = append(ps.parts, part{})
		}
		ps.parts[n-1] = part{number: n, etag: etag}
	})
	return true
}

// buffer is an empty buffer for the next part: a recycled one, or a new
// one while fewer than partsInFlight+1 exist.
func (ps *partSender) buffer() []byte {
	select {
	case b := <-ps.free:
		return b[:0]
	default:
	}
	if ps.made < partsInFlight+1 {
		ps.made++
		return make([]byte, 0, ps.partSize)
	}
	select {
	case b := <-ps.free:
		return b[:0]
	case <-ps.ctx.Done():
		return nil // readChunk grows it; send then sees the failure
	}
}

// fail records the first error and stops the parts in flight.
func (ps *partSender) fail(err error) {
	ps.mu.Lock()
	if ps.err == nil {
		ps.err = err
	}
	ps.mu.Unlock()
	ps.cancel()
}

func (ps *partSender) failed() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.err != nil
}

// wait waits for the parts in flight and returns them in order.
func (ps *partSender) wait() ([]part, error) {
	ps.wg.Wait()
	ps.cancel()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.parts, ps.err
}

// readChunk reads r into buf until limit bytes or EOF. It grows buf as data
// comes, so a small object costs little memory, and never past limit.
func readChunk(r io.Reader, buf []byte, limit int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(max(2*cap(buf), 64<<10), limit))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// writes are a Store's Bucket, Create, Replace and Put, the same on both
// drivers: the preconditions and the multipart logic are write's, and the
// driver (drv, the store that embeds these) only makes the S3 calls.
type writes struct {
	drv      multipartStore
	bucket   string
	region   string
	partSize int64
	// statBeforeReplace: see Config.StatBeforeReplace.
	statBeforeReplace bool
}

func newWrites(cfg Config) writes {
	return writes{bucket: cfg.Bucket, region: cfg.region(), partSize: cfg.partSize, statBeforeReplace: cfg.StatBeforeReplace}
}

func (s *writes) Bucket() string { return s.bucket }

func (s *writes) Create(ctx context.Context, key string, r io.Reader, size int64, o PutOptions) (Info, error) {
	return write(ctx, s.drv, s.partSize, key, r, size, o, precondition{absent: true})
}

func (s *writes) Replace(ctx context.Context, key, etag string, r io.Reader, size int64, o PutOptions) (Info, error) {
	if etag == "" {
		return Info{}, fmt.Errorf("storage: replace %s: empty etag", key)
	}
	if s.statBeforeReplace {
		if err := currentIs(ctx, s.drv, key, etag); err != nil {
			return Info{}, err
		}
	}
	return write(ctx, s.drv, s.partSize, key, r, size, o, precondition{ifMatch: etag})
}

func (s *writes) Put(ctx context.Context, key string, r io.Reader, size int64, o PutOptions) (Info, error) {
	return write(ctx, s.drv, s.partSize, key, r, size, o, precondition{})
}

// currentIs refuses a replace whose object is gone or was replaced, for
// stores whose If-Match does not see deletes (Config.StatBeforeReplace).
func currentIs(ctx context.Context, s Store, key, etag string) error {
	info, err := s.Stat(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("storage: replace %s: the object is gone: %w", key, ErrConflict)
	case err != nil:
		return err
	case info.ETag != etag:
		return fmt.Errorf("storage: replace %s: the object changed (ETag %s, not %s): %w", key, info.ETag, etag, ErrConflict)
	}
	return nil
}
