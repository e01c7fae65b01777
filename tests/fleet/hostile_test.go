package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/model/testhub"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// hostilePolicy is two tenants that may ask for models from "trusted",
// and a fleet operator who belongs to neither.
func hostilePolicy(t *testing.T) string {
	t.Helper()
	p := `tenants:
  acc:
    models: [glm-4-test]
    users: {alice: [submitter], bob: [reviewer]}
    auto_approve_max_requests: 10
  rival:
    models: [glm-4-test]
    users: {mallory: [submitter, operator], rita: [reviewer]}
    auto_approve_max_requests: 10
fleet:
  operators: [olga]
access:
  upstreams: [trusted]
  licences: [apache-2.0]
  max_bytes: 104857600
  approval_deadline: 1h
`
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(p), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// request asks for a model as user of tenant and returns its ID.
func request(t *testing.T, ctx context.Context, user, tenant, name, repo string) string {
	t.Helper()
	out, code := runCLI(t, ctx, "models", "request", "--json", "--as", user, "--tenant", tenant, name, "--repo", repo, "--revision", "main", "--reason", "for the support bot")
	var r task.AccessRequest
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("models request as %s: exit %d: %q", user, code, out)
	}
	return r.ID
}

func waitRequest(t *testing.T, ctx context.Context, user, tenant, id string, cond func(task.AccessStatus) bool) task.AccessStatus {
	t.Helper()
	var st task.AccessStatus
	eventually(t, ctx, "access request "+id, func() (bool, error) {
		out, code := runCLI(t, ctx, "models", "status", "--json", "--as", user, "--tenant", tenant, id)
		st = task.AccessStatus{}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			return false, nil
		}
		return cond(st), nil
	})
	return st
}

// cacheDigest is every file in a node's cache with its sha256.
func cacheDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		sum := sha256.Sum256(b)
		out[p] = hex.EncodeToString(sum[:])
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

func bucketKeys(t *testing.T, ctx context.Context, prefix string) []string {
	t.Helper()
	list, err := suite.Store.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range list {
		keys = append(keys, strings.TrimPrefix(o.Key, prefix))
	}
	return keys
}

