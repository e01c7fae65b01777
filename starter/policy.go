package main

import (
	"os"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
)

// policySource is the tenant policy submit checks against (default
// models, allowed models): AUTOGLM_POLICY_FILE, or the embedded default,
// as the worker reads it.
func policySource() (*authz.Source, error) {
	if path := os.Getenv("AUTOGLM_POLICY_FILE"); path != "" {
		return authz.Load(path)
	}
	return authz.Static(authz.Default()), nil
}
