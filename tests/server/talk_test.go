package server

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// TestFleetSelectorMatchingNoNode: a fleet command whose selector picks no
// node ran nothing, and says so with a non-zero exit, on both paths.
func TestFleetSelectorMatchingNoNode(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	for name, env := range map[string][]string{
		"server":      cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["olga"]),
		"break-glass": breakGlassEnv(t.TempDir(), "olga"),
	} {
		r := suite.RunCLI(t, ctx, testenv.CLIOptions{Env: env}, "fleet", "exec", "--selector", "gpu=none-such", "health")
		if r.Code != 4 || !strings.Contains(r.Stderr, "matches no live node") {
			t.Errorf("%s: exit %d, stderr %q; want 4 and a sentence saying no node matched", name, r.Code, r.Stderr)
		}
		if strings.Contains(r.Output, "Error:") || strings.Contains(r.Output, "wrapError") {
			t.Errorf("%s: an internal name in %q", name, r.Output)
		}
	}
}

// TestWatchLeavesQuietlyOnCtrlC: an interrupted watch exits 130 and
// prints no error, on both paths; the task goes on.
func TestWatchLeavesQuietlyOnCtrlC(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	id := submitBatch(t, ctx, "alice", 12) // waits for a reviewer
	for name, env := range map[string][]string{
		"server":      cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["alice"]),
		"break-glass": breakGlassEnv(t.TempDir(), "alice"),
	} {
		cmd := exec.CommandContext(ctx, suite.CLI, "watch", id)
		cmd.Env = env
		var stderr strings.Builder
		stdout := &lineWaiter{ch: make(chan struct{})}
		cmd.Stdout, cmd.Stderr = stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-stdout.ch: // it is watching: the first transition is out
		case <-ctx.Done():
			t.Fatalf("%s: watch printed nothing", name)
		}
		cmd.Process.Signal(os.Interrupt)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || stderr.String() != "" {
			t.Errorf("%s: Ctrl-C: %v, stderr %q; want exit 130 and nothing on stderr", name, err, stderr.String())
		}
	}
	must(t, ctx, http.StatusOK, "alice", "POST", "/api/v1/tasks/"+id+"/cancel", nil, nil)
}

// lineWaiter closes ch once a whole line has been written to it.
type lineWaiter struct {
	mu   sync.Mutex
	b    strings.Builder
	ch   chan struct{}
	done bool
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if !w.done && strings.Contains(w.b.String(), "\n") {
		w.done = true
		close(w.ch)
	}
	return len(p), nil
}
