package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"syscall"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// spoolPattern names the server's temporary files, so an operator can
// tell them from anything else in TempDir.
const spoolPattern = "autoglm-server-*"

// spoolFile is a request body on disk on its way to the bucket: the batch
// engine's upload wants a file it can size, hash and resume. A request
// has at most one; it holds one of its user's upload slots and its bytes
// count against the spool budget until remove, which every path of the
// handler that made it calls (defer).
type spoolFile struct {
	path    string
	user    string
	booked  int64
	limits  *limiter
	release func()
}

// remove deletes the file and gives back what it held. It may be called
// more than once.
func (f *spoolFile) remove() {
	if f == nil || f.release == nil {
		return
	}
	_ = os.Remove(f.path)
	f.limits.spooled.give(f.user, f.booked)
	f.release()
	f.release = nil
}

// spool copies body to a temporary file, up to limit bytes, for user:
// refused with 429 when the user or the server has too many uploads in
// progress, with 507 when the bytes would pass the user's or the server's
// spool budget or the disk is full. On error nothing is left on disk.
func (s *Server) spool(user string, body io.Reader, limit int64) (*spoolFile, error) {
	release, err := s.limits.startUpload(user)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.TempDir, spoolPattern)
	if err != nil {
		release()
		return nil, diskError(err)
	}
	sf := &spoolFile{path: f.Name(), user: user, limits: s.limits, release: release}
	bw := &bookingWriter{f: f, sf: sf}
	n, err := io.Copy(bw, io.LimitReader(body, limit+1))
	if cerr := f.Close(); err == nil && cerr != nil {
		err = diskError(cerr)
	}
	switch {
	case bw.err != nil:
		err = bw.err
	case err != nil:
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = task.Errorf(task.InvalidInput, "the request body is over the %d-byte limit", mbe.Limit)
		} else {
			err = task.Errorf(task.InvalidInput, "reading the request body: %v", err)
		}
	case n > limit:
		err = task.Errorf(task.InvalidInput, "the file is over the %d-byte limit", limit)
	case n == 0:
		err = task.Errorf(task.InvalidInput, "the request has no body: send a prompt as JSON or a batch file as application/jsonl")
	}
	if err != nil {
		sf.remove()
		return nil, err
	}
	return sf, nil
}

// bookingWriter books each chunk against the spool budget before it
// writes it. err is why it stopped, when the cause is the server's side.
type bookingWriter struct {
	f   *os.File
	sf  *spoolFile
	err error
}

func (w *bookingWriter) Write(p []byte) (int, error) {
	if err := w.sf.limits.reserveSpool(w.sf.user, int64(len(p))); err != nil {
		w.err = err
		return 0, err
	}
	w.sf.booked += int64(len(p))
	n, err := w.f.Write(p)
	if err != nil {
		w.err = diskError(err)
		return n, w.err
	}
	return n, nil
}

// diskError is a full disk as the 507 it is, other errors as they are.
func diskError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &limitError{http.StatusInsufficientStorage, fmt.Sprintf("the server's disk for uploads is full; try again later (%v)", err)}
	}
	return err
}

// drainLimit is how much of a refused request's body the server still
// reads, and throws away, before it answers: a client that is still
// sending when the refusal comes (a body cut off at the spool budget, a
// form with a second file) then reads the answer instead of a reset
// connection. Past it the connection is closed. It costs the server the
// network only, never the disk.
const drainLimit = 64 << 20

// trackedBody tells whether the handler began reading the body: a body
// it never touched was not asked for (Expect: 100-continue) and must not
// be drained.
type trackedBody struct {
	io.ReadCloser
	started bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.started = true
	return b.ReadCloser.Read(p)
}

// trackBody wraps r's body; drain reads what is left of it, up to
// drainLimit, if the handler began reading it.
func trackBody(r *http.Request) (drain func()) {
	if r.Body == nil || r.Body == http.NoBody {
		return func() {}
	}
	tb := &trackedBody{ReadCloser: r.Body}
	r.Body = tb
	return func() {
		if tb.started {
			_, _ = io.CopyN(io.Discard, tb.ReadCloser, drainLimit)
		}
	}
}
