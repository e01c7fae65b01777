package authz

import (
	"slices"
	"testing"
)

// FuzzParse: any policy file either parses into a policy whose rules hold
// or is refused with an error; it never panics. A parsed policy answers
// every check with a known role set and no role outside the table.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("tenants:\n  acme:\n    models: [glm-4]\n    users: {alice: [submitter], bob: [reviewer]}\n"))
	f.Add([]byte("tenants:\n  a:\n    users: {x: [wizard]}\n"))
	f.Add([]byte("tenants:\n  a:\n    models: ['*']\n    default_model: nope\n"))
	f.Add([]byte("tenants:\n  a:\n    webhooks:\n      - name: w\n        url: http://10.0.0.1/\n"))
	f.Add([]byte("api_keys:\n  - {user: a, tenant: b, sha256: zz}\n"))
	f.Add([]byte("{"))
	f.Add([]byte("tenants: &a [*a]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		for name, tn := range p.Tenants {
			if tn.Quorum < 1 || tn.ApprovalDeadline <= 0 {
				t.Fatalf("tenant %s: quorum %d, deadline %s after defaults", name, tn.Quorum, tn.ApprovalDeadline)
			}
			if tn.DefaultModel != "" && tn.AllowsModel(name, tn.DefaultModel) != nil {
				t.Fatalf("tenant %s: default model %q not allowed", name, tn.DefaultModel)
			}
			for user, roles := range tn.Users {
				for _, r := range roles {
					if !slices.Contains(Roles, r) {
						t.Fatalf("tenant %s user %s: role %q passed the parse", name, user, r)
					}
				}
				for _, a := range Actions {
					_ = p.Check(name, user, a, user)
				}
			}
		}
	})
}
