package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/proto"

	"github.com/autoglm-flow/autoglm-flow/internal/fleetclient"
	"github.com/autoglm-flow/autoglm-flow/internal/model/testhub"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// refused calls the API as user and checks the answer is code with the
// native error shape and type.
func refused(t *testing.T, ctx context.Context, code int, typ, user, method, path string, body any) []byte {
	t.Helper()
	got, out := call(t, ctx, user, method, path, body)
	var e server.APIError
	if got != code || json.Unmarshal(out, &e) != nil || e.Error.Type != typ || e.Error.Message == "" {
		t.Fatalf("%s %s as %q: %d %s; want %d with error type %s", method, path, user, got, out, code, typ)
	}
	return out
}

func listNodes(t *testing.T, ctx context.Context, user string) map[string]fleetclient.NodeView {
	t.Helper()
	var out struct {
		Nodes []fleetclient.NodeView `json:"nodes"`
	}
	must(t, ctx, http.StatusOK, user, "GET", "/api/v1/fleet/nodes", nil, &out)
	m := map[string]fleetclient.NodeView{}
	for _, n := range out.Nodes {
		m[n.Name] = n
	}
	return m
}

// TestFleetThroughServer: the fleet operator lists the nodes, runs a
// fleet command and drains a node through the server, as herself; a
// submitter, a reviewer, an auditor and a tenant's admin (who holds no
// fleet role) are refused with 403, a caller
// without a key with 401; no body names the actor. The CLI does the same
// through the server with a key and nothing else.
func TestFleetThroughServer(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	const node = "server-test"

	nodes := listNodes(t, ctx, "olga")
	if n, ok := nodes[node]; !ok || !n.Alive || n.Drained {
		t.Fatalf("olga's node list: %+v; want %s alive and not drained", nodes, node)
	}

	var res task.FleetResult
	must(t, ctx, http.StatusOK, "olga", "POST", "/api/v1/fleet/commands",
		map[string]any{"action": task.ActionHealth, "selector": map[string]string{"node": node}, "node_timeout": "1m"}, &res)
	if res.Actor != "olga" || res.Action != task.ActionHealth || res.OK != 1 || len(res.Nodes) != 1 ||
		res.Nodes[0].Node != node || res.Nodes[0].Status != task.NodeOK {
		t.Fatalf("olga's health check: %+v; want 1 ok on %s by olga", res, node)
	}
	if res.Audit.Key == "" {
		t.Fatalf("the health check has no audit record: %+v", res)
	}
	if _, err := suite.Store.Stat(ctx, res.Audit.Key); err != nil {
		t.Fatalf("the audit record %s is not in the bucket: %v", res.Audit.Key, err)
	}
	// The actor is the key's user: a body that names one is refused.
	refused(t, ctx, http.StatusBadRequest, string(task.InvalidInput), "olga", "POST", "/api/v1/fleet/commands",
		map[string]any{"action": task.ActionHealth, "actor": "carol"})
	refused(t, ctx, http.StatusBadRequest, string(task.InvalidInput), "olga", "POST", "/api/v1/fleet/commands",
		map[string]any{"action": "reboot"})

	for _, user := range []string{"alice", "bob", "aldo", "carol", "zed"} {
		refused(t, ctx, http.StatusForbidden, string(task.PermissionDenied), user, "GET", "/api/v1/fleet/nodes", nil)
		refused(t, ctx, http.StatusForbidden, string(task.PermissionDenied), user, "POST", "/api/v1/fleet/commands",
			map[string]any{"action": task.ActionHealth})
		refused(t, ctx, http.StatusForbidden, string(task.PermissionDenied), user, "POST", "/api/v1/fleet/nodes/"+node+"/drain", nil)
		refused(t, ctx, http.StatusForbidden, string(task.PermissionDenied), user, "POST", "/api/v1/models/mirrors",
			map[string]any{"name": "refused-mirror", "repo": "trusted/tiny"})
	}
	refused(t, ctx, http.StatusUnauthorized, "Unauthenticated", "", "GET", "/api/v1/fleet/nodes", nil)
	refused(t, ctx, http.StatusUnauthorized, "Unauthenticated", "agk_made-up", "GET", "/api/v1/fleet/nodes", nil)
	// Drain and undrain through the server: the node's record says so.
	t.Cleanup(func() {
		call(t, context.Background(), "olga", "POST", "/api/v1/fleet/nodes/"+node+"/undrain", nil)
	})
	must(t, ctx, http.StatusOK, "olga", "POST", "/api/v1/fleet/nodes/"+node+"/drain", nil, &res)
	if res.Actor != "olga" || res.Action != task.ActionDrain || res.OK != 1 {
		t.Fatalf("drain: %+v", res)
	}
	eventually(t, ctx, node+" listed as drained", func() (bool, error) { return listNodes(t, ctx, "olga")[node].Drained, nil })
	must(t, ctx, http.StatusOK, "olga", "POST", "/api/v1/fleet/nodes/"+node+"/undrain", nil, &res)
	if res.Action != task.ActionUndrain || res.OK != 1 {
		t.Fatalf("undrain: %+v", res)
	}
	eventually(t, ctx, node+" listed as not drained", func() (bool, error) { return !listNodes(t, ctx, "olga")[node].Drained, nil })

	// The CLI, with a key and the server's address only.
	olga := cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["olga"])
	alice := cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["alice"])
	out, code := autoglm(t, ctx, olga, "", "nodes", "--json")
	var views []fleetclient.NodeView
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil || !slices.ContainsFunc(views, func(v fleetclient.NodeView) bool { return v.Name == node && v.Alive }) {
		t.Fatalf("autoglm nodes --json as olga: exit %d: %s", code, out)
	}
	out, code = autoglm(t, ctx, olga, "", "fleet", "exec", "--json", "--selector", "node="+node, "health")
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Actor != "olga" || res.OK != 1 {
		t.Fatalf("autoglm fleet exec health as olga: exit %d: %s", code, out)
	}
	out, code = autoglm(t, ctx, olga, "", "fleet", "exec", "--selector", "node="+node, "health")
	if code != 0 || !strings.Contains(out, "health on 1 node(s): 1 ok") || !strings.Contains(out, node) {
		t.Fatalf("autoglm fleet exec health (text) as olga: exit %d: %s", code, out)
	}
	for _, args := range [][]string{{"nodes"}, {"fleet", "exec", "health"}, {"nodes", "drain", node}} {
		if _, code := autoglm(t, ctx, alice, "", args...); code != 3 {
			t.Fatalf("autoglm %v as alice (submitter): exit %d, want 3", args, code)
		}
	}
	if _, code := autoglm(t, ctx, olga, "", "nodes", "--as", "carol"); code != 2 {
		t.Fatalf("autoglm nodes --as carol through the server: exit %d, want 2", code)
	}
}

