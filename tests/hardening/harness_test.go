// Package hardening checks, on the real stack, that the worker holds its
// promises whoever starts a task and however: a task reads only its own
// tenant's objects, at the version screening saw; no prompt reaches
// workflow history; and the CLI answers a new user's mistakes with the
// right error and exit code.
//
// TestMain starts the Temporal dev server and MinIO through
// internal/devstack on free loopback ports, one in-process worker (node
// "hardening") against the test model server, and builds the autoglm
// binary; it stops them all by PID when the tests end.
package hardening

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

const (
	bucket = "autoglm"
	node   = "hardening"
	// The test model server serves glm-4-test only; glm-4-flash is allowed
	// to acme by the policy but served by no node.
	model       = testmodel.DefaultModel
	unserved    = "glm-4-flash"
	autoApprove = 10
)

// policy has two tenants, so that one can try to read the other's data,
// and a third whose webhooks lead to this machine: one names 127.0.0.1,
// the other a host name the worker's AUTOGLM_WEBHOOK_HOSTS maps to it. The
// port (%[1]d) is the hook trap's.
const policy = `tenants:
  hooks:
    models: [glm-4-test]
    users: {hank: [submitter]}
    webhooks:
      - name: literal-loopback
        url: https://127.0.0.1:%[1]d/hook
        secret_env: HARDENING_WEBHOOK_SECRET
      - name: resolved-loopback
        url: https://hooks.example.test:%[1]d/hook
        secret_env: HARDENING_WEBHOOK_SECRET
  acme:
    models: [glm-4-test, glm-4-flash, glm-4-slow]
    default_model: glm-4-test
    users:
      alice: [submitter]
      bob: [reviewer]
      aldo: [auditor]
    auto_approve_max_requests: 10
  globex:
    models: [glm-4-test]
    users:
      mallory: [submitter]
    auto_approve_max_requests: 10
screening:
  max_request_bytes: 1048576
`

var suite struct {
	*testenv.Env // what testenv.Main started: Dir, Stack, CLI, Temporal, Store, Signer, …
	tasks        *taskclient.Client
	model        *testmodel.Server // the stand-in model server
	// hookTrap listens where the hooks tenant's webhooks lead and counts
	// the connections it gets: none is the promise.
	hookTrap *trap
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, "hardening", testenv.Options{
		Skip:   "these tests start Temporal, MinIO and a worker",
		Bucket: bucket,
	}, setUp))
}

// setUp takes what testenv.Main started, starts the model server, points
// the environment at it, the policy and the node (this process, the worker
// and the CLI read it) and starts the worker.
func setUp(e *testenv.Env) error {
	suite.Env = e
	var err error
	if suite.model, err = e.StartModel(); err != nil {
		return err
	}
	if suite.hookTrap, err = listenTrap(); err != nil {
		return err
	}
	e.Defer(suite.hookTrap.close)
	policyFile := filepath.Join(suite.Dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(fmt.Sprintf(policy, suite.hookTrap.port())), 0o644); err != nil {
		return err
	}
	os.Setenv("AUTOGLM_WEBHOOK_HOSTS", "hooks.example.test=127.0.0.1")
	os.Setenv("HARDENING_WEBHOOK_SECRET", "whsec_dGVzdC1yZWNlaXZlci1zaWduaW5nLWtleS0xMjM0NTY=")
	os.Setenv("AUTOGLM_POLICY_FILE", policyFile)
	os.Setenv("AUTOGLM_NODE", node)
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	src, err := authz.Load(policyFile)
	if err != nil {
		return err
	}
	suite.tasks = &taskclient.Client{Signer: suite.Signer, Temporal: suite.Temporal, Store: suite.Store, Policy: src}
	stopWorker, err := startWorker(cfg)
	if err != nil {
		return err
	}
	e.Defer(stopWorker)
	return nil
}

// startWorker runs a worker for cfg.Node in this process and waits until
// it has announced itself, so that submit finds a node serving its models.
func startWorker(cfg config.Config) (func(), error) {
	w, err := testenv.RunWorker(cfg, filepath.Join(suite.Dir, "worker-"+cfg.Node+".log"), 90*time.Second)
	if err != nil {
		return nil, err
	}
	return func() { w.Stop() }, nil
}
