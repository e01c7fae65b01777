package fleet

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/webhook"
)

// With -record-task and -record-notify the test saves the history of a
// task that emitted its end's event, and of a delivery retried while the
// receiver was down, for the replay tests in workflows/testdata:
//
//	go test ./tests/fleet -run TestWebhooks -record-task $PWD/workflows/testdata/task_emitted.json -record-notify $PWD/workflows/testdata/notify_redelivered.json
var (
	recordTask   = flag.String("record-task", "", "save the history of a task that emitted its end's event to this JSON file")
	recordNotify = flag.String("record-notify", "", "save the history of a redelivered event to this JSON file")
)

// whSecret is the test receiver's signing secret (whsec_ + base64).
const whSecret = "whsec_dGVzdC1yZWNlaXZlci1zaWduaW5nLWtleS0xMjM0NTY="

// receiver is a webhook receiver of ours: it keeps what it was sent,
// checks each signature, and can be down (nothing listens on its port).
type receiver struct {
	addr string
	mu   sync.Mutex
	got  map[string]received // by webhook-id
	srv  *http.Server
}

type received struct {
	Body     []byte
	Header   http.Header
	Verified bool
	Times    int
}

func newReceiver(t *testing.T) *receiver {
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return &receiver{addr: fmt.Sprintf("127.0.0.1:%d", port), got: map[string]received{}}
}

func (r *receiver) url() string { return "http://" + r.addr + "/hooks/autoglm" }

func (r *receiver) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("receiver: %v", err)
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		body, _ := io.ReadAll(q.Body)
		ok := webhook.Verify(whSecret, q.Header, body, time.Now(), 5*time.Minute) == nil
		r.mu.Lock()
		rc := r.got[q.Header.Get("webhook-id")]
		rc.Body, rc.Header, rc.Verified, rc.Times = body, q.Header.Clone(), ok, rc.Times+1
		r.got[q.Header.Get("webhook-id")] = rc
		r.mu.Unlock()
		if !ok {
			http.Error(w, "bad signature", http.StatusBadRequest)
		}
	})}
	go r.srv.Serve(ln)
}

func (r *receiver) down() {
	if r.srv != nil {
		_ = r.srv.Close()
	}
}

func (r *receiver) event(id string) (received, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rc, ok := r.got[id]
	return rc, ok
}

// webhookPolicy is a tenant that subscribes the receiver to batch and
// approval events.
func webhookPolicy(t *testing.T, url string) string {
	t.Helper()
	p := fmt.Sprintf(`tenants:
  hooks:
    models: [glm-4-test]
    users: {alice: [submitter], olga: [operator], bob: [reviewer]}
    auto_approve_max_requests: 10
    webhooks:
      - name: receiver
        url: %s
        allow_loopback: true # the test's receiver is on this machine, over http
        secret_env: FLEET_TEST_WEBHOOK_SECRET
        events: [batch.completed, batch.failed, batch.cancelled, batch.expired, autoglm.task.awaiting_approval, autoglm.task.approved, autoglm.task.rejected]
fleet:
  operators: [olga]
`, url)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(p), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// installOpenAI installs the official openai npm package into a folder of
// the test's own.
func installOpenAI(t *testing.T, ctx context.Context) (string, error) {
	dir := filepath.Join(suite.Dir, "npm")
	cmd := exec.CommandContext(ctx, "npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", dir, "openai")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("npm install openai: %v\n%s", err, out)
	}
	return dir, nil
}

// unwrapScript verifies a delivery with openai's client.webhooks.unwrap
// and prints the event it returns.
const unwrapScript = `
const mod = require(process.argv[2] + '/node_modules/openai');
const OpenAI = mod.OpenAI || mod.default || mod;
const fs = require('fs');
const body = fs.readFileSync(process.argv[3], 'utf8');
const headers = JSON.parse(fs.readFileSync(process.argv[4], 'utf8'));
const client = new OpenAI({ apiKey: 'unused-by-webhooks' });
Promise.resolve(client.webhooks.unwrap(body, headers, process.env.WEBHOOK_SECRET))
  .then(ev => { console.log(JSON.stringify(ev)); })
  .catch(err => { console.error('unwrap failed: ' + err); process.exit(1); });
`

func submitPrompt(t *testing.T, ctx context.Context) string {
	t.Helper()
	out, code := runCLI(t, ctx, "submit", "--json", "--as", "alice", "--tenant", "hooks", "--model", "glm-4-test", "Say hello")
	var in task.Input
	if code != 0 || json.Unmarshal([]byte(out), &in) != nil {
		t.Fatalf("submit: exit %d, %q", code, out)
	}
	return in.ID
}

