// Package fleet tests the fleet and its models on real parts: the Temporal
// dev server and MinIO (started once by TestMain through internal/devstack,
// on free loopback ports, stopped by PID) and workers on them. The stand-ins
// are servers of ours, named as what they are: the Hugging Face-style
// model hub (internal/model/testhub) and webhook receivers.
package fleet

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
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

const bucket = "autoglm"

var suite struct {
	dir      string
	stack    *devstack.Stack
	temporal client.Client
	store    storage.Store
	cli      string // the autoglm binary built from ./starter
	model    *testmodel.Server
	signer   *assertion.Signer // the break-glass key the tests sign updates with
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) (code int) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("fleet: skipped in -short mode: these tests start Temporal and MinIO")
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "autoglm-fleet-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 1
	}
	suite.dir = dir
	defer func() {
		if code == 0 {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintln(os.Stderr, "fleet: server logs are kept in", dir)
		}
	}()
	bin, err := devstack.BinDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 1
	}
	stack, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(dir, "stack"), BinDir: bin, Buckets: []string{bucket}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet: starting the stack:", err)
		return 1
	}
	suite.stack = stack
	defer func() {
		if err := stack.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "fleet: stopping the stack:", err)
		}
	}()
	for _, kv := range stack.Env(bucket) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	suite.model = testmodel.New(testmodel.Options{})
	if err := suite.model.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 1
	}
	defer suite.model.Close()
	os.Setenv("AUTOGLM_LLM_BASE_URL", suite.model.URL())
	suite.cli = filepath.Join(dir, "autoglm")
	build := exec.CommandContext(ctx, "go", "build", "-o", suite.cli, "./starter")
	build.Dir = filepath.Dir(bin)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "fleet: building the CLI: %v\n%s", err, out)
		return 1
	}
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 1
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	opts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 1
	}
	if suite.temporal, err = client.DialContext(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "fleet: connecting to Temporal:", err)
		return 1
	}
	// The CLI runs direct here, the operators' break-glass path: it signs
	// the actor assertions of updates (task decisions, access decisions)
	// with this key, which the nodes trust.
	if suite.signer, err = testenv.TrustNewKey(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 1
	}
	defer suite.temporal.Close()
	if suite.store, err = storage.Open(ctx, cfg.S3); err != nil {
		fmt.Fprintln(os.Stderr, "fleet: opening the bucket:", err)
		return 1
	}
	defer stopProcWorkers()
	done := make(chan int, 1)
	go func() { done <- m.Run() }()
	select {
	case code = <-done:
		return code
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "fleet: interrupted; stopping the servers")
		return 130
	}
}

// testCtx is a context with a hang guard: no test should come near it.
func testCtx(t *testing.T, guard time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds, failing the test if ctx ends first.
func eventually(t *testing.T, ctx context.Context, what string, cond func() (bool, error)) {
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
		case <-time.After(100 * time.Millisecond):
		}
	}
}
