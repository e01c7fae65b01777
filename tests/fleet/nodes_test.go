package fleet

import (
	"context"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
	"path/filepath"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/activities"
)

// node is one `autoglm worker` process: a node of the fleet.
type node struct {
	*testenv.Worker
	name  string
	cache string // its AUTOGLM_CACHE_DIR
}

// nodeOptions configure a node.
type nodeOptions struct {
	Labels string // AUTOGLM_LABELS
	Models string // AUTOGLM_MODELS
	// ModelURL is the node's model server; "" is the suite's test model.
	ModelURL string
	Env      []string
}

// startNode starts `autoglm worker` as a node of this test's own and waits
// until it has announced itself; the test's cleanup stops it by PID.
func startNode(t *testing.T, short string, o nodeOptions) *node {
	t.Helper()
	name := "fl-" + short + "-" + randHex(3)
	cache := filepath.Join(t.TempDir(), "cache")
	modelURL := o.ModelURL
	if modelURL == "" {
		modelURL = suite.model.URL()
	}
	if o.Models == "" {
		o.Models = "glm-4-test"
	}
	env := append([]string{"AUTOGLM_LLM_BASE_URL=" + modelURL, "AUTOGLM_MODELS=" + o.Models,
		"AUTOGLM_LABELS=" + o.Labels, "AUTOGLM_CACHE_DIR=" + cache, "AUTOGLM_MIRROR_STAGING_DIR=" + filepath.Join(t.TempDir(), "staging")}, o.Env...)
	w := suite.StartWorker(t, testenv.WorkerOptions{Node: name, Env: env})
	return &node{Worker: w, name: name, cache: cache}
}

func nodeRecord(ctx context.Context, name string) (activities.Node, error) {
	return suite.NodeRecord(ctx, name)
}

// runCLI runs the autoglm binary and returns its stdout and exit code.
func runCLI(t *testing.T, ctx context.Context, args ...string) (string, int) {
	t.Helper()
	r := suite.RunCLI(t, ctx, testenv.CLIOptions{}, args...)
	return r.Stdout, r.Code
}

// Shared with the other integration packages (internal/testenv).
var (
	randHex = testenv.RandHex
)
