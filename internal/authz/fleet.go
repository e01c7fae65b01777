package authz

import (
	"slices"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// FleetRules name who runs the fleet: the nodes, drain and undrain,
// fleet commands (which bring models into nodes' caches and evict
// others) and mirrors. The fleet serves every tenant, so this is a role of
// its own: no tenant's admin or operator holds it by being one.
type FleetRules struct {
	// Operators may run every fleet verb.
	Operators []string `yaml:"operators"`
}

// CheckFleet says whether user holds the fleet role.
func (p *Policy) CheckFleet(user string) error {
	if user == "" {
		return task.Errorf(task.PermissionDenied, "no user given for a fleet command")
	}
	if slices.Contains(p.Fleet.Operators, user) {
		return nil
	}
	return task.Errorf(task.PermissionDenied, "%s is no fleet operator (fleet.operators in the policy) and may not run the fleet; a tenant's operator or admin role does not give it", user)
}

// CheckReview says whether user may decide the tenant's access requests
// (admins and reviewers), never their own.
func (p *Policy) CheckReview(tenant, user, requester string) error {
	return p.Check(tenant, user, Approve, requester)
}
