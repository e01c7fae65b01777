package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/autoglm-flow/autoglm-flow/internal/fleetclient"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The fleet and model routes: the verbs of internal/fleetclient, each
// called with the authenticated user, which checks the role table itself
// (fleet operators run the fleet and mirror models; any member of a
// tenant asks for a model; the tenant's reviewers decide). No body names
// an actor.
func (s *Server) fleetRoutes(mux *http.ServeMux) {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request, principal) error) {
		mux.HandleFunc(pattern, s.nativeHandler(func(w http.ResponseWriter, r *http.Request, p principal) error {
			// A verb answers when its workflow ends (a mirror, a command
			// on many nodes): past the server's write timeout.
			extendTransfer(w)
			return f(w, r, p)
		}))
	}
	h("GET "+APIPrefix+"/fleet/nodes", s.nodes)
	h("POST "+APIPrefix+"/fleet/nodes/{node}/drain", s.drain(true))
	h("POST "+APIPrefix+"/fleet/nodes/{node}/undrain", s.drain(false))
	h("POST "+APIPrefix+"/fleet/commands", s.fleetExec)
	h("POST "+APIPrefix+"/models/mirrors", s.mirror)
	h("POST "+APIPrefix+"/models/requests", s.requestAccess)
	h("GET "+APIPrefix+"/models/requests/{id}", s.accessStatus)
	h("POST "+APIPrefix+"/models/requests/{id}/approve", s.decideAccess(true))
	h("POST "+APIPrefix+"/models/requests/{id}/reject", s.decideAccess(false))
}

// fleet is the fleet verbs' library on the server's own clients.
func (s *Server) fleet() *fleetclient.Client {
	return &fleetclient.Client{Temporal: s.Tasks.Temporal, Store: s.Tasks.Store, Policy: s.Policy, Signer: s.Tasks.Signer}
}

func (s *Server) namespace() string {
	if s.Namespace == "" {
		return "default"
	}
	return s.Namespace
}

func (s *Server) nodes(w http.ResponseWriter, r *http.Request, p principal) error {
	views, err := s.fleet().Nodes(r.Context(), p.User, s.namespace())
	if err != nil {
		return err
	}
	if views == nil {
		views = []fleetclient.NodeView{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": views})
	return nil
}

func (s *Server) drain(on bool) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		res, err := s.fleet().Drain(r.Context(), p.User, r.PathValue("node"), on)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, res)
		return nil
	}
}

// FleetCommandBody is what POST /api/v1/fleet/commands takes: a fleet
// command without its actor, who is the authenticated user.
type FleetCommandBody struct {
	ID          string            `json:"id,omitempty"`
	Action      string            `json:"action"`
	Selector    task.Selector     `json:"selector,omitempty"`
	Args        map[string]string `json:"args,omitempty"`
	Concurrency int               `json:"concurrency,omitempty"`
	// NodeTimeout is a Go duration ("90s", "5m"); "" is the default.
	NodeTimeout string `json:"node_timeout,omitempty"`
}

// fleetExec runs the command and answers with its per-node result once
// every node is done (or timed out): 200 even when some nodes failed,
// which the result says node by node.
func (s *Server) fleetExec(w http.ResponseWriter, r *http.Request, p principal) error {
	var body FleetCommandBody
	if err := readJSON(r, &body); err != nil {
		return err
	}
	cmd := task.FleetCommand{ID: body.ID, Action: body.Action, Selector: body.Selector, Args: body.Args, Concurrency: body.Concurrency}
	if body.NodeTimeout != "" {
		d, err := time.ParseDuration(body.NodeTimeout)
		if err != nil {
			return task.Errorf(task.InvalidInput, "node_timeout %q is not a duration", body.NodeTimeout)
		}
		cmd.NodeTimeout = d
	}
	res, err := s.fleet().Exec(r.Context(), p.User, cmd)
	if err != nil {
		return alreadyStarted(err, "fleet command", cmd.ID)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// MirrorBody is what POST /api/v1/models/mirrors takes.
type MirrorBody struct {
	Name     string `json:"name"`
	Repo     string `json:"repo"`
	Revision string `json:"revision,omitempty"`
	Upstream string `json:"upstream,omitempty"`
}

func (s *Server) mirror(w http.ResponseWriter, r *http.Request, p principal) error {
	var body MirrorBody
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if body.Revision == "" {
		body.Revision = "main"
	}
	res, err := s.fleet().Mirror(r.Context(), p.User, task.MirrorInput{Name: body.Name, Repo: body.Repo, Revision: body.Revision, Upstream: body.Upstream})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// AccessRequestBody is what POST /api/v1/models/requests takes: the
// requester is the authenticated user; the tenant is the key's unless
// named.
type AccessRequestBody struct {
	ID       string `json:"id,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
	Name     string `json:"name"`
	Repo     string `json:"repo"`
	Revision string `json:"revision,omitempty"`
	Upstream string `json:"upstream,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func (s *Server) requestAccess(w http.ResponseWriter, r *http.Request, p principal) error {
	var body AccessRequestBody
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if body.Tenant == "" {
		body.Tenant = p.Tenant
	}
	if body.Revision == "" {
		body.Revision = "main"
	}
	req, err := s.fleet().RequestAccess(r.Context(), p.User, task.AccessRequest{
		ID: body.ID, Tenant: body.Tenant, Reason: body.Reason,
		Model: task.MirrorInput{Name: body.Name, Repo: body.Repo, Revision: body.Revision, Upstream: body.Upstream},
	})
	if err != nil {
		return alreadyStarted(err, "access request", req.ID)
	}
	writeJSON(w, http.StatusCreated, req)
	return nil
}

// accessOf reads access request id for p. A request that does not exist
// and one of a tenant where p has no role get the same answer, so IDs of
// other tenants leak nothing.
func (s *Server) accessOf(ctx context.Context, p principal, id string) (task.AccessStatus, error) {
	notFound := task.Errorf(task.NotFound, "no access request %s", id)
	if id == "" || len(id) > task.MaxIDLength {
		return task.AccessStatus{}, notFound
	}
	st, err := s.fleet().AccessStatus(ctx, p.User, id)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) || task.TypeOf(err) == task.PermissionDenied {
			return task.AccessStatus{}, notFound
		}
		return st, err
	}
	return st, nil
}

func (s *Server) accessStatus(w http.ResponseWriter, r *http.Request, p principal) error {
	st, err := s.accessOf(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) decideAccess(approve bool) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		var body DecisionBody
		if err := readJSON(r, &body); err != nil {
			return err
		}
		id := r.PathValue("id")
		st, err := s.accessOf(r.Context(), p, id)
		if err != nil {
			return err
		}
		if st.State.Final() {
			return task.Errorf(task.WrongState, "access request %s has ended (%s)", id, st.State)
		}
		// The workflow's validator checks the roles signed into the
		// assertion and refuses the requester.
		if st, err = s.fleet().DecideAccess(r.Context(), p.User, id, approve, body.Reason); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, st)
		return nil
	}
}

// alreadyStarted turns Temporal's "workflow already started" for an ID
// the caller chose into a typed Conflict.
func alreadyStarted(err error, what, id string) error {
	var as *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &as) {
		return task.Errorf(task.Conflict, "%s %s already exists", what, id)
	}
	return err
}
