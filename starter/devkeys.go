package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
)

// devKeys gives every user of the local stack's policy an API key, once:
// the policy (the embedded default plus the keys' hashes) goes to
// dir/policy.yaml, each key to dir/keys/<user>.key (0600). It points
// AUTOGLM_POLICY_FILE at that policy and returns the keys by user. With
// AUTOGLM_POLICY_FILE already set, the policy is the operator's and so are
// its keys: none are made.
func devKeys(dir string) (map[string]string, error) {
	if os.Getenv("AUTOGLM_POLICY_FILE") != "" {
		return nil, nil
	}
	policy, keysDir := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "keys")
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		if err := os.MkdirAll(keysDir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(policy, authz.DefaultYAML(), 0o600); err != nil {
			return nil, err
		}
		p := authz.Default()
		var users []string
		for tenant, t := range p.Tenants {
			for user := range t.Users {
				users = append(users, user+"@"+tenant)
			}
		}
		sort.Strings(users)
		for _, ut := range users {
			user, tenant, _ := strings.Cut(ut, "@")
			key, entry, err := authz.NewAPIKey(user, tenant, "autoglm dev")
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(keysDir, user+".key"), []byte(key+"\n"), 0o600); err != nil {
				return nil, err
			}
			if err := addKey(policy, entry); err != nil {
				return nil, err
			}
		}
	}
	abs, err := filepath.Abs(policy)
	if err != nil {
		return nil, err
	}
	os.Setenv("AUTOGLM_POLICY_FILE", abs)
	files, _ := filepath.Glob(filepath.Join(keysDir, "*.key"))
	keys := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("dev keys: %w", err)
		}
		keys[strings.TrimSuffix(filepath.Base(f), ".key")] = strings.TrimSpace(string(b))
	}
	return keys, nil
}
