package integration

import (
	"context"
	"encoding/json"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
)

// workerOptions configure one worker, that is one node of the fleet.
type workerOptions struct {
	// Node is the node name (AUTOGLM_NODE). A worker that replaces a dead
	// one must reuse its name: dispatch already sent the task to that
	// node's queue.
	Node string
	// Model is the model server the node sends requests to; nil is the
	// shared one.
	Model *testmodel.Server
	// Concurrency is AUTOGLM_CONCURRENCY; 0 keeps the default.
	Concurrency int
	// CheckpointInterval is AUTOGLM_CHECKPOINT_INTERVAL; 0 keeps the
	// default.
	CheckpointInterval time.Duration
	// HeartbeatTimeout is AUTOGLM_HEARTBEAT_TIMEOUT: how long a dead
	// worker's inference waits before it is retried; 0 keeps the default
	// (a minute).
	HeartbeatTimeout time.Duration
	// MaxPieces is AUTOGLM_MAX_PIECES; 0 keeps the default.
	MaxPieces int
	// PieceRequests is AUTOGLM_PIECE_REQUESTS; 0 keeps the default.
	PieceRequests int
}

func (o workerOptions) modelURL() string {
	if o.Model == nil {
		return suite.model.URL()
	}
	return o.Model.URL()
}

// env is what a worker process's environment has after the suite's (set
// by TestMain): this worker's settings, which win.
func (o workerOptions) env() []string {
	env := []string{"AUTOGLM_LLM_BASE_URL=" + o.modelURL()}
	if o.Concurrency > 0 {
		env = append(env, "AUTOGLM_CONCURRENCY="+strconv.Itoa(o.Concurrency))
	}
	if o.CheckpointInterval > 0 {
		env = append(env, "AUTOGLM_CHECKPOINT_INTERVAL="+o.CheckpointInterval.String())
	}
	if o.HeartbeatTimeout > 0 {
		env = append(env, "AUTOGLM_HEARTBEAT_TIMEOUT="+o.HeartbeatTimeout.String())
	}
	return env
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// newNode is a node name of this test's own. The worker helpers remove a
// stopped node's record, so that dispatch never picks it for a later
// test's task in the 45 s it would still count as alive.
func newNode(t *testing.T) string {
	t.Helper()
	name := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(name) > 30 {
		name = name[:30]
	}
	return "it-" + strings.Trim(name, "-") + "-" + randHex(3)
}

// inProcWorker is a worker running in this process: worker.Run on a
// goroutine, stopped by cancelling its context.
type inProcWorker struct {
	*testenv.InProcess
	node string
}

// startWorker runs a worker in this process until the test ends.
func startWorker(t *testing.T, o workerOptions) *inProcWorker {
	t.Helper()
	if o.Node == "" {
		o.Node = newNode(t)
	}
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node, cfg.LLM.BaseURL = o.Node, o.modelURL()
	if o.Concurrency > 0 {
		cfg.Concurrency, cfg.LLM.MaxIdleConnsPerHost = o.Concurrency, o.Concurrency
	}
	if o.CheckpointInterval > 0 {
		cfg.CheckpointInterval = o.CheckpointInterval
	}
	if o.HeartbeatTimeout > 0 {
		cfg.HeartbeatTimeout = o.HeartbeatTimeout
	}
	if o.MaxPieces > 0 {
		cfg.MaxPieces = o.MaxPieces
	}
	if o.PieceRequests > 0 {
		cfg.PieceRequests = o.PieceRequests
	}
	return &inProcWorker{suite.StartWorkerInProcess(t, cfg, 60*time.Second), o.Node}
}

// procWorker is `autoglm worker` running as a process of its own, so a
// test can stop it with SIGTERM or kill it with SIGKILL.
type procWorker struct{ *testenv.Worker }

// startProcWorker starts `autoglm worker` and waits until it has
// announced its node. The test's cleanup stops it if it still runs.
func startProcWorker(t *testing.T, o workerOptions) *procWorker {
	t.Helper()
	if o.Node == "" {
		o.Node = newNode(t)
	}
	w := suite.StartWorker(t, testenv.WorkerOptions{Node: o.Node, Env: o.env(), Grace: 40 * time.Second, Announce: 60 * time.Second})
	return &procWorker{w}
}

// kill sends SIGKILL, as a crash or an OOM kill would, and waits for the
// process to be gone.
func (w *procWorker) kill(t *testing.T) {
	t.Helper()
	w.Kill()
	t.Logf("worker process %d killed (SIGKILL)", w.PID())
}

// term sends SIGTERM, as a rolling deploy would, and waits up to grace for
// the process to exit by itself. It returns when the process exited.
func (w *procWorker) term(t *testing.T, grace time.Duration) time.Time {
	t.Helper()
	exit, err := w.Term(grace)
	if err != nil {
		if exit.IsZero() {
			t.Fatalf("%v\n%s", err, devstack.Tail(w.Log, 40))
		}
		t.Errorf("%v\n%s", err, devstack.Tail(w.Log, 40))
	}
	return exit
}

// getJSON reads a JSON document from the bucket.
func getJSON(ctx context.Context, key string, v any) error {
	rc, _, err := suite.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return json.NewDecoder(rc).Decode(v)
}

// Shared with the other integration packages (internal/testenv).
var (
	randHex = testenv.RandHex
)