// safetensors is a file with a safetensors header and then weights.
func safetensors(size int) []byte {
	header := []byte(`{"__metadata__":{"format":"pt"}}`)
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, testhub.Fixture(9, size)...)
}

func accessState(t *testing.T, ctx context.Context, user, id string) task.AccessStatus {
	t.Helper()
	var st task.AccessStatus
	must(t, ctx, http.StatusOK, user, "GET", "/api/v1/models/requests/"+id, nil, &st)
	return st
}

func waitAccessState(t *testing.T, ctx context.Context, user, id string, cond func(task.AccessStatus) bool) task.AccessStatus {
	t.Helper()
	var st task.AccessStatus
	eventually(t, ctx, "access request "+id, func() (bool, error) {
		st = accessState(t, ctx, user, id)
		return cond(st), nil
	})
	return st
}

// TestModelAccessThroughServer: a submitter asks for a model through the
// server (the requester is her key's user), a reviewer approves it (the
// requester herself, an operator, an auditor are refused with 403, a user
// of another tenant gets the 404 of a request that does not exist) and
// the model is mirrored and allowed; a second request is rejected with a
// reason, after which it takes no decision (409). An operator mirrors a
// model directly. The CLI asks and approves through the server too.
func TestModelAccessThroughServer(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	suite.hub.SetLicence("trusted/tiny", "apache-2.0")
	suite.hub.Add("trusted/tiny", "main", "model.safetensors", safetensors(1<<20))
	suite.hub.Add("trusted/tiny", "main", "config.json", []byte(`{"model_type":"glm"}`))

	var req task.AccessRequest
	must(t, ctx, http.StatusCreated, "alice", "POST", "/api/v1/models/requests",
		map[string]any{"name": "tiny-approved", "repo": "trusted/tiny", "reason": "for the support bot"}, &req)
	if req.Requester != "alice" || req.Tenant != "demo" || req.ID == "" || req.Model.Revision != "main" {
		t.Fatalf("alice's request: %+v; want requester alice in tenant demo", req)
	}
	id := req.ID
	// No body names the requester.
	refused(t, ctx, http.StatusBadRequest, string(task.InvalidInput), "alice", "POST", "/api/v1/models/requests",
		map[string]any{"name": "tiny-x", "repo": "trusted/tiny", "requester": "bob"})
	// zed has no role in demo: the request is as unknown to him as one
	// that does not exist, byte for byte.
	theirs := refused(t, ctx, http.StatusNotFound, string(task.NotFound), "zed", "GET", "/api/v1/models/requests/"+id, nil)
	none := refused(t, ctx, http.StatusNotFound, string(task.NotFound), "zed", "GET", "/api/v1/models/requests/no-such-request", nil)
	if strings.ReplaceAll(string(theirs), id, "X") != strings.ReplaceAll(string(none), "no-such-request", "X") {
		t.Fatalf("another tenant's request and a missing one answer differently:\n%s\n%s", theirs, none)
	}
	// zed may not ask for models in demo either.
	refused(t, ctx, http.StatusForbidden, string(task.PermissionDenied), "zed", "POST", "/api/v1/models/requests",
		map[string]any{"tenant": "demo", "name": "tiny-zed", "repo": "trusted/tiny"})

	st := waitAccessState(t, ctx, "alice", id, func(s task.AccessStatus) bool { return s.State == task.AwaitingApproval || s.State.Final() })
	if st.State != task.AwaitingApproval || st.Requester != "alice" {
		t.Fatalf("after screening and audit: %+v; want AWAITING_APPROVAL", st)
	}
	approve := "/api/v1/models/requests/" + id + "/approve"
	for _, user := range []string{"alice", "olga", "aldo"} {
		refused(t, ctx, http.StatusForbidden, string(task.PermissionDenied), user, "POST", approve, map[string]any{"reason": "mine"})
	}
	refused(t, ctx, http.StatusNotFound, string(task.NotFound), "zed", "POST", approve, nil)
	refused(t, ctx, http.StatusBadRequest, string(task.InvalidInput), "bob", "POST", approve, map[string]any{"actor": "rita"})

	// bob approves with the CLI, through the server.
	bob := cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["bob"])
	out, code := autoglm(t, ctx, bob, "", "models", "approve", "--json", "--reason", "licence fine", id)
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("bob's approval: exit %d: %s", code, out)
	}
	st = waitAccessState(t, ctx, "alice", id, func(s task.AccessStatus) bool { return s.State.Final() })
	var states []task.State
	approver := ""
	for _, tr := range st.Audit {
		states = append(states, tr.To)
		if tr.To == task.Approved {
			approver = tr.Actor
		}
	}
	want := []task.State{task.Submitted, task.Screened, task.AwaitingApproval, task.Approved, task.Running, task.Completed}
	if st.State != task.Completed || !slices.Equal(states, want) || approver != "bob" || st.Mirror.Files != 2 {
		t.Fatalf("approved request: %s, audit %v (approved by %q), mirror %+v; want %v approved by bob", st.State, states, approver, st.Mirror, want)
	}
	if _, err := suite.Store.Stat(ctx, task.ModelPrefix("tiny-approved", st.Mirror.Revision)+"model.safetensors"); err != nil {
		t.Fatalf("the approved model is not in the bucket: %v", err)
	}
	refused(t, ctx, http.StatusConflict, string(task.WrongState), "bob", "POST", approve, nil)
	// The access request's history holds no policy: its validators checked the
	// roles the server signed into bob's assertion, not a copy of the
	// tenant's members. carol, rita and dave did not act on this request.
	hist := historyBytes(t, ctx, task.AccessWorkflowID(id))
	for _, f := range []string{`"members"`, `"grant"`, "carol", "rita", "dave"} {
		if n := bytes.Count(hist, []byte(f)); n > 0 {
			t.Errorf("the access request's history holds %s %d times", f, n)
		}
	}
	if !bytes.Contains(hist, []byte("bob")) {
		t.Error("the access request's history does not name bob, who approved: the check above reads nothing")
	}

	// dave asks with the CLI; rita rejects through the API.
	dave := cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["dave"])
	out, code = autoglm(t, ctx, dave, "", "models", "request", "--json", "tiny-rejected", "--repo", "trusted/tiny", "--reason", "just curious")
	if code != 0 || json.Unmarshal([]byte(out), &req) != nil || req.Requester != "dave" || req.Tenant != "demo" {
		t.Fatalf("dave's request with the CLI: exit %d: %s", code, out)
	}
	id = req.ID
	if st = waitAccessState(t, ctx, "dave", id, func(s task.AccessStatus) bool { return s.State == task.AwaitingApproval || s.State.Final() }); st.State != task.AwaitingApproval {
		t.Fatalf("dave's request: %+v; want AWAITING_APPROVAL", st)
	}
	// Straight to Temporal, without the server's assertion: refused by
	// the workflow, whoever it claims to be.
	direct := &fleetclient.Client{Temporal: suite.Temporal, Store: suite.Store, Policy: suite.api.Policy}
	if _, err := direct.DecideAccess(ctx, "rita", id, true, "unsigned"); err == nil || !strings.Contains(err.Error(), "assertion") {
		t.Fatalf("an unsigned approval straight to Temporal: %v; want refused for its missing assertion", err)
	}
	reject := "/api/v1/models/requests/" + id + "/reject"
	refused(t, ctx, http.StatusBadRequest, string(task.InvalidInput), "rita", "POST", reject, nil)
	must(t, ctx, http.StatusOK, "rita", "POST", reject, map[string]any{"reason": "no use case"}, nil)
	st = waitAccessState(t, ctx, "dave", id, func(s task.AccessStatus) bool { return s.State.Final() })
	if last := st.Audit[len(st.Audit)-1]; st.State != task.Rejected || st.Reason != "no use case" || last.Actor != "rita" {
		t.Fatalf("rejected request: %+v; want REJECTED by rita with her reason", st)
	}
	refused(t, ctx, http.StatusConflict, string(task.WrongState), "bob", "POST", "/api/v1/models/requests/"+id+"/approve", nil)
	out, code = autoglm(t, ctx, dave, "", "models", "status", "--json", id)
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != task.Rejected {
		t.Fatalf("autoglm models status as dave: exit %d: %s", code, out)
	}

	// The fleet operator mirrors without an approval.
	var mr task.MirrorResult
	must(t, ctx, http.StatusOK, "olga", "POST", "/api/v1/models/mirrors",
		map[string]any{"name": "tiny-mirrored", "repo": "trusted/tiny"}, &mr)
	if mr.Name != "tiny-mirrored" || mr.Files != 2 {
		t.Fatalf("olga's mirror: %+v; want 2 files", mr)
	}
	if _, err := suite.Store.Stat(ctx, task.ModelPrefix("tiny-mirrored", "main")+"config.json"); err != nil {
		t.Fatalf("the mirrored model is not in the bucket: %v", err)
	}
}

// historyBytes is every event of a workflow's history, marshalled.
func historyBytes(t *testing.T, ctx context.Context, workflowID string) []byte {
	t.Helper()
	var out []byte
	it := suite.Temporal.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := proto.Marshal(ev)
		out = append(out, b...)
	}
	return out
}
