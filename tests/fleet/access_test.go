package fleet

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/model/testhub"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// recordAccess, when set, saves the history of the approved request for
// the replay tests:
//
//	go test ./tests/fleet -run TestAccess -record-access $PWD/workflows/testdata/access_approved.json
var recordAccess = flag.String("record-access", "", "save the history of an approved access request to this JSON file")

// safetensors is a file with a safetensors header and then weights.
func safetensors(size int) []byte {
	header := []byte(`{"__metadata__":{"format":"pt"}}`)
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, testhub.Fixture(9, size)...)
}

func accessPolicy(t *testing.T, url string) string {
	t.Helper()
	p := fmt.Sprintf(`tenants:
  acc:
    models: [glm-4-test]
    users: {alice: [submitter], bob: [reviewer], olga: [operator]}
    auto_approve_max_requests: 10
    webhooks:
      - name: requester-inbox
        url: %s
        allow_loopback: true # the test's receiver is on this machine, over http
        secret_env: FLEET_TEST_WEBHOOK_SECRET
        events: [autoglm.access_request.decided]
fleet:
  operators: [olga]
access:
  upstreams: [trusted]
  licences: [apache-2.0, mit]
  max_bytes: 104857600
  approval_deadline: 1h
`, url)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(p), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func accessStatus(t *testing.T, ctx context.Context, id string) task.AccessStatus {
	t.Helper()
	out, code := runCLI(t, ctx, "models", "status", "--json", "--as", "alice", "--tenant", "acc", id)
	var st task.AccessStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("models status: exit %d: %q", code, out)
	}
	return st
}

func requestModel(t *testing.T, ctx context.Context, name, repo string) string {
	t.Helper()
	out, code := runCLI(t, ctx, "models", "request", "--json", "--as", "alice", "--tenant", "acc", name, "--repo", repo, "--revision", "main", "--reason", "for the support bot")
	var r task.AccessRequest
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("models request: exit %d: %q", code, out)
	}
	return r.ID
}

func waitAccess(t *testing.T, ctx context.Context, id string, cond func(task.AccessStatus) bool) task.AccessStatus {
	t.Helper()
	var st task.AccessStatus
	eventually(t, ctx, "access request "+id, func() (bool, error) {
		st = accessStatus(t, ctx, id)
		return cond(st), nil
	})
	return st
}

// TestAccessRequests takes one request through all four stages (screening,
// security audit, review by bob, notification of the requester by webhook)
// after which the model is mirrored and alice's tenant may use it; and
// refuses one at the security audit for its pickled weights.
func TestAccessRequests(t *testing.T) {
	ctx := testCtx(t, 6*time.Minute)
	hub := testhub.New("")
	defer hub.Close()
	hub.SetLicence("trusted/tiny", "apache-2.0")
	hub.Add("trusted/tiny", "main", "model.safetensors", safetensors(2<<20))
	hub.Add("trusted/tiny", "main", "config.json", []byte(`{"model_type":"glm"}`))
	hub.SetLicence("trusted/pickled", "apache-2.0")
	hub.Add("trusted/pickled", "main", "pytorch_model.bin", append([]byte{0x80, 0x02, 'c', 'o', 's', '\n'}, testhub.Fixture(3, 1<<20)...))
	hub.Add("trusted/pickled", "main", "config.json", []byte(`{}`))

	rcv := newReceiver(t)
	rcv.up(t)
	defer rcv.down()
	t.Setenv("AUTOGLM_POLICY_FILE", accessPolicy(t, rcv.url()))
	t.Setenv("FLEET_TEST_WEBHOOK_SECRET", whSecret)
	name := "tiny-" + randHex(3)
	startNode(t, "acc", nodeOptions{Models: "glm-4-test," + name, Env: []string{"AUTOGLM_HF_ENDPOINT=" + hub.URL()}})

	// Before any request, the tenant may not use the model: refused at
	// submit (3) where the CLI checks the policy first, else failed by the
	// workflow's authorize (6).
	if _, code := runCLI(t, ctx, "submit", "--as", "alice", "--tenant", "acc", "--model", name, "--wait", "hello"); code != 3 && code != 6 {
		t.Fatalf("a task on a model not yet allowed: exit %d, want 3 or 6", code)
	}

	id := requestModel(t, ctx, name, "trusted/tiny")
	st := waitAccess(t, ctx, id, func(s task.AccessStatus) bool { return s.State == task.AwaitingApproval || s.State.Final() })
	if st.State != task.AwaitingApproval || st.Stage != task.StageApproval || len(st.Findings) != 2 {
		t.Fatalf("after screening and audit: %+v", st)
	}
	if _, code := runCLI(t, ctx, "models", "approve", "--as", "alice", id); code != 3 {
		t.Fatalf("alice approved her own request: exit %d, want 3", code)
	}
	if _, code := runCLI(t, ctx, "models", "approve", "--as", "olga", id); code != 3 {
		t.Fatalf("an operator approved an access request: exit %d, want 3", code)
	}
	if _, code := runCLI(t, ctx, "models", "approve", "--as", "bob", "--reason", "licence fine", id); code != 0 {
		t.Fatalf("bob's approval: exit %d", code)
	}
	st = waitAccess(t, ctx, id, func(s task.AccessStatus) bool { return s.State.Final() })
	var states []task.State
	for _, tr := range st.Audit {
		states = append(states, tr.To)
	}
	want := []task.State{task.Submitted, task.Screened, task.AwaitingApproval, task.Approved, task.Running, task.Completed}
	if st.State != task.Completed || !slices.Equal(states, want) || st.Mirror.Files != 2 {
		t.Fatalf("approved request ended %s with audit %v and mirror %+v; want %v", st.State, states, st.Mirror, want)
	}
	saveHistory(t, history(t, task.AccessWorkflowID(id), ""), *recordAccess)
	eventually(t, ctx, "the requester's notification", func() (bool, error) {
		rc, ok := rcv.event("evt_access_" + id + "_APPROVED")
		return ok && rc.Verified && strings.Contains(string(rc.Body), `"state":"APPROVED"`), nil
	})
	if _, err := suite.Store.Stat(ctx, task.ModelPrefix(name, st.Mirror.Revision)+"model.safetensors"); err != nil {
		t.Fatalf("the approved model is not in the bucket: %v", err)
	}
	// Authorized now. The stand-in model server answers only glm-4-test,
	// so the one item fails there (404) and the task COMPLETEs with every
	// item failed: exit 8, not a refusal (3 or 6).
	if _, code := runCLI(t, ctx, "submit", "--as", "alice", "--tenant", "acc", "--model", name, "--wait", "hello"); code != 0 && code != 8 {
		t.Fatalf("a task on the newly allowed model: exit %d, want 0 (or 8: the stand-in does not serve it)", code)
	}

	id = requestModel(t, ctx, "pickled-"+randHex(3), "trusted/pickled")
	st = waitAccess(t, ctx, id, func(s task.AccessStatus) bool { return s.State.Final() })
	if st.State != task.Rejected || st.Audit[len(st.Audit)-1].Actor != "security-audit" || !strings.Contains(st.Reason, "pickled") {
		t.Fatalf("the pickled model: %+v; want REJECTED by the security audit for its pickled weights", st)
	}
	eventually(t, ctx, "the requester's notification of the refusal", func() (bool, error) {
		_, ok := rcv.event("evt_access_" + id + "_REJECTED")
		return ok, nil
	})
	t.Logf("refused: %s", st.Reason)
}
