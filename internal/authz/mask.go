package authz

import "slices"

// Sensitive marks what only some roles may read: task fields (such as
// "prompt") and metadata keys (such as phone, email, id_number).
type Sensitive struct {
	Fields   []string `yaml:"fields"`
	Metadata []string `yaml:"metadata"`
	// VisibleTo are the roles that see them unmasked; default admin.
	VisibleTo []Role `yaml:"visible_to"`
}

// Masked is what a masked value reads as.
const Masked = "***"

// SeesSensitive reports whether a user with roles reads sensitive values.
func (s Sensitive) SeesSensitive(roles []Role) bool {
	visible := s.VisibleTo
	if len(visible) == 0 {
		visible = []Role{Admin}
	}
	for _, r := range roles {
		if slices.Contains(visible, r) {
			return true
		}
	}
	return false
}

// MaskMetadata is md with its sensitive keys masked for roles that may not
// see them; md itself is left as it is.
func (s Sensitive) MaskMetadata(md map[string]string, roles []Role) map[string]string {
	if md == nil || s.SeesSensitive(roles) {
		return md
	}
	out := make(map[string]string, len(md))
	for k, v := range md {
		if slices.Contains(s.Metadata, k) {
			v = Masked
		}
		out[k] = v
	}
	return out
}

// MaskField is v, or Masked if field is sensitive and roles may not see it.
func (s Sensitive) MaskField(field, v string, roles []Role) string {
	if v == "" || !slices.Contains(s.Fields, field) || s.SeesSensitive(roles) {
		return v
	}
	return Masked
}

// RolesOf are user's roles in tenant; none if the tenant is unknown.
func (p *Policy) RolesOf(tenant, user string) []Role {
	return p.Tenants[tenant].Users[user]
}
