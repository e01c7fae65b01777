package testenv

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
)

// Options are what differs between the test packages' TestMains.
type Options struct {
	// Skip is printed after "<name>: skipped in -short mode: ".
	Skip string
	// Kept is printed after "<name>: " with the scratch folder
	// (autoglm-<name>-*) when the run fails; "logs are kept in" if empty.
	Kept string
	// Bucket is the bucket created and opened; "autoglm" if empty.
	Bucket string
	// UI starts the Temporal Web UI with the dev server.
	UI bool
	// Prepare, if set, runs once the environment points at the stack and
	// before the CLI is built and the clients are opened: for settings the
	// clients read, such as AUTOGLM_CODEC_KEYS.
	Prepare func(*Env) error
}

// Env is what Main starts once for a package's tests.
type Env struct {
	Ctx      context.Context   // ends on SIGINT or SIGTERM
	Dir      string            // scratch folder: server data, logs, the CLI
	Root     string            // the module's root
	Bin      string            // the pinned tools: temporal, minio
	Started  time.Time         // when the stack began to start
	Stack    *devstack.Stack   // Temporal dev server and MinIO
	CLI      string            // the autoglm binary built from ./starter
	Temporal client.Client     // dialled with config.TemporalOptions
	Store    storage.Store     // the bucket
	Signer   *assertion.Signer // the break-glass key the workers trust
	Bucket   string

	cleanups []func()
	workers  workers
}

// Defer has f run after the tests, before the Temporal client closes and
// the stack stops; deferred functions run last first.
func (e *Env) Defer(f func()) { e.cleanups = append(e.cleanups, f) }

func (e *Env) runCleanups() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

// Main starts the stack (through internal/devstack, in a scratch folder
// kept on failure), points the environment at it, builds the CLI, dials
// Temporal, opens the bucket and trusts a new assertion key; then runs
// setUp, if any, and the tests. Everything it started is stopped by PID,
// whether the tests end, fail or the run is interrupted. In -short mode it
// prints that the tests are skipped and returns 0.
func Main(m *testing.M, name string, opts Options, setUp func(*Env) error) (code int) {
	flag.Parse()
	if testing.Short() {
		fmt.Printf("%s: skipped in -short mode: %s\n", name, opts.Skip)
		return 0
	}
	if opts.Bucket == "" {
		opts.Bucket = "autoglm"
	}
	if opts.Kept == "" {
		opts.Kept = "logs are kept in"
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "autoglm-"+name+"-")
	if err != nil {
		return fail(err)
	}
	defer func() {
		if code == 0 {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintln(os.Stderr, name+":", opts.Kept, dir)
		}
	}()
	e := &Env{Ctx: ctx, Dir: dir, Bucket: opts.Bucket}

	bin, err := devstack.BinDir()
	if err != nil {
		return fail(err)
	}
	e.Bin, e.Root = bin, filepath.Dir(bin)
	e.Started = time.Now()
	stack, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(dir, "stack"), BinDir: bin, Buckets: []string{opts.Bucket}, UI: opts.UI})
	if err != nil {
		return fail(fmt.Errorf("starting the stack: %w", err))
	}
	e.Stack = stack
	defer func() {
		if err := stack.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: stopping the stack: %v\n", name, err)
		}
	}()

	for _, kv := range stack.Env(opts.Bucket) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	if opts.Prepare != nil {
		if err := opts.Prepare(e); err != nil {
			return fail(err)
		}
	}
	if e.Signer, err = TrustNewKey(); err != nil {
		return fail(err)
	}
	// The suite's workers run one source, as the CLI and in this test
	// binary: one build of the control plane, whichever executable.
	if os.Getenv("AUTOGLM_BUILD_ID") == "" {
		os.Setenv("AUTOGLM_BUILD_ID", name+"-"+RandHex(4))
	}
	e.CLI = filepath.Join(dir, "autoglm")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.CLI, "./starter")
	build.Dir = e.Root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: building the CLI: %v\n%s", name, err, out)
		return 1
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return fail(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	topts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		return fail(err)
	}
	if e.Temporal, err = client.DialContext(ctx, topts); err != nil {
		return fail(fmt.Errorf("connecting to Temporal: %w", err))
	}
	defer e.Temporal.Close()
	if e.Store, err = storage.Open(ctx, cfg.S3); err != nil {
		return fail(fmt.Errorf("opening the bucket: %w", err))
	}
	defer e.runCleanups()
	// Worker processes stop last, after what the package's setUp started
	// (a model server they may still be calling).
	e.Defer(e.stopWorkers)
	if setUp != nil {
		if err := setUp(e); err != nil {
			return fail(err)
		}
	}

	// m.Run runs on its own goroutine so that a signal can stop the
	// servers and worker processes here, rather than leave them behind.
	done := make(chan int, 1)
	go func() { done <- m.Run() }()
	select {
	case code = <-done:
		return code
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, name+": interrupted; stopping workers and servers")
		return 130
	}
}

// StartModel starts the suite's test model server, the one stand-in, and
// points this process and the workers it starts at it
// (AUTOGLM_LLM_BASE_URL); it is closed after the tests.
func (e *Env) StartModel() (*testmodel.Server, error) {
	m := testmodel.New(testmodel.Options{})
	if err := m.Start(); err != nil {
		return nil, err
	}
	e.Defer(func() { m.Close() })
	os.Setenv("AUTOGLM_LLM_BASE_URL", m.URL())
	return m, nil
}
