package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeTemporal makes a bin folder whose temporal fails its first starts
// with failure (a log line and exit 2) and then runs the real one; it
// returns the folder and the file that counts its starts.
func fakeTemporal(t *testing.T, fails int, failure string) (bin, starts string) {
	t.Helper()
	real, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	bin, starts = t.TempDir(), filepath.Join(t.TempDir(), "starts")
	script := fmt.Sprintf(`#!/bin/sh
n=$(($(cat %[1]q 2>/dev/null || echo 0) + 1))
echo $n > %[1]q
if [ $n -le %[2]d ]; then
	printf '%%s\n' %[3]q
	exit 2
fi
exec %[4]q "$@"
`, starts, fails, failure, filepath.Join(real, "temporal"))
	if err := os.WriteFile(filepath.Join(bin, "temporal"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(real, "minio"), filepath.Join(bin, "minio")); err != nil {
		t.Fatal(err)
	}
	return bin, starts
}

func startsOf(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// A server that exits because another process took one of its ports
// between their choice and its bind (the Temporal dev server picks its
// internal ports itself) is started again, on ports chosen afresh.
func TestAServerThatFindsAPortTakenStartsAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Temporal dev server and MinIO")
	}
	bin, starts := fakeTemporal(t, 1, `time=2026-12-04T19:21:41 level=ERROR msg="Failed to start gRPC listener" error="listen tcp 127.0.0.1:40001: bind: address already in use"`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Dir: t.TempDir(), BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if n := startsOf(t, starts); n != "2" {
		t.Errorf("temporal was started %s times; want 2", n)
	}
	if err := CheckTemporal(ctx, s.TemporalAddress, s.Namespace); err != nil {
		t.Fatalf("temporal does not answer: %v", err)
	}
	if pids := s.PIDs(); len(pids) != 2 {
		t.Errorf("the stack holds %v; want the 2 servers running, not the one that exited", pids)
	}
}

// Any other failure is not retried, and the error says why the server
// failed, not only the tail of its stack.
func TestAServerThatFailsOtherwiseIsNotStartedAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	bin, starts := fakeTemporal(t, 3, "panic: runtime error: invalid memory address or nil pointer dereference")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := Start(ctx, Options{Dir: t.TempDir(), BinDir: bin})
	if err == nil || errors.Is(err, ErrPortTaken) || !strings.Contains(err.Error(), "exited before it answered (exit status 2): panic: runtime error") {
		t.Fatalf("Start: %v; want temporal's panic, not a taken port", err)
	}
	if n := startsOf(t, starts); n != "1" {
		t.Errorf("temporal was started %s times; want 1", n)
	}
}
