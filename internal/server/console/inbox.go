package console

import (
	"net/http"
	"net/url"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// inboxItem is one task awaiting a decision, with what screening found.
type inboxItem struct {
	status
	IsOwn bool
}

type inboxView struct {
	Items   []inboxItem
	Message string
	// Decides says whether the user is a reviewer or admin in any tenant.
	Decides bool
}

// inboxPage lists the tasks awaiting approval in the tenants where the
// user is a reviewer or admin, each with its screening findings and the decision forms.
func (c *Console) inboxPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := inboxView{Message: done(r)}
	for _, tenant := range s.TenantNames() {
		if !s.HasIn(tenant, "reviewer", "admin") {
			continue
		}
		v.Decides = true
		rows, err := c.rows(r, s, url.Values{"tenant": {tenant}, "state": {string(task.AwaitingApproval)}})
		if err != nil {
			c.fail(w, r, s, err)
			return
		}
		for _, rw := range rows {
			// The list's state may be a moment old; the status is not.
			if rw.Known && rw.status.State == task.AwaitingApproval {
				v.Items = append(v.Items, inboxItem{status: rw.status, IsOwn: rw.Submitter == s.User})
			}
		}
	}
	c.renderLayout(w, r, http.StatusOK, "inbox.html", layout{Title: "Approval inbox", S: s, Nav: "inbox", Live: true, Body: v})
}
