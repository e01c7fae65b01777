package main

import "github.com/autoglm-flow/autoglm-flow/internal/authz"

// policySource is the tenant policy submit checks against (default
// models, allowed models): AUTOGLM_POLICY_FILE, or the embedded default,
// as the worker reads it.
func policySource() (*authz.Source, error) { return authz.FromEnv() }
