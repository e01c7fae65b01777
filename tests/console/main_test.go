// Package console tests the web console of `autoglm server` in a real
// headless Chromium (Debian's chromium, driven over the DevTools protocol
// by chromedp) against real parts: the Temporal dev server and MinIO
// (started once by TestMain through internal/testenv), a real worker in
// this process and the API server on a loopback port. The model server
// and the identity provider are the stand-ins.
package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// users and the tenant of their key: demo's submitter, reviewers and
// operator, and zed of acme, who must see nothing of demo.
var users = map[string]string{"alice": "demo", "bob": "demo", "rita": "demo", "olga": "demo", "zed": "acme"}

const policyYAML = `tenants:
  demo:
    models: [glm-4-test]
    users:
      alice: [submitter]
      bob: [reviewer]
      rita: [reviewer]
      olga: [operator]
    quorum: 1
    approval_deadline: 24h
    auto_approve_max_requests: 10
  acme:
    models: [glm-4-test]
    users:
      zed: [admin, submitter]
    auto_approve_max_requests: 10
fleet:
  operators: [olga]
`

// node is the in-process worker's node name, as the fleet page shows it.
const node = "console-test"

var suite struct {
	*testenv.Env
	tasks *taskclient.Client
	url   string
	keys  map[string]string
	idp   *idp
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, "console", testenv.Options{
		Skip: "these tests start Temporal, MinIO, a worker, the API server and Chromium",
	}, setUp))
}

func setUp(e *testenv.Env) error {
	suite.Env = e
	if _, err := e.StartModel(); err != nil {
		return err
	}
	var err error
	if suite.idp, err = startIDP("autoglm-console"); err != nil {
		return err
	}
	e.Defer(suite.idp.Close)
	suite.keys = map[string]string{}
	policy := policyYAML + "api_keys:\n"
	for user, tenant := range users {
		key, k, err := authz.NewAPIKey(user, tenant, "test")
		if err != nil {
			return err
		}
		suite.keys[user] = key
		policy += fmt.Sprintf("  - {user: %s, tenant: %s, sha256: %s}\n", k.User, k.Tenant, k.SHA256)
	}
	policyFile := filepath.Join(e.Dir, "policy.yaml")
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
	suite.tasks = &taskclient.Client{Temporal: e.Temporal, Store: e.Store, Signer: e.Signer}
	api := &server.Server{
		Tasks: suite.tasks, Policy: src, TempDir: e.Dir, Log: log,
		OIDC: &server.OIDC{Issuer: suite.idp.URL, Audience: suite.idp.ClientID, JWKSURL: suite.idp.URL + "/jwks"},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: api.Handler()}
	go hs.Serve(ln)
	e.Defer(func() { hs.Close() })
	suite.url = "http://" + ln.Addr().String()

	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	cfg.Node = node
	w, err := testenv.RunWorker(cfg, filepath.Join(e.Dir, "worker.log"), 2*time.Minute)
	if err != nil {
		return err
	}
	e.Defer(func() { w.Stop() })
	return nil
}

// api calls the API as user and decodes the answer into v; it fails the
// test unless the status is want.
func api(t *testing.T, ctx context.Context, want int, user, method, path string, body []byte, ct string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, suite.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Authorization", "Bearer "+suite.keys[user])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s as %s: %d %s", method, path, user, resp.StatusCode, out)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, out)
		}
	}
}

// batchFile is an OpenAI Batch file of n requests and one malformed line,
// over the auto-approve limit of 10 when n > 10.
func batchFile(n int, tag string) []byte {
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"custom_id":"%s-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"say %d"}]}}`+"\n", tag, i, i)
		if i == 2 {
			b.WriteString(`{"custom_id":"` + tag + `-broken","method":"POST"` + "\n")
		}
	}
	return b.Bytes()
}

// submitBatch submits a batch of n requests as user and waits until it
// awaits approval.
func submitBatch(t *testing.T, ctx context.Context, user string, n int, tag string) string {
	t.Helper()
	var sub server.Submitted
	api(t, ctx, http.StatusCreated, user, "POST", "/api/v1/tasks", batchFile(n, tag), "application/jsonl", &sub)
	testenv.WaitState(t, ctx, suite.tasks, sub.ID, "AWAITING_APPROVAL")
	return sub.ID
}
