package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
)

// streamAbove is the size past which a PutOptions.Stream write goes as a
// multipart upload streamed from its reader; below it one buffered PUT
// costs at most this much memory.
const streamAbove = 1 << 20

// writeStream sends the size bytes of r as a multipart upload whose parts
// are read from r while they are sent, one at a time: no part is held in
// memory. A read error of r (a merge's CorruptPartError) is what it
// returns, and the upload is aborted, so nothing is stored.
func writeStream(ctx context.Context, u streamUploader, key string, r io.Reader, size int64, o PutOptions, cond precondition) (_ Info, err error) {
	partSize := int64(minPartSize)
	if (size+partSize-1)/partSize > maxParts {
		partSize = ((size/maxParts)>>20 + 1) << 20
	}
	h := sha256.New()
	src := &countingReader{r: io.TeeReader(io.LimitReader(r, size), h)}
	req := request{key: key, contentType: o.ContentType, metadata: maps.Clone(o.Metadata), tags: o.Tags, cond: cond}
	if req.contentType == "" {
		var rr io.Reader
		if req.contentType, _, rr, err = SniffReader(src.r); err != nil {
			return Info{}, fmt.Errorf("storage: write %s: read: %w", key, err)
		}
		src.r = rr
	}
	delete(req.metadata, MetaSHA256) // known only after the last part
	if o.SHA256 != "" {
		// Declared: the upload completes only if the content matches.
		if req.metadata == nil {
			req.metadata = map[string]string{}
		}
		req.metadata[MetaSHA256] = o.SHA256
	}

	id, err := u.startMultipart(ctx, req)
	if err != nil {
		return Info{}, err
	}
	defer abortOnError(ctx, u, req, id, &err)
	var parts []part
	for n, off := int32(1), int64(0); off < size; n, off = n+1, off+partSize {
		l := min(partSize, size-off)
		etag, err := u.putPartStream(ctx, req, id, n, io.LimitReader(src, l), l)
		if src.err != nil {
			// The reader's own error says what went wrong, not the
			// request it broke.
			return Info{}, fmt.Errorf("storage: write %s: read: %w", key, src.err)
		}
		if err != nil {
			return Info{}, err
		}
		if src.n != off+l {
			return Info{}, fmt.Errorf("storage: write %s: %w after %d of %d bytes", key, io.ErrUnexpectedEOF, src.n, size)
		}
		parts = append(parts, part{number: n, etag: etag})
	}
	if err = verifyDeclared(key, o.SHA256, h, src.n); err != nil {
		return Info{}, err
	}
	info, err := u.complete(ctx, req, id, parts)
	if err != nil {
		return Info{}, err
	}
	info.Key, info.Size, info.ContentType = key, size, req.contentType
	info.SHA256 = hex.EncodeToString(h.Sum(nil))
	info.Metadata = req.metadata
	return info, nil
}

// countingReader counts what it reads and keeps its first error other
// than EOF.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}