// TestHostileUpstream runs the model pipeline against an upstream that
// misbehaves, with a node that holds an approved model in its cache:
//   - a pickle added upstream after the request was screened and audited
//     is not mirrored: the mirror copies the screened files at the
//     screened commit, under that commit, and the grant binds them;
//   - a second tenant asking for the same name from another repository
//     is refused at screening, and a fleet mirror of it is refused too;
//   - a file whose body ends with EOF on a read of its own and does not
//     hash to its listed sha256 is never stored, and the request fails;
//
// and the node's cache is unchanged through all of it.
func TestHostileUpstream(t *testing.T) {
	ctx := testCtx(t, 6*time.Minute)
	hub := testhub.New("")
	defer hub.Close()
	for _, repo := range []string{"trusted/tiny", "trusted/other", "trusted/evil"} {
		hub.SetLicence(repo, "apache-2.0")
		hub.Add(repo, "main", "config.json", []byte(`{"model_type":"glm","repo":"`+repo+`"}`))
	}
	weights := safetensors(2 << 20)
	hub.Add("trusted/tiny", "main", "model.safetensors", weights)
	hub.Add("trusted/other", "main", "model.safetensors", safetensors(1<<20))
	evil := safetensors(1 << 20)
	hub.Add("trusted/evil", "main", "model.safetensors", evil)
	// Same size, a valid header, other weights, chunked so that its end
	// comes on a read of its own.
	forged := append([]byte(nil), evil...)
	forged[len(forged)-1] ^= 0xff
	hub.ServeInstead("trusted/evil", "main", "model.safetensors", forged, true)

	t.Setenv("AUTOGLM_POLICY_FILE", hostilePolicy(t))
	name, evilName := "tiny-"+randHex(3), "evil-"+randHex(3)
	n := startNode(t, "hostile", nodeOptions{Models: "glm-4-test," + name + "," + evilName, Env: []string{"AUTOGLM_HF_ENDPOINT=" + hub.URL()}})

	// 1. The approved model; a pickle appears upstream after the audit.
	id := request(t, ctx, "alice", "acc", name, "trusted/tiny")
	st := waitRequest(t, ctx, "alice", "acc", id, func(s task.AccessStatus) bool { return s.State == task.AwaitingApproval || s.State.Final() })
	if st.State != task.AwaitingApproval {
		t.Fatalf("the clean request after screening and audit: %+v", st)
	}
	hub.Add("trusted/tiny", "main", "pytorch_model.bin", append([]byte{0x80, 0x02, 'c', 'o', 's', '\n'}, testhub.Fixture(3, 1<<20)...))
	if _, code := runCLI(t, ctx, "models", "approve", "--as", "bob", "--reason", "licence fine", id); code != 0 {
		t.Fatalf("bob's approval: exit %d", code)
	}
	st = waitRequest(t, ctx, "alice", "acc", id, func(s task.AccessStatus) bool { return s.State.Final() })
	commit := st.Mirror.Revision
	if st.State != task.Completed || st.Mirror.Files != 2 || len(commit) != 40 {
		t.Fatalf("the approved request: %+v; want COMPLETED with 2 files mirrored at a commit", st)
	}
	if keys := bucketKeys(t, ctx, "models/"+name+"/"); !slices.Equal(keys, []string{commit + "/" + task.CacheMetaName, commit + "/config.json", commit + "/model.safetensors"}) {
		t.Fatalf("models/%s/ holds %v; want exactly the screened files at commit %s", name, keys, commit)
	}
	for _, q := range hub.Requests() {
		if strings.HasSuffix(q.File, "/pytorch_model.bin") {
			t.Fatalf("the hub was asked for the pickle added after the audit: %+v", q)
		}
	}
	var g activities.Grant
	if r, _, err := suite.Store.Get(ctx, "fleet/access/acc/"+name+".json"); err != nil {
		t.Fatal(err)
	} else {
		err = json.NewDecoder(r).Decode(&g)
		r.Close()
		if err != nil || g.Repo != "trusted/tiny" || g.Commit != commit || g.Tenant != "acc" || g.Model != name {
			t.Fatalf("grant %+v (%v); want acc, %s, trusted/tiny at %s", g, err, name, commit)
		}
	}
	ensure := []string{"--selector", "node=" + n.name, "--arg", "model=" + name + "@" + commit, "ensure-model"}
	if res, code := fleetExec(t, ctx, "olga", ensure...); code != 0 || res.OK != 1 {
		t.Fatalf("ensure-model of the approved model: exit %d, %+v", code, res)
	}
	// Authorized: the stand-in model server answers only glm-4-test, so
	// the item fails there and the task ends COMPLETED with every item
	// failed (8), not refused (3 or 6).
	if _, code := runCLI(t, ctx, "submit", "--as", "alice", "--tenant", "acc", "--model", name, "--wait", "hello"); code != 0 && code != 8 {
		t.Fatalf("a task on the approved model: exit %d, want 0 (or 8: the stand-in does not serve it)", code)
	}
	before := cacheDigest(t, n.cache)
	if len(before) != 3 {
		t.Fatalf("the node's cache holds %v; want the model's 2 files and its record", slices.Collect(maps.Keys(before)))
	}

	// 2. Another tenant asks for the same name from another repository.
	id = request(t, ctx, "mallory", "rival", name, "trusted/other")
	st = waitRequest(t, ctx, "mallory", "rival", id, func(s task.AccessStatus) bool { return s.State.Final() })
	if st.State != task.Rejected || st.Audit[len(st.Audit)-1].Actor != "screening" || !strings.Contains(st.Reason, "taken by trusted/tiny") {
		t.Fatalf("a second tenant's request for %s from trusted/other: %+v; want REJECTED by screening", name, st)
	}
	if _, code := runCLI(t, ctx, "models", "mirror", "--as", "mallory", name, "--repo", "trusted/other", "--revision", "main"); code != 3 {
		t.Fatalf("a tenant's operator ran a fleet mirror: exit %d, want 3", code)
	}
	if _, code := runCLI(t, ctx, "models", "mirror", "--as", "olga", name, "--repo", "trusted/other", "--revision", "main"); code != 3 {
		t.Fatalf("a fleet mirror of %s from trusted/other: exit %d, want 3 (the name is bound to trusted/tiny)", name, code)
	}
	if _, code := runCLI(t, ctx, "submit", "--as", "mallory", "--tenant", "rival", "--model", name, "--wait", "hello"); code != 3 && code != 6 {
		t.Fatalf("the rival tenant ran a task on %s: exit %d, want 3 or 6", name, code)
	}
	if keys := bucketKeys(t, ctx, "models/"+name+"/"); len(keys) != 3 {
		t.Fatalf("models/%s/ holds %v after the refusals; want the 3 objects of before", name, keys)
	}

	// 3. A body that is not what the listing says, its EOF on a read of its own.
	id = request(t, ctx, "alice", "acc", evilName, "trusted/evil")
	if st = waitRequest(t, ctx, "alice", "acc", id, func(s task.AccessStatus) bool { return s.State == task.AwaitingApproval || s.State.Final() }); st.State != task.AwaitingApproval {
		t.Fatalf("the forged model after screening and audit: %+v", st)
	}
	if _, code := runCLI(t, ctx, "models", "approve", "--as", "bob", id); code != 0 {
		t.Fatalf("bob's approval of the forged model: exit %d", code)
	}
	st = waitRequest(t, ctx, "alice", "acc", id, func(s task.AccessStatus) bool { return s.State.Final() })
	if st.State != task.Failed || !strings.Contains(st.Audit[len(st.Audit)-1].Reason, "other bytes than it listed") {
		t.Fatalf("the forged model: %+v; want FAILED, its bytes refused", st)
	}
	for _, key := range bucketKeys(t, ctx, "models/"+evilName+"/") {
		if strings.HasSuffix(key, "/model.safetensors") || strings.HasSuffix(key, "/"+task.CacheMetaName) {
			t.Fatalf("models/%s/%s was stored from a forged body", evilName, key)
		}
	}
	l, err := model.Upstream{HubURL: hub.URL()}.List(ctx, task.UpstreamHF, "trusted/evil", "main")
	if err != nil {
		t.Fatal(err)
	}
	if vs, err := suite.Store.Versions(ctx, task.ModelPrefix(evilName, l.Commit)+"model.safetensors"); err != nil || len(vs) != 0 {
		t.Fatalf("the forged file has %d stored version(s) (%v); want none ever completed", len(vs), err)
	}
	if _, code := runCLI(t, ctx, "submit", "--as", "alice", "--tenant", "acc", "--model", evilName, "--wait", "hello"); code != 3 && code != 6 {
		t.Fatalf("a task on the forged model: exit %d, want 3 or 6", code)
	}

	if after := cacheDigest(t, n.cache); !maps.Equal(before, after) {
		t.Fatalf("the node's cache changed:\nbefore %v\nafter  %v", before, after)
	}
	t.Logf("mirrored %s@%s (2 files, the later pickle left out); refused %s from trusted/other; refused the forged %s", name, commit[:12], name, evilName)
}
