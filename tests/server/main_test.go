// Package server tests `autoglm server`, the front door, end to end on
// real parts: the Temporal dev server and MinIO (started once by TestMain
// through internal/devstack, stopped by PID), a real worker in this
// process, and the API server on a loopback port, called over HTTP. The
// model server is the one stand-in: internal/llm/testmodel.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/metrics"
	"github.com/autoglm-flow/autoglm-flow/internal/model/testhub"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

const bucket = "autoglm"

// users and their roles: tenant demo as in the default policy, a second
// tenant, acme, whose user zed must never read demo's tasks, brief,
// whose approvals expire in seconds, metered, allowed one token a day,
// gpumetered, allowed a millisecond of training a day, and tuned, whose
// fine-tuning events go to the suite's webhook receiver;
// oscar operates every tenant, so he may read the server's metrics.
var users = map[string]string{ // user -> tenant of their key
	"alice": "demo", "dave": "demo", "bob": "demo", "rita": "demo",
	"olga": "demo", "carol": "demo", "aldo": "demo", "zed": "acme", "oscar": "demo",
}

const policyYAML = `tenants:
  demo:
    models: [glm-4-test, glm-4-unserved]
    users:
      alice: [submitter]
      dave: [submitter]
      bob: [reviewer]
      rita: [reviewer]
      olga: [operator]
      carol: [admin]
      aldo: [auditor]
      oscar: [operator]
    quorum: 1
    approval_deadline: 24h
    auto_approve_max_requests: 10
  acme:
    models: [glm-4-test]
    users:
      zed: [admin, submitter]
      oscar: [operator]
    auto_approve_max_requests: 10
  brief:
    models: [glm-4-test]
    users:
      alice: [submitter]
      bob: [reviewer]
      carol: [admin]
      oscar: [operator]
    approval_deadline: 3s
    auto_approve_max_requests: 10
  metered:
    models: [glm-4-test]
    users:
      alice: [submitter]
      carol: [admin]
      oscar: [operator]
    auto_approve_max_requests: 10
    quotas: {max_tokens_per_day: 1}
  tuned:
    models: [glm-4-test]
    users:
      alice: [submitter]
      olga: [operator]
      oscar: [operator]
    auto_approve_max_requests: 10
    webhooks:
      - name: receiver
        url: {{receiver}}
        allow_loopback: true # the test's receiver is on this machine, over http
        secret_env: SERVER_TEST_WEBHOOK_SECRET
        events: [fine_tuning.job.succeeded, fine_tuning.job.failed, fine_tuning.job.cancelled]
  gpumetered:
    models: [glm-4-test]
    users:
      alice: [submitter]
      carol: [admin]
      oscar: [operator]
    auto_approve_max_requests: 10
    quotas: {max_training_seconds_per_day: 0.001}
fleet:
  operators: [olga]
access:
  upstreams: [trusted]
  licences: [apache-2.0]
  approval_deadline: 1h
sensitive:
  fields: [prompt]
  metadata: [phone, email, id_number]
  visible_to: [admin]
`

var suite struct {
	*testenv.Env // what testenv.Main started: Dir, Stack, CLI, Temporal, Store, Signer, …
	model        *testmodel.Server
	hub          *testhub.Hub // the model hub of access requests and mirrors
	tasks        *taskclient.Client
	api          *server.Server
	url          string // the API server's root
	keys         map[string]string
	worker       *testenv.InProcess
	// workerMetrics is the address of the worker's /metrics.
	workerMetrics string
	// receiver takes tenant tuned's webhook deliveries.
	receiver *receiver
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, "server", testenv.Options{
		Skip:   "these tests start Temporal, MinIO, a worker and the API server",
		Bucket: bucket,
	}, setUp))
}

