package storage

import (
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A store out of reach is told from an answer about the request: the
// callers that hold through an outage must not hold on a conflict or a
// refusal.
func TestUnreachable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("storage: write k: %w", refused), true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"stream cut short", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true},
		{"503 after retries", fmt.Errorf("storage: write k: %w", minio.ErrorResponse{StatusCode: 503, Code: "XMinioServerNotInitialized"}), true},
		{"403", fmt.Errorf("storage: write k: %w", minio.ErrorResponse{StatusCode: 403, Code: "AccessDenied"}), false},
		{"conflict", task.Errorf(task.Conflict, "storage: k already exists"), false},
		{"not found", task.Errorf(task.NotFound, "storage: no such key"), false},
		{"cancelled", fmt.Errorf("storage: %w", context.Canceled), false},
		{"nil", nil, false},
	} {
		if got := Unreachable(tc.err); got != tc.want {
			t.Errorf("%s: Unreachable(%v) = %v; want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
