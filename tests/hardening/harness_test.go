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
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
	"github.com/autoglm-flow/autoglm-flow/worker"
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

// policy has two tenants, so that one can try to read the other's data.
const policy = `tenants:
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
	dir      string
	bin      string // the pinned tools: temporal, minio
	cli      string // the autoglm binary built from ./starter
	stack    *devstack.Stack
	temporal client.Client
	store    storage.Store
	tasks    *taskclient.Client
	signer   *assertion.Signer // the break-glass key the tests sign updates with
	model    *testmodel.Server // the stand-in model server
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) (code int) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("hardening: skipped in -short mode: these tests start Temporal, MinIO and a worker")
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "autoglm-hardening-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "hardening:", err)
		return 1
	}
	suite.dir = dir
	defer func() {
		if code == 0 {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintln(os.Stderr, "hardening: server and worker logs are kept in", dir)
		}
	}()
	if suite.bin, err = devstack.BinDir(); err != nil {
		fmt.Fprintln(os.Stderr, "hardening:", err)
		return 1
	}
	stack, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(dir, "stack"), BinDir: suite.bin, Buckets: []string{bucket}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hardening: starting the stack:", err)
		return 1
	}
	suite.stack = stack
	defer func() {
		if err := stack.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "hardening: stopping the stack:", err)
		}
	}()
	model := testmodel.New(testmodel.Options{})
	if err := model.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "hardening:", err)
		return 1
	}
	defer model.Close()
	suite.model = model
	stopWorker, err := setUp(ctx, model.URL())
	if err != nil {
		fmt.Fprintln(os.Stderr, "hardening:", err)
		return 1
	}
	defer stopWorker()
	defer suite.temporal.Close()

	done := make(chan int, 1)
	go func() { done <- m.Run() }()
	select {
	case code = <-done:
		return code
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "hardening: interrupted; stopping the worker and servers")
		return 130
	}
}

// setUp points the environment at the stack (this process, the worker and
// the CLI read it), builds the CLI, opens the clients and starts the
// worker; it returns what stops the worker.
func setUp(ctx context.Context, modelURL string) (func(), error) {
	for _, kv := range suite.stack.Env(bucket) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	policyFile := filepath.Join(suite.dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policy), 0o644); err != nil {
		return nil, err
	}
	os.Setenv("AUTOGLM_POLICY_FILE", policyFile)
	os.Setenv("AUTOGLM_LLM_BASE_URL", modelURL)
	os.Setenv("AUTOGLM_NODE", node)

	suite.cli = filepath.Join(suite.dir, "autoglm")
	build := exec.CommandContext(ctx, "go", "build", "-o", suite.cli, "./starter")
	build.Dir = filepath.Dir(suite.bin)
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the CLI: %v\n%s", err, out)
	}

	cfg, err := config.FromEnv()
	if err != nil {
		return nil, err
	}
	quiet := logrus.New()
	quiet.SetLevel(logrus.WarnLevel)
	opts, err := config.TemporalOptions(logging.NewSDK(quiet))
	if err != nil {
		return nil, err
	}
	if suite.temporal, err = client.DialContext(ctx, opts); err != nil {
		return nil, fmt.Errorf("connecting to Temporal: %w", err)
	}
	if suite.signer, err = testenv.TrustNewKey(); err != nil {
		return nil, err
	}
	if suite.store, err = storage.Open(ctx, cfg.S3); err != nil {
		return nil, fmt.Errorf("opening the bucket: %w", err)
	}
	src, err := authz.Load(policyFile)
	if err != nil {
		return nil, err
	}
	suite.tasks = &taskclient.Client{Signer: suite.signer, Temporal: suite.temporal, Store: suite.store, Policy: src}
	return startWorker(ctx, cfg)
}

// startWorker runs a worker for cfg.Node in this process and waits until
// it has announced itself, so that submit finds a node serving its models.
func startWorker(ctx context.Context, cfg config.Config) (func(), error) {
	logFile, err := os.Create(filepath.Join(suite.dir, "worker-"+cfg.Node+".log"))
	if err != nil {
		return nil, err
	}
	log, err := logging.New(logFile, "text", "info")
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	since := time.Now()
	go func() { done <- worker.Run(wctx, cfg, log) }()
	stop := func() {
		cancel()
		<-done
		logFile.Close()
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		var n activities.Node
		if err := getJSON(ctx, "fleet/nodes/"+cfg.Node+".json", &n); err == nil && !n.LastSeen.Before(since.Add(-time.Second)) {
			return stop, nil
		}
		select {
		case err := <-done:
			logFile.Close()
			return nil, fmt.Errorf("the worker exited before it announced itself: %v\n%s", err, devstack.Tail(logFile.Name(), 40))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("the worker did not announce itself within 90s\n%s", devstack.Tail(logFile.Name(), 40))
		}
	}
}
