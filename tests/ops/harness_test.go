// Package ops tests what an operator relies on, on real parts: the
// Temporal dev server (with its Web UI) and MinIO started by TestMain
// through internal/devstack, workers running worker.Run or the real
// `autoglm` binary, and payload encryption on for the whole suite. The
// model server is the one stand-in: internal/llm/testmodel.
package ops

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

const (
	bucket = "autoglm"
	tenant = "demo"
	model  = testmodel.DefaultModel
)

var suite struct {
	*testenv.Env // what testenv.Main started: Dir, Stack, CLI, Temporal, Store, Signer, …
	model        *testmodel.Server
	tasks        *taskclient.Client
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, "ops", testenv.Options{
		Skip:    "these tests start Temporal, MinIO, workers and a browser",
		Kept:    "logs and screenshots are kept in",
		Bucket:  bucket,
		UI:      true,
		Prepare: setCodecKeys,
	}, setUp))
}

// codecKeys is the suite's key ring: payload encryption is on for every
// test, as an operator would run it.
var codecKeys string

// setCodecKeys turns payload encryption on before the clients are opened.
func setCodecKeys(*testenv.Env) error {
	key := make([]byte, 32)
	rand.Read(key)
	codecKeys = "ops1:" + base64.StdEncoding.EncodeToString(key)
	os.Setenv("AUTOGLM_CODEC_KEYS", codecKeys)
	return nil
}

// setUp takes what testenv.Main started and starts the shared model server.
func setUp(e *testenv.Env) error {
	suite.Env = e
	var err error
	if suite.model, err = e.StartModel(); err != nil {
		return err
	}
	suite.tasks = &taskclient.Client{Signer: suite.Signer, Temporal: suite.Temporal, Store: suite.Store}
	return nil
}

// runningWorker is a worker.Run in this process, serving /healthz and
// /metrics on its own port.
type runningWorker struct {
	*testenv.InProcess
	node, addr string
}

// startWorker runs a worker under a node name of its own and waits until
// it answers /healthz; cleanup stops it.
func startWorker(t *testing.T) *runningWorker {
	t.Helper()
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node, cfg.HealthAddr = "ops-"+randHex(3), fmt.Sprintf("127.0.0.1:%d", port)
	w := &runningWorker{InProcess: suite.StartWorkerInProcess(t, cfg, 60*time.Second), node: cfg.Node, addr: cfg.HealthAddr}
	wctx := testCtx(t, 60*time.Second)
	eventually(t, wctx, "the worker's /healthz", func() (bool, error) {
		if err := w.Exited(); err != nil {
			t.Fatalf("worker %s: %v", w.node, err)
		}
		resp, err := http.Get("http://" + w.addr + "/healthz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return w
}

// batchFile writes an OpenAI Batch file of n requests.
func batchFile(t *testing.T, n int, content string) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		line, _ := json.Marshal(map[string]any{
			"custom_id": fmt.Sprintf("r-%d", i), "method": "POST", "url": "/v1/chat/completions",
			"body": map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": fmt.Sprintf("%s %d", content, i)}}},
		})
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "batch.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func submit(t *testing.T, ctx context.Context, r taskclient.SubmitRequest) string {
	t.Helper()
	if r.ID == "" {
		r.ID = "ops-" + randHex(4)
	}
	r.Tenant, r.Model = tenant, model
	if r.Submitter == "" {
		r.Submitter = "alice"
	}
	if _, err := suite.tasks.Submit(ctx, r); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return r.ID
}

func waitState(t *testing.T, ctx context.Context, id string, want task.State) {
	t.Helper()
	eventually(t, ctx, fmt.Sprintf("task %s in %s", id, want), func() (bool, error) {
		st, err := suite.tasks.Status(ctx, id)
		return err == nil && st.State == want, err
	})
}

// Shared with the other integration packages (internal/testenv).
var (
	testCtx    = testenv.Context
	eventually = func(t *testing.T, ctx context.Context, what string, cond func() (bool, error)) {
		t.Helper()
		testenv.Eventually(t, ctx, what, 100*time.Millisecond, cond)
	}
	randHex = testenv.RandHex
)
