package devstack

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestStartStop starts the real stack, checks both servers answer and the
// bucket exists, then checks Stop leaves no server running.
func TestStartStop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Temporal dev server and MinIO")
	}
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Dir: t.TempDir(), BinDir: bin, Buckets: []string{"devstack-test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	mc, err := s.S3Client()
	if err != nil {
		t.Fatal(err)
	}
	ok, err := mc.BucketExists(ctx, "devstack-test")
	if err != nil || !ok {
		t.Fatalf("bucket devstack-test: exists=%v err=%v", ok, err)
	}
	if err := CheckTemporal(ctx, s.TemporalAddress, s.Namespace); err != nil {
		t.Fatalf("temporal does not answer: %v", err)
	}
	pids := s.PIDs()
	if len(pids) != 2 {
		t.Fatalf("want 2 server PIDs, got %v", pids)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		// Signal 0 probes for existence; the child was reaped by Wait.
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
}
