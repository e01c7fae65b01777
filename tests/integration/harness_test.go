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

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// bucket is the bucket every test uses.
const bucket = "autoglm"

// suite is what TestMain starts once and every test shares.
var suite struct {
	dir      string          // scratch folder: server data, logs, the CLI
	stack    *devstack.Stack // Temporal dev server and MinIO
	cli      string          // the autoglm binary built from ./starter
	model    *testmodel.Server
	temporal client.Client
	store    storage.Store
	tasks    *taskclient.Client // what the CLI uses: submit, status, decide, wait
	signer   *assertion.Signer  // vouches for the actors of the tests' updates
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain starts the stack, runs the tests and stops everything it started
// by PID, whether the tests end, fail or the run is interrupted (SIGINT,
// SIGTERM). It returns the exit code only after the stack has stopped.
func runMain(m *testing.M) (code int) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration: skipped in -short mode: these tests start Temporal, MinIO and worker processes")
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "autoglm-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	suite.dir = dir
	defer func() {
		if code == 0 {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintln(os.Stderr, "integration: server logs and worker logs are kept in", dir)
		}
	}()

	bin, err := devstack.BinDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	start := time.Now()
	stack, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(dir, "stack"), BinDir: bin, Buckets: []string{bucket}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: starting the stack:", err)
		return 1
	}
	suite.stack = stack
	defer func() {
		stopProcWorkers()
		if err := stack.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "integration: stopping the stack:", err)
		}
	}()

	if err := setUp(ctx, filepath.Dir(bin)); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer suite.model.Close()
	defer suite.temporal.Close()
	fmt.Printf("integration: stack up in %s (temporal %s, minio %s, model %s)\n",
		time.Since(start).Round(100*time.Millisecond), stack.TemporalAddress, stack.S3Endpoint, suite.model.URL())

	// m.Run runs on its own goroutine so that a signal can stop the
	// servers and worker processes here, rather than leave them behind.
	done := make(chan int, 1)
	go func() { done <- m.Run() }()
	select {
	case code = <-done:
		return code
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "integration: interrupted; stopping workers and servers")
		return 130
	}
}

// setUp points the environment at the stack (for config.FromEnv and
// config.TemporalOptions, in this process and in worker processes), starts
// the shared test model server, builds the CLI and opens the clients.
func setUp(ctx context.Context, root string) error {
	for _, kv := range suite.stack.Env(bucket) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	suite.model = testmodel.New(testmodel.Options{})
	if err := suite.model.Start(); err != nil {
		return err
	}
	os.Setenv("AUTOGLM_LLM_BASE_URL", suite.model.URL())
	os.Setenv("AUTOGLM_LOG_LEVEL", "info")
	// These tests drive Temporal directly, as an operator on the break-glass
	// path does: with a key whose assertions the workers trust.
	_, priv, err := assertion.GenerateKey()
	if err != nil {
		return err
	}
	suite.signer = assertion.NewSigner(priv)
	os.Setenv("AUTOGLM_ASSERTION_PUBLIC_KEYS", assertion.EncodePublic(suite.signer.Public()))
	os.Setenv("AUTOGLM_ASSERTION_PRIVATE_KEY", assertion.EncodePrivate(priv))
	// Never the API server, even if this machine's user ran autoglm login.
	os.Setenv("AUTOGLM_SERVER", "direct")

	suite.cli = filepath.Join(suite.dir, "autoglm")
	build := exec.CommandContext(ctx, "go", "build", "-o", suite.cli, "./starter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the CLI: %v\n%s", err, out)
	}

	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	opts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		return err
	}
	if suite.temporal, err = client.DialContext(ctx, opts); err != nil {
		return fmt.Errorf("connecting to Temporal: %w", err)
	}
	if suite.store, err = storage.Open(ctx, cfg.S3); err != nil {
		return fmt.Errorf("opening the bucket: %w", err)
	}
	suite.tasks = &taskclient.Client{Temporal: suite.temporal, Store: suite.store, Signer: suite.signer}
	return nil
}

// testCtx is a context for one test with a hang guard: no test should
// come near it, it only keeps a stuck test from stalling the run.
func testCtx(t *testing.T, guard time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every interval until it reports true, failing the
// test if ctx ends first. Errors from cond are remembered, not fatal: a
// query may fail for a moment while a workflow moves to another worker.
func eventually(t *testing.T, ctx context.Context, what string, interval time.Duration, cond func() (bool, error)) {
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
