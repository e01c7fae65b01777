package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"
)

// Context is a test's context with a guard: a hang fails the test at the
// guard instead of stalling the suite.
func Context(t *testing.T, guard time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond every interval until it holds, failing the test
// if ctx ends first. Errors from cond are remembered, not fatal: a server
// still starting answers with one.
func Eventually(t *testing.T, ctx context.Context, what string, interval time.Duration, cond func() (bool, error)) {
	t.Helper()
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// RandHex is n random bytes in hex: names no other test run uses.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
