package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
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

// WaitState polls the task's status until it is in state, failing the test
// at once if the task reaches another final state, and when ctx ends.
func WaitState(t *testing.T, ctx context.Context, tasks *taskclient.Client, id string, state task.State) task.Status {
	t.Helper()
	var st task.Status
	Eventually(t, ctx, fmt.Sprintf("task %s to be %s", id, state), 100*time.Millisecond, func() (bool, error) {
		var err error
		if st, err = tasks.Status(ctx, id); err != nil {
			return false, err
		}
		if st.State != state && st.State.Final() {
			t.Fatalf("task %s ended %s while waiting for %s: %s", id, st.State, state, st.LastError)
		}
		return st.State == state, nil
	})
	return st
}
