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
	cond        precondition
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
	putPart(ctx context.Context, req request, uploadID string, p int32, body []byte) (etag string, err error)
	complete(ctx context.Context, req request, uploadID string, parts []part) (Info, error)
	abort(ctx context.Context, req request, uploadID string) error
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
	buf, err := readChunk(src, nil, first)
	if err != nil {
		return Info{}, fmt.Errorf("storage: write %s: read: %w", key, err)
	}
	req := request{key: key, contentType: o.ContentType, metadata: maps.Clone(o.Metadata), cond: cond}
	if req.contentType == "" {
		req.contentType, _ = Sniff(buf)
	}

	var info Info
	total := int64(len(buf))
	if int64(len(buf)) < partSize || size == partSize {
		if size >= 0 && total != size {
			return Info{}, fmt.Errorf("storage: write %s: %w after %d of %d bytes", key, io.ErrUnexpectedEOF, total, size)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		if req.metadata == nil {
			req.metadata = map[string]string{}
		}
		req.metadata[MetaSHA256] = sum
		if info, err = u.putOne(ctx, req, buf); err != nil {
			return Info{}, err
		}
		info.SHA256 = sum
	} else {
		delete(req.metadata, MetaSHA256) // it would describe another content
		if info, total, err = writeParts(ctx, u, req, buf, src, size, h); err != nil {
			return Info{}, err
		}
		info.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	info.Key, info.Size, info.ContentType = key, total, req.contentType
	info.Metadata = req.metadata
	return info, nil
}

// writeParts uploads first and the rest of src as parts, reusing first's
// buffer, and completes the upload; on any error it aborts it.
func writeParts(ctx context.Context, u uploader, req request, first []byte, src io.Reader, size int64, h hash.Hash) (_ Info, total int64, err error) {
	id, err := u.startMultipart(ctx, req)
	if err != nil {
		return Info{}, 0, err
	}
	defer func() {
		if err == nil {
			return
		}
		// Abort even when ctx is done, or the parts linger until a
		// lifecycle rule removes them.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if aerr := u.abort(actx, req, id); aerr != nil {
			err = errors.Join(err, aerr)
		}
	}()
	var parts []part
	buf := first // full: len(first) is the part size
	for n := int32(1); ; n++ {
		if n > maxParts {
			return Info{}, 0, fmt.Errorf("storage: write %s: more than %d parts of %d bytes", req.key, maxParts, len(first))
		}
		etag, err := u.putPart(ctx, req, id, n, buf)
		if err != nil {
			return Info{}, 0, err
		}
		parts = append(parts, part{number: n, etag: etag})
		total += int64(len(buf))
		if len(buf) < len(first) {
			break
		}
		if buf, err = readChunk(src, buf, len(first)); err != nil {
			return Info{}, 0, fmt.Errorf("storage: write %s: read: %w", req.key, err)
		}
		if len(buf) == 0 {
			break
		}
	}
	if size >= 0 && total != size {
		return Info{}, 0, fmt.Errorf("storage: write %s: %w after %d of %d bytes", req.key, io.ErrUnexpectedEOF, total, size)
	}
	info, err := u.complete(ctx, req, id, parts)
	return info, total, err
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