// setUp takes what testenv.Main started, writes the policy with a key per
// user, and starts the test model, the model hub, a worker and the API
// server. The API server signs the actors of the users it authenticated
// with the key testenv trusts.
func setUp(e *testenv.Env) error {
	suite.Env = e
	var err error
	if suite.model, err = e.StartModel(); err != nil {
		return err
	}
	suite.hub = testhub.New("")
	e.Defer(func() { suite.hub.Close() })
	os.Setenv("AUTOGLM_HF_ENDPOINT", suite.hub.URL())
	os.Setenv("AUTOGLM_MIRROR_STAGING_DIR", filepath.Join(suite.Dir, "staging"))
	os.Setenv("AUTOGLM_CACHE_DIR", filepath.Join(suite.Dir, "cache"))

	suite.keys = map[string]string{}
	var entries []authz.APIKey
	for user, tenant := range users {
		key, e, err := authz.NewAPIKey(user, tenant, "test")
		if err != nil {
			return err
		}
		suite.keys[user], entries = key, append(entries, e)
	}
	if suite.receiver, err = startReceiver(e); err != nil {
		return err
	}
	policy := strings.Replace(policyYAML, "{{receiver}}", suite.receiver.url, 1) + "api_keys:\n"
	for _, e := range entries {
		policy += fmt.Sprintf("  - {user: %s, tenant: %s, sha256: %s}\n", e.User, e.Tenant, e.SHA256)
	}
	policyFile := filepath.Join(suite.Dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		return err
	}
	os.Setenv("AUTOGLM_POLICY_FILE", policyFile)
	src, err := authz.Load(policyFile)
	if err != nil {
		return err
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	suite.tasks = &taskclient.Client{Temporal: suite.Temporal, Store: suite.Store, Signer: e.Signer}
	suite.api = &server.Server{Tasks: suite.tasks, Policy: src, TempDir: suite.Dir, Log: log}
	m, err := metrics.New()
	if err != nil {
		return err
	}
	if err := m.RegisterServer(suite.api.MetricsSources()); err != nil {
		return err
	}
	suite.api.Metrics = m.Handler()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: suite.api.Handler()}
	go hs.Serve(ln)
	e.Defer(func() { hs.Close() })
	suite.url = "http://" + ln.Addr().String()

	if err := useTestTrainer(e); err != nil {
		return err
	}
	if suite.worker, err = startWorker("server-test"); err != nil {
		return err
	}
	e.Defer(func() { suite.worker.Stop() })
	return nil
}

// startWorker runs a worker for node in this process until it is
// stopped; a test may stop it and start it again under the same name.
func startWorker(node string) (*testenv.InProcess, error) {
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, err
	}
	cfg.Node = node
	// Its /metrics on a free loopback port, for the metrics test.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg.HealthAddr = ln.Addr().String()
	ln.Close()
	suite.workerMetrics = cfg.HealthAddr
	return testenv.RunWorker(cfg, filepath.Join(suite.Dir, "worker-"+node+".log"), 2*time.Minute)
}

// call sends an API request as user ("" for none) and returns the status
// code and body.
func call(t *testing.T, ctx context.Context, user, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		r, ct = bytes.NewReader(b), "application/jsonl"
	default:
		j, _ := json.Marshal(b)
		r, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, suite.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if user != "" {
		key := suite.keys[user]
		if key == "" {
			key = user // a made-up key
		}
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// must is call that fails the test unless the status is want; it
// decodes the body into v if not nil.
func must(t *testing.T, ctx context.Context, want int, user, method, path string, body, v any) {
	t.Helper()
	code, out := call(t, ctx, user, method, path, body)
	if code != want {
		t.Fatalf("%s %s as %q: %d %s; want %d", method, path, user, code, out, want)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, out)
		}
	}
}

// batchFile is an OpenAI Batch file of n requests and one malformed line:
// over the auto-approve limit of 10 when n > 10.
func batchFile(n int, tag string) []byte {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"custom_id":"%s-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"say %d"}]}}`+"\n", tag, i, i)
		if i == 2 {
			b.WriteString(`{"custom_id":"` + tag + `-broken","method":"POST"` + "\n")
		}
	}
	return []byte(b.String())
}

// submitBatch submits a batch as user through the native API and waits
// until it awaits approval.
func submitBatch(t *testing.T, ctx context.Context, user string, n int) string {
	t.Helper()
	var sub server.Submitted
	must(t, ctx, http.StatusCreated, user, "POST", "/api/v1/tasks", batchFile(n, user), &sub)
	waitState(t, ctx, sub.ID, task.AwaitingApproval)
	return sub.ID
}

// waitState waits, through the changes endpoint as carol, until the task
// is in state.
func waitState(t *testing.T, ctx context.Context, id string, state task.State) {
	t.Helper()
	var after int64
	eventually(t, ctx, fmt.Sprintf("task %s to be %s", id, state), func() (bool, error) {
		var cs server.Changes
		must(t, ctx, http.StatusOK, "carol", "GET", fmt.Sprintf("/api/v1/tasks/%s/changes?after=%d&wait=5s", id, after), nil, &cs)
		for _, e := range cs.Changes {
			after = e.Seq
			if e.State == state {
				return true, nil
			}
		}
		if cs.Final {
			t.Fatalf("task %s ended without reaching %s: %+v", id, state, cs.Changes)
		}
		return false, nil
	})
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// Shared with the other integration packages (internal/testenv).
var (
	testCtx    = testenv.Context
	eventually = func(t *testing.T, ctx context.Context, what string, cond func() (bool, error)) {
		t.Helper()
		testenv.Eventually(t, ctx, what, 100*time.Millisecond, cond)
	}
)
