package authz

import (
	"strings"
	"testing"
)

func TestAPIKeys(t *testing.T) {
	key, entry, err := NewAPIKey("alice", "demo", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, KeyPrefix) || strings.Contains(entry.SHA256, key) || len(entry.SHA256) != 64 {
		t.Fatalf("key %q, entry %+v", key, entry)
	}
	p, err := Parse([]byte("tenants: {demo: {models: [m], users: {alice: [submitter]}}}\napi_keys:\n  - {user: alice, tenant: demo, sha256: " + strings.ToUpper(entry.SHA256) + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := p.LookupKey(key); !ok || got.User != "alice" || got.Tenant != "demo" {
		t.Fatalf("lookup: %+v %v", got, ok)
	}
	if _, ok := p.LookupKey(key + "x"); ok {
		t.Fatal("a wrong key was found")
	}
	for _, bad := range []string{
		"api_keys: [{user: a, sha256: abc}]",
		"api_keys: [{sha256: " + entry.SHA256 + "}]",
		"api_keys: [{user: a, sha256: " + entry.SHA256 + "}, {user: b, sha256: " + entry.SHA256 + "}]",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestMasking(t *testing.T) {
	s := Default().Sensitive
	md := map[string]string{"phone": "+1-555-0100", "email": "a@b.c", "project": "x"}
	admin := s.MaskMetadata(md, []Role{Admin})
	op := s.MaskMetadata(md, []Role{Operator})
	if admin["phone"] != "+1-555-0100" || op["phone"] != Masked || op["email"] != Masked || op["project"] != "x" || md["phone"] != "+1-555-0100" {
		t.Fatalf("admin %v, operator %v, original %v", admin, op, md)
	}
	if s.MaskField("prompt", "secret plan", []Role{Reviewer}) != Masked || s.MaskField("prompt", "secret plan", []Role{Admin}) != "secret plan" {
		t.Fatal("prompt masking")
	}
}
