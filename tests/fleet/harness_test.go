// Package fleet tests the fleet and its models on real parts: the Temporal
// dev server and MinIO (started once by TestMain through internal/devstack,
// on free loopback ports, stopped by PID) and workers on them. The stand-ins
// are servers of ours, named as what they are: the Hugging Face-style
// model hub (internal/model/testhub) and webhook receivers.
package fleet

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

const bucket = "autoglm"

var suite struct {
	*testenv.Env // what testenv.Main started: Dir, Stack, CLI, Temporal, Store, Signer, …
	model        *testmodel.Server
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, "fleet", testenv.Options{
		Skip:   "these tests start Temporal and MinIO",
		Bucket: bucket,
	}, setUp))
}

// setUp takes what testenv.Main started and starts the shared model
// server. The CLI runs direct here, the operators' break-glass path: it
// signs the actor assertions of updates (task decisions, access decisions)
// with the key testenv trusts, which the nodes trust too.
func setUp(e *testenv.Env) error {
	suite.Env = e
	var err error
	if suite.model, err = e.StartModel(); err != nil {
		return err
	}
	return nil
}

// Shared with the other integration packages (internal/testenv).
var (
	testCtx    = testenv.Context
	eventually = func(t *testing.T, ctx context.Context, what string, cond func() (bool, error)) {
		t.Helper()
		testenv.Eventually(t, ctx, what, 100*time.Millisecond, cond)
	}
)
