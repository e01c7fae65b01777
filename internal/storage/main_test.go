package storage

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
)

// stack is the MinIO the contract tests run on; nil with -short.
var stack *devstack.Stack

// versity is the second real S3 store: versitygw on a POSIX folder.
var versity *devstack.Stack

// current is the store the running contract case talks to.
var current testStore

const testBucket = "contract"

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests starts MinIO once for the package and stops it on every way out
// of m.Run that returns; if the test binary itself dies, the kernel kills
// MinIO (devstack sets the parent-death signal).
func runTests(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	bin, err := devstack.BinDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := waitForBinary(filepath.Join(bin, "minio"), 10*time.Minute); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "storage-contract-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Options{Dir: dir, BinDir: bin, Buckets: []string{testBucket}, NoTemporal: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := s.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	stack = s
	v, err := devstack.StartVersity(ctx, devstack.Options{Dir: filepath.Join(dir, "versity"), BinDir: bin, Buckets: []string{testBucket}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer v.Stop()
	versity = v
	current = testStores()[0]
	return m.Run()
}

// waitForBinary waits for path to exist and to have been left alone for a
// few seconds: `make tools` may still be writing it.
func waitForBinary(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for said := false; ; said = true {
		st, err := os.Stat(path)
		if err == nil && st.Size() > 0 && time.Since(st.ModTime()) > 3*time.Second {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not built within %s: run `make tools`", path, timeout)
		}
		if !said {
			fmt.Fprintf(os.Stderr, "waiting for %s to be built...\n", path)
		}
		time.Sleep(time.Second)
	}
}
