package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// ErrSHA256Mismatch is a write whose content does not hash to the
// PutOptions.SHA256 it declared; nothing was stored.
var ErrSHA256Mismatch = errors.New("storage: content does not match its declared sha256")

// checkDeclared refuses a declared sha256 that is not 64 hex digits.
func checkDeclared(key, sum string) error {
	if sum == "" {
		return nil
	}
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != 2*sha256.Size {
		return task.Errorf(task.InvalidInput, "storage: write %s: declared sha256 %q is not 64 hex digits", key, sum)
	}
	return nil
}

// verifyDeclared compares what a write hashed with what it declared.
func verifyDeclared(key, declared string, h hash.Hash, n int64) error {
	if declared == "" {
		return nil
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != declared {
		return fmt.Errorf("%w: %s: %d bytes hash to %s, declared %s", ErrSHA256Mismatch, key, n, got, declared)
	}
	return nil
}

// classifyWrite maps a failed write to the project's typed errors. S3 (and
// MinIO) answer a failed If-None-Match or If-Match with 412
// PreconditionFailed; AWS answers 409 ConditionalRequestConflict when a
// concurrent conditional write is in flight. If-Match on a key that no
// longer exists is 404 on AWS: for Replace that is a conflict too, since
// the version the caller read is gone.
func classifyWrite(bucket string, req request, status int, code string, err error) error {
	conflict := status == http.StatusPreconditionFailed || code == "PreconditionFailed" ||
		code == "ConditionalRequestConflict"
	gone := req.cond.ifMatch != "" && (code == "NoSuchKey" || status == http.StatusNotFound && code != "NoSuchBucket" && code != "NoSuchUpload")
	switch {
	case gone:
		return task.Errorf(task.Conflict, "storage: %s no longer exists (wanted etag %s)", req.key, unquote(req.cond.ifMatch))
	case conflict && req.cond.absent:
		return task.Errorf(task.Conflict, "storage: %s already exists (%s)", req.key, codeOr(code, status))
	case conflict && req.cond.ifMatch != "":
		return task.Errorf(task.Conflict, "storage: %s changed since etag %s (%s)", req.key, unquote(req.cond.ifMatch), codeOr(code, status))
	case code == "NoSuchBucket":
		return task.Errorf(task.NotFound, "storage: write %s: bucket %s does not exist", req.key, bucket)
	}
	return fmt.Errorf("storage: write %s: %w", req.key, err)
}

// classifyRead maps a failed read to ErrNotFound when the key (or the
// bucket) is missing. A HEAD has no body, so its 404 has no code.
func classifyRead(op, bucket, key string, status int, code string, err error) error {
	switch {
	case code == "NoSuchBucket":
		return task.Errorf(task.NotFound, "storage: %s %s: bucket %s does not exist", op, key, bucket)
	case code == "NoSuchKey" || code == "NotFound" || code == "NoSuchVersion" || status == http.StatusNotFound:
		return task.Errorf(task.NotFound, "storage: %s %s: no such key", op, key)
	}
	return fmt.Errorf("storage: %s %s: %w", op, key, err)
}

func codeOr(code string, status int) string {
	if code != "" {
		return code
	}
	return strconv.Itoa(status)
}

// unquote strips the quotes S3 puts around an ETag, so ETags compare as
// plain strings whichever driver returned them.
func unquote(etag string) string { return strings.Trim(etag, `"`) }

// rangeTotal is the object size in a Content-Range ("bytes 5-9/10").
func rangeTotal(contentRange string) (int64, bool) {
	_, total, ok := strings.Cut(contentRange, "/")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil
}

// emptyAtEnd answers a range read that S3 refused (416) because offset is
// not inside the object: at exactly its end it is an empty read, so a
// resumed download that had everything finishes normally.
func emptyAtEnd(ctx context.Context, s Store, key string, offset int64) (io.ReadCloser, Info, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, Info{}, err
	}
	if offset != info.Size {
		return nil, Info{}, task.Errorf(task.InvalidInput, "storage: get %s: offset %d is past its size %d", key, offset, info.Size)
	}
	return io.NopCloser(strings.NewReader("")), info, nil
}

// userMetadata lower-cases the keys of user metadata (clients differ in
// case) and picks out the stored sha256.
func userMetadata(m map[string]string) (map[string]string, string) {
	if len(m) == 0 {
		return nil, ""
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out, out[MetaSHA256]
}

// Unreachable reports whether err is the store being out of reach rather
// than an answer about the request: refused or reset connections, a
// stream cut short, a timeout, or a 5xx after the client's own retries.
// A caller may hold what it has and try again later; the typed errors
// (conflict, not found) and 4xx answers are never unreachable.
func Unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var te *task.Error
	if errors.As(err, &te) {
		return false
	}
	var me minio.ErrorResponse
	if errors.As(err, &me) && me.StatusCode != 0 {
		return me.StatusCode >= 500
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) && status.HTTPStatusCode() != 0 {
		return status.HTTPStatusCode() >= 500
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF)
}
