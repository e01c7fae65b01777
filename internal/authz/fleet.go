package authz

import (
	"slices"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The fleet is shared by every tenant, so its verbs are not tied to one:
// an admin or operator of any tenant runs the fleet (nodes, drain, fleet
// commands, mirrors).
func (p *Policy) CheckFleet(user string) error {
	if user == "" {
		return task.Errorf(task.PermissionDenied, "no user given for a fleet command")
	}
	for _, name := range p.TenantsOf(user) {
		roles := p.Tenants[name].Users[user]
		if slices.Contains(roles, Admin) || slices.Contains(roles, Operator) {
			return nil
		}
	}
	return task.Errorf(task.PermissionDenied, "%s is no operator or admin in any tenant and may not run the fleet", user)
}

// CheckReview says whether user may decide the tenant's access requests
// (admins and reviewers), never their own.
func (p *Policy) CheckReview(tenant, user, requester string) error {
	return p.Check(tenant, user, Approve, requester)
}
