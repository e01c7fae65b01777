package authz

import (
	"testing"
	"time"
)

// TestAccessApprovalDeadline: access.approval_deadline sets how long an
// access request waits; review_deadline, its former name, is read only
// when it is unset.
func TestAccessApprovalDeadline(t *testing.T) {
	for _, c := range []struct {
		name, access string
		want         time.Duration
	}{
		{"unset", "{}", 0},
		{"approval_deadline", "{approval_deadline: 2h}", 2 * time.Hour},
		{"deprecated review_deadline", "{review_deadline: 3h}", 3 * time.Hour},
		{"approval_deadline wins", "{approval_deadline: 2h, review_deadline: 3h}", 2 * time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse([]byte("tenants: {demo: {models: [m], users: {alice: [submitter]}}}\naccess: " + c.access + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if p.Access.ApprovalDeadline != c.want {
				t.Errorf("ApprovalDeadline = %s; want %s", p.Access.ApprovalDeadline, c.want)
			}
		})
	}
}
