package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
)

// TestAddKey: keys create adds the hash to the policy file, keeps the
// file's comments, and the server finds the key by it.
func TestAddKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, authz.DefaultYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, user := range []string{"alice", "bob"} {
		key, entry, err := authz.NewAPIKey(user, "demo", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := addKey(path, entry); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "# The embedded default tenant policy") || strings.Contains(string(b), keys[0]) {
		t.Fatalf("the policy lost its comments or holds a key in clear:\n%s", b)
	}
	p, err := authz.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, user := range []string{"alice", "bob"} {
		if k, ok := p.LookupKey(keys[i]); !ok || k.User != user {
			t.Errorf("%s's key: %+v %v", user, k, ok)
		}
	}
}
