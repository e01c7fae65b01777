package model

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// reopenLimit is how many times one Download resumes a broken stream
// before it gives up and leaves the rest to the next attempt (which
// resumes from the staged bytes too).
const reopenLimit = 2

// Downloaded is what Download did.
type Downloaded struct {
	SHA256 string
	// Reused bytes were staged by an earlier, interrupted download.
	Reused int64
	// Resumes counts the Range requests that went on from a broken stream
	// or a staged part.
	Resumes int
}

// ErrChecksum is a file whose bytes do not hash to what the upstream
// lists: the staged copy is dropped and the download starts over.
var ErrChecksum = errors.New("model: sha256 mismatch")

// Download brings fileURL into the staging file path, resuming from the
// bytes already there with Range requests, hashing as the bytes arrive,
// and checks the result against want. progress, if set, hears the bytes
// staged so far.
func (u Upstream) Download(ctx context.Context, fileURL, path string, want task.ModelFile, progress func(int64)) (Downloaded, error) {
	var d Downloaded
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return d, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := stagedPrefix(f, h, want.Size)
	if err != nil {
		return d, err
	}
	d.Reused = size
	for reopens := 0; size < want.Size; reopens++ {
		if size > 0 {
			d.Resumes++
		}
		n, err := u.fetchFrom(ctx, f, h, fileURL, size, want.Size, progress)
		if errors.Is(err, errRestart) {
			h.Reset()
			size, d.Reused = 0, 0
			continue
		}
		size = n
		if errors.Is(err, ErrChecksum) {
			return d, errors.Join(err, f.Truncate(0))
		}
		if err != nil {
			if ctx.Err() != nil || task.TypeOf(err) != "" || reopens >= reopenLimit {
				return d, err
			}
			continue
		}
		if size != want.Size {
			break
		}
	}
	d.SHA256 = hex.EncodeToString(h.Sum(nil))
	if size != want.Size || d.SHA256 != want.SHA256 {
		_ = f.Truncate(0)
		return d, fmt.Errorf("%w: %s is %d bytes with sha256 %s, the upstream lists %d bytes with %s", ErrChecksum, want.Name, size, d.SHA256, want.Size, want.SHA256)
	}
	return d, nil
}

// errRestart: the upstream sent the whole file, not the range asked for.
var errRestart = errors.New("model: restart")

// stagedPrefix hashes the bytes an earlier download staged, or drops
// them if there are more than the file has.
func stagedPrefix(f *os.File, h hash.Hash, want int64) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if size > want {
		return 0, f.Truncate(0)
	}
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return 0, err
	}
	return size, nil
}

// fetchFrom appends the file from offset on to f and h, and returns how
// many bytes f holds when the stream ends or breaks. It stages no byte
// past size: an upstream that sends more than it listed is refused, not
// allowed to fill the disk.
func (u Upstream) fetchFrom(ctx context.Context, f *os.File, h hash.Hash, fileURL string, offset, size int64, progress func(int64)) (int64, error) {
	body, resumed, err := u.Open(ctx, fileURL, offset)
	if errors.Is(err, errRangeNotSatisfiable) || (err == nil && offset > 0 && !resumed) {
		if body != nil {
			body.Close()
		}
		return 0, errors.Join(errRestart, f.Truncate(0))
	}
	if err != nil {
		return offset, err
	}
	defer body.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return offset, err
	}
	w := &countingWriter{w: io.MultiWriter(f, h), n: offset, progress: progress}
	if _, err = io.CopyBuffer(w, io.LimitReader(body, size-offset), make([]byte, 1<<20)); err != nil {
		return w.n, err
	}
	if n, _ := body.Read(make([]byte, 1)); n > 0 {
		return w.n, fmt.Errorf("%w: %s sends more than the %d bytes it lists", ErrChecksum, redact(fileURL), size)
	}
	return w.n, nil
}

type countingWriter struct {
	w        io.Writer
	n        int64
	progress func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.progress != nil {
		c.progress(c.n)
	}
	return n, err
}
