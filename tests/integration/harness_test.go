// Package integration runs autoglm-flow end to end on real parts: the
// Temporal dev server and MinIO (started once by TestMain through
// internal/devstack), real workers (in this process, or as `autoglm worker`
// processes that the tests stop with SIGTERM or kill with SIGKILL) and the
// CLI's own code path (internal/taskclient). The model server is the one
// stand-in: internal/llm/testmodel, with programmable latency and faults.
//
// Tests run one after another: each starts its own worker under a node
// name of its own and stops it before the next test, so no test's task is
// dispatched to another test's node.
package integration

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// bucket is the bucket every test uses.
const bucket = "autoglm"

// suite is what TestMain starts once and every test shares.
var suite struct {
	*testenv.Env // what testenv.Main started: Dir, Stack, CLI, Temporal, Store, Signer, …
	model        *testmodel.Server
	tasks        *taskclient.Client // what the CLI uses: submit, status, decide, wait
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, "integration", testenv.Options{
		Skip:   "these tests start Temporal, MinIO and worker processes",
		Bucket: bucket,
	}, setUp))
}

// setUp takes what testenv.Main started (the stack, the environment
// pointed at it, the CLI, the clients and a trusted break-glass key: these
// tests drive Temporal directly, as an operator on that path does) and
// starts the shared test model server. testenv stops the worker
// processes after the tests, before the stack.
func setUp(e *testenv.Env) error {
	suite.Env = e
	var err error
	if suite.model, err = e.StartModel(); err != nil {
		return err
	}
	os.Setenv("AUTOGLM_LOG_LEVEL", "info")
	suite.tasks = &taskclient.Client{Temporal: suite.Temporal, Store: suite.Store, Signer: suite.Signer}
	fmt.Printf("integration: stack up in %s (temporal %s, minio %s, model %s)\n",
		time.Since(e.Started).Round(100*time.Millisecond), e.Stack.TemporalAddress, e.Stack.S3Endpoint, suite.model.URL())
	return nil
}

// Shared with the other integration packages (internal/testenv).
var (
	testCtx    = testenv.Context
	eventually = testenv.Eventually
)
