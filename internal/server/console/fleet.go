package console

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// node is one node of GET /api/v1/fleet/nodes.
type node struct {
	Name     string    `json:"name"`
	Models   []string  `json:"models"`
	Labels   []string  `json:"labels"`
	Running  int64     `json:"running"`
	Capacity int       `json:"capacity"`
	Drained  bool      `json:"drained"`
	Alive    bool      `json:"alive"`
	LastSeen time.Time `json:"last_seen"`
}

type fleetView struct {
	Nodes   []node
	Refused string
}

// fleetPage lists the fleet's nodes for operators and admins; the API
// refuses anyone else, and the page says so.
func (c *Console) fleetPage(w http.ResponseWriter, r *http.Request, s *session) {
	var v fleetView
	var out struct {
		Nodes []node `json:"nodes"`
	}
	if err := c.call(r, s.cred, "GET", "/api/v1/fleet/nodes", nil, &out); err != nil {
		if !notAllowed(err) {
			c.fail(w, r, s, err)
			return
		}
		v.Refused = err.Error()
	}
	v.Nodes = out.Nodes
	c.renderLayout(w, r, http.StatusOK, "fleet.html", layout{Title: "Fleet", S: s, Nav: "fleet", Live: true, Body: v})
}

type accessView struct {
	ID        string
	Found     *task.AccessStatus
	Error     string
	Message   string
	CanDecide bool
	Tenants   []string
}

// accessPage asks for a model for a tenant, and shows one access request
// by its ID, with the screening findings and, for the tenant's
// reviewers, the decision forms.
func (c *Console) accessPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := accessView{ID: strings.TrimSpace(r.URL.Query().Get("id")), Message: done(r), Tenants: s.TenantNames()}
	if v.ID != "" {
		var st task.AccessStatus
		if err := c.call(r, s.cred, "GET", "/api/v1/models/requests/"+url.PathEscape(v.ID), nil, &st); err != nil {
			v.Error = err.Error()
		} else {
			v.Found = &st
			v.CanDecide = !st.State.Final() && st.Requester != s.User && s.HasIn(st.Tenant, "reviewer", "admin")
		}
	}
	c.renderLayout(w, r, http.StatusOK, "access.html", layout{Title: "Model access", S: s, Nav: "access", Body: v})
}

func (c *Console) requestAccess(w http.ResponseWriter, r *http.Request, s *session) {
	body := map[string]string{}
	for _, k := range []string{"tenant", "name", "repo", "revision", "upstream", "reason"} {
		if v := strings.TrimSpace(r.PostFormValue(k)); v != "" {
			body[k] = v
		}
	}
	var out task.AccessRequest
	if err := c.call(r, s.cred, "POST", "/api/v1/models/requests", body, &out); err != nil {
		c.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, Prefix+"access?"+url.Values{"id": {out.ID}, "done": {"Asked for " + out.Model.Name}}.Encode(), http.StatusSeeOther)
}

func (c *Console) decideAccess(w http.ResponseWriter, r *http.Request, s *session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if action != "approve" && action != "reject" {
		c.fail(w, r, s, &apiError{Status: http.StatusNotFound, Message: "no such action " + action})
		return
	}
	if action == "reject" && reason == "" {
		c.fail(w, r, s, &apiError{Status: http.StatusBadRequest, Message: "A rejection needs a reason."})
		return
	}
	if err := c.call(r, s.cred, "POST", "/api/v1/models/requests/"+url.PathEscape(id)+"/"+action, map[string]string{"reason": reason}, nil); err != nil {
		c.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, Prefix+"access?"+url.Values{"id": {id}, "done": {pastTense[action] + " " + id}}.Encode(), http.StatusSeeOther)
}
