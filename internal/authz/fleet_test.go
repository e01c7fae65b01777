package authz

import (
	"errors"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The fleet role is its own: a tenant's operator or admin does not hold
// it, a fleet operator does whatever their tenant roles.
func TestFleetRoleIsItsOwn(t *testing.T) {
	p, err := Parse([]byte(`tenants:
  a:
    models: [m]
    users: {ops: [operator], boss: [admin], fred: [submitter]}
fleet:
  operators: [fred]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"ops", "boss", "", "nobody"} {
		if err := p.CheckFleet(user); !errors.Is(err, task.ErrPermissionDenied) {
			t.Errorf("CheckFleet(%q) = %v; want PermissionDenied", user, err)
		}
	}
	if err := p.CheckFleet("fred"); err != nil {
		t.Errorf("the fleet operator: %v", err)
	}
	if err := Default().CheckFleet("olga"); err != nil {
		t.Errorf("the default policy's fleet operator: %v", err)
	}
	if err := Default().CheckFleet("carol"); err == nil {
		t.Error("the default policy's demo admin runs the fleet")
	}
}
