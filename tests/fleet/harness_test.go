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

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

const bucket = "autoglm"

var suite struct {
	env      *testenv.Env
	dir      string
	stack    *devstack.Stack
	temporal client.Client
	store    storage.Store
	cli      string // the autoglm binary built from ./starter
	model    *testmodel.Server
	signer   *assertion.Signer // the break-glass key the tests sign updates with
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, "fleet", testenv.Options{
		Skip:        "these tests start Temporal and MinIO",
		TempPrefix:  "autoglm-fleet-",
		Kept:        "server logs are kept in",
		Interrupted: "interrupted; stopping the servers",
		Bucket:      bucket,
	}, setUp))
}

// setUp takes what testenv.Main started and starts the shared model
// server. The CLI runs direct here, the operators' break-glass path: it
// signs the actor assertions of updates (task decisions, access decisions)
// with the key testenv trusts, which the nodes trust too.
func setUp(e *testenv.Env) error {
	suite.env, suite.dir, suite.stack, suite.cli = e, e.Dir, e.Stack, e.CLI
	suite.temporal, suite.store, suite.signer = e.Temporal, e.Store, e.Signer
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
