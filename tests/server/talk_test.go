package server

import (
	"strings"
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