// TestWebhooks delivers batch.completed events from real tasks to a
// receiver of ours: the official openai npm client's webhooks.unwrap
// verifies one; then, with the receiver down for 30 s while three tasks
// end, every event still arrives once it is back, each delivery in the
// audit trail.
func TestWebhooks(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	npmDone := make(chan struct{})
	var npmDir string
	var npmErr error
	go func() {
		defer close(npmDone)
		npmDir, npmErr = installOpenAI(t, ctx)
	}()

	rcv := newReceiver(t)
	t.Setenv("AUTOGLM_POLICY_FILE", webhookPolicy(t, rcv.url()))
	t.Setenv("FLEET_TEST_WEBHOOK_SECRET", whSecret)
	startNode(t, "hooks", nodeOptions{})
	rcv.up(t)
	defer rcv.down()

	id := submitPrompt(t, ctx)
	evID := "evt_" + id + "_" + string(task.Completed)
	eventually(t, ctx, "the batch.completed event of task "+id, func() (bool, error) {
		rc, ok := rcv.event(evID)
		return ok && rc.Verified, nil
	})
	rc, _ := rcv.event(evID)
	<-npmDone
	if npmErr != nil {
		t.Fatal(npmErr)
	}
	dir := t.TempDir()
	hdr := map[string]string{}
	for _, k := range []string{"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"} {
		hdr[k] = rc.Header.Get(k)
	}
	hb, _ := json.Marshal(hdr)
	os.WriteFile(filepath.Join(dir, "body.json"), rc.Body, 0o644)
	os.WriteFile(filepath.Join(dir, "headers.json"), hb, 0o644)
	os.WriteFile(filepath.Join(dir, "unwrap.js"), []byte(unwrapScript), 0o644)
	node := func(secret string) (string, error) {
		cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "unwrap.js"), npmDir, filepath.Join(dir, "body.json"), filepath.Join(dir, "headers.json"))
		cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+secret)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := node(whSecret)
	if err != nil {
		t.Fatalf("openai webhooks.unwrap refused our delivery: %v\n%s", err, out)
	}
	var ev struct {
		ID, Type, Object string
		Data             struct{ ID string }
	}
	if err := json.Unmarshal([]byte(out), &ev); err != nil || ev.Type != task.EventBatchCompleted || ev.Data.ID != id || ev.ID != evID || ev.Object != "event" {
		t.Fatalf("unwrap returned %q (%v); want a batch.completed event for task %s", out, err, id)
	}
	if out, err := node("whsec_b3RoZXItc2VjcmV0LW5vdC10aGUtb25lLXNpZ25lZA=="); err == nil {
		t.Fatalf("unwrap accepted the delivery with another secret: %s", out)
	}
	saveHistory(t, history(t, task.WorkflowID(id), ""), *recordTask)
	t.Logf("openai webhooks.unwrap verified: %s", strings.TrimSpace(out))

	// The receiver goes down; three tasks end meanwhile.
	rcv.down()
	downSince := time.Now()
	var ids []string
	for range 3 {
		ids = append(ids, submitPrompt(t, ctx))
	}
	// Down for at least 30 s and until every event has been refused at
	// least twice, as the workflows' pending activities show.
	eventually(t, ctx, "every event to be refused twice while the receiver is down", func() (bool, error) {
		for _, id := range ids {
			d, err := suite.Temporal.DescribeWorkflowExecution(ctx, task.NotifyWorkflowID("evt_"+id+"_COMPLETED"), "")
			if err != nil {
				return false, err
			}
			pa := d.GetPendingActivities()
			if len(pa) != 1 || pa[0].GetAttempt() < 3 {
				return false, nil
			}
		}
		return time.Since(downSince) >= 30*time.Second, nil
	})
	t.Logf("receiver down for %s", time.Since(downSince).Round(time.Second))
	rcv.up(t)
	for _, id := range ids {
		evID := "evt_" + id + "_COMPLETED"
		var res task.NotifyResult
		if err := suite.Temporal.GetWorkflow(ctx, task.NotifyWorkflowID(evID), "").Get(ctx, &res); err != nil {
			t.Fatal(err)
		}
		rc, ok := rcv.event(evID)
		if !ok || !rc.Verified || len(res.Deliveries) != 1 || !res.Deliveries[0].Delivered || res.Deliveries[0].Attempts < 3 {
			t.Fatalf("event %s: received %v (verified %v), deliveries %+v", evID, ok, rc.Verified, res.Deliveries)
		}
		if _, err := suite.Store.Stat(ctx, "audit/webhooks/hooks/"+evID+"/receiver.json"); err != nil {
			t.Fatalf("no audit record of delivering %s: %v", evID, err)
		}
		t.Logf("%s delivered on attempt %d", evID, res.Deliveries[0].Attempts)
		saveHistory(t, history(t, task.NotifyWorkflowID(evID), ""), *recordNotify)
	}
}
