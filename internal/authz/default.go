package authz

import _ "embed"

//go:embed default.yaml
var defaultYAML []byte

// Default is the embedded policy the worker uses when no policy file is
// given: one tenant, "demo", with one user in each role.
func Default() *Policy {
	p, err := Parse(defaultYAML)
	if err != nil {
		panic("authz: embedded default policy: " + err.Error())
	}
	return p
}

// DefaultYAML is the text of the embedded policy, to start a policy file
// from (`autoglm dev` adds its dev keys to a copy).
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }
