package server

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// APIPrefix is the native API's root; the version is in the path so a
// later one can live beside it.
const APIPrefix = "/api/v1"

// MaxBatchBytes bounds a batch file sent to the server, as OpenAI bounds
// its batch input files.
const MaxBatchBytes = 200 << 20

func (s *Server) native(mux *http.ServeMux) {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request, principal) error) {
		mux.HandleFunc(pattern, s.nativeHandler(f))
	}
	h("GET "+APIPrefix+"/whoami", s.whoami)
	h("POST "+APIPrefix+"/tasks", s.submit)
	h("GET "+APIPrefix+"/tasks", s.list)
	h("GET "+APIPrefix+"/tasks/{id}", s.status)
	h("GET "+APIPrefix+"/tasks/{id}/changes", s.changes)
	// A client built against the long poll's first path is sent on to
	// the one named for what it returns (events are what webhooks
	// deliver), query and all.
	mux.HandleFunc("GET "+APIPrefix+"/tasks/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		to := *r.URL
		to.Path = APIPrefix + "/tasks/" + url.PathEscape(r.PathValue("id")) + "/changes"
		http.Redirect(w, r, to.String(), http.StatusPermanentRedirect)
	})
	h("GET "+APIPrefix+"/tasks/{id}/result", s.result)
	h("GET "+APIPrefix+"/tasks/{id}/results", s.results)
	h("POST "+APIPrefix+"/tasks/{id}/resubmit-failed", s.resubmit(taskclient.ItemsFailed))
	h("POST "+APIPrefix+"/tasks/{id}/resubmit-unanswered", s.resubmit(taskclient.ItemsUnanswered))
	h("GET "+APIPrefix+"/usage", s.usageReport)
	h("POST "+APIPrefix+"/tasks/{id}/attachments", s.attach)
	for _, a := range []authz.Action{authz.Approve, authz.Reject, authz.Cancel, authz.Pause, authz.Resume, authz.SetPriority} {
		h("POST "+APIPrefix+"/tasks/{id}/"+string(a), s.decide(a))
	}
}

// APIError is the native API's error body.
type APIError struct {
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *Server) nativeHandler(f func(http.ResponseWriter, *http.Request, principal) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		drain := trackBody(r)
		p, err := s.authenticate(r)
		if err == nil {
			err = f(w, r, p)
		}
		if err == nil {
			return
		}
		drain()
		code := httpStatus(err)
		if code >= 500 && code != http.StatusInsufficientStorage {
			s.Log.WithError(err).WithField("path", r.URL.Path).Warn("request failed")
		}
		setRetryAfter(w, err)
		var body APIError
		body.Error.Type = string(errType(err))
		if code == http.StatusUnauthorized {
			body.Error.Type = "Unauthenticated"
		}
		body.Error.Message = errMessage(err)
		writeJSON(w, code, body)
	}
}

// taskID is the {id} of the path; a batch ID of the OpenAI API names the
// same task.
func taskID(r *http.Request) string {
	return strings.TrimPrefix(r.PathValue("id"), BatchIDPrefix)
}

// Whoami is who the key authenticates, and their roles.
type Whoami struct {
	User    string                  `json:"user"`
	Tenant  string                  `json:"tenant"`
	Tenants map[string][]authz.Role `json:"tenants"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, p principal) error {
	out := Whoami{User: p.User, Tenant: p.Tenant, Tenants: map[string][]authz.Role{}}
	for _, t := range p.Policy.TenantsOf(p.User) {
		out.Tenants[t] = p.Policy.RolesOf(t, p.User)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// SubmitRequest is the JSON body of a prompt task. A batch task sends its
// JSONL file as the body instead (Content-Type application/jsonl), with
// these fields as query parameters.
type SubmitRequest struct {
	ID       string            `json:"id,omitempty"`
	Tenant   string            `json:"tenant,omitempty"`
	Model    string            `json:"model,omitempty"`
	Prompt   string            `json:"prompt,omitempty"`
	Priority int               `json:"priority,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// FileID names a batch file uploaded through the Uploads or Files API
	// (a large file goes up in parts, resumably), instead of a body.
	FileID string `json:"file_id,omitempty"`
}

// Submitted is the answer to a submit: the task as it started, without
// its prompt.
type Submitted struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Submitter string    `json:"submitter"`
	Model     string    `json:"model"`
	Kind      task.Kind `json:"kind"`
	Priority  int       `json:"priority"`
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request, p principal) error {
	var req SubmitRequest
	ct := r.Header.Get("Content-Type")
	file, fileName := "", r.URL.Query().Get("name")
	if strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "application/jsonl") {
		if err := readJSON(r, &req); err != nil {
			return err
		}
		if req.FileID != "" {
			sf, name, err := s.spoolUploaded(r.Context(), p, req.FileID)
			if err != nil {
				return err
			}
			defer sf.remove()
			file, fileName = sf.path, name
		}
	} else {
		q := r.URL.Query()
		req.ID, req.Tenant, req.Model = q.Get("id"), q.Get("tenant"), q.Get("model")
		if v := q.Get("priority"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return task.Errorf(task.InvalidInput, "priority %q is not a number from 1 to 5", v)
			}
			req.Priority = n
		}
		extendTransfer(w)
		sf, err := s.spool(p.User, r.Body, MaxBatchBytes)
		if err != nil {
			return err
		}
		defer sf.remove()
		file = sf.path
	}
	sub, err := s.submitTask(r.Context(), p, req, file)
	if err != nil {
		// Name the user's file, not the spool file.
		return nameFile(err, file, cmp.Or(fileName, "the request's body"))
	}
	writeJSON(w, http.StatusCreated, sub)
	return nil
}

// submitTask checks the caller may submit to the tenant and use the ID,
// keeps the metadata beside the task's input, and starts the task
// through taskclient, which puts the input in the bucket.
func (s *Server) submitTask(ctx context.Context, p principal, req SubmitRequest, file string) (Submitted, error) {
	return s.startTask(ctx, p, req, taskclient.SubmitRequest{Prompt: req.Prompt, File: file})
}

// startTask is submitTask for any kind of task: tr holds its input, req
// the fields every kind shares.
func (s *Server) startTask(ctx context.Context, p principal, req SubmitRequest, tr taskclient.SubmitRequest) (Submitted, error) {
	if req.Tenant == "" {
		req.Tenant = p.Tenant
	}
	if err := p.Policy.Check(req.Tenant, p.User, authz.Submit, p.User); err != nil {
		if task.TypeOf(err) == task.UnknownTenant {
			return Submitted{}, task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", p.User, req.Tenant)
		}
		return Submitted{}, err
	}
	if req.ID == "" {
		req.ID = taskclient.NewID()
	} else if err := s.checkNewID(ctx, p, req.Tenant, req.ID); err != nil {
		return Submitted{}, err
	}
	if len(req.Metadata) > 0 {
		if err := s.putMetadata(ctx, req.Tenant, req.ID, req.Metadata); err != nil {
			return Submitted{}, err
		}
	}
	tr.ID, tr.Tenant, tr.Submitter, tr.Model, tr.Priority = req.ID, req.Tenant, p.User, req.Model, req.Priority
	in, err := s.Tasks.Submit(ctx, tr)
	if err != nil {
		if len(req.Metadata) > 0 && task.TypeOf(err) != task.Conflict {
			// Nothing started under the ID: a retry must find it free.
			s.deleteMetadata(ctx, req.Tenant, req.ID)
		}
		return Submitted{}, err
	}
	return Submitted{ID: in.ID, Tenant: in.Tenant, Submitter: in.Submitter, Model: in.Model, Kind: in.Kind, Priority: in.Priority}, nil
}

// checkNewID refuses a task ID that is taken. A task of a tenant where
// the caller has a role is named, with its state; one of another tenant
// answers as an ID reserved by someone else does (errUnavailable), so
// that a submit tells nothing of other tenants' tasks.
func (s *Server) checkNewID(ctx context.Context, p principal, tenant, id string) error {
	if err := storage.CheckID("task id", id); err != nil {
		return err
	}
	ti, err := s.info(ctx, id)
	switch {
	case err == nil:
		if len(p.Policy.RolesOf(ti.Tenant, p.User)) == 0 {
			return errUnavailable(id)
		}
		return task.Errorf(task.Conflict, "task %s already exists (%s); choose another --id, or leave it out for a new one", id, ti.State)
	case task.TypeOf(err) != task.NotFound:
		return err
	}
	return s.checkReservation(ctx, tenant, id, p.User)
}

// TaskStatus is a task's status as the API shows it: the workflow's own,
// with the task's metadata, sensitive values masked for the caller.
type TaskStatus struct {
	task.Status
	Metadata map[string]string `json:"metadata,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, p principal) error {
	id := taskID(r)
	ti, roles, err := s.authorize(r.Context(), p, id, authz.View)
	if err != nil {
		return err
	}
	st, err := s.Tasks.Status(r.Context(), id)
	if err != nil {
		return err
	}
	md := s.metadata(r.Context(), ti.Tenant, id)
	writeJSON(w, http.StatusOK, TaskStatus{Status: st, Metadata: p.Policy.Sensitive.MaskMetadata(md, roles)})
	return nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, p principal) error {
	q := r.URL.Query()
	tenants := p.Policy.TenantsOf(p.User)
	if t := q.Get("tenant"); t != "" {
		if len(p.Policy.RolesOf(t, p.User)) == 0 {
			return task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", p.User, t)
		}
		tenants = []string{t}
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	out, err := s.Tasks.List(r.Context(), taskclient.ListRequest{
		Tenants: tenants, State: task.State(q.Get("state")), Model: q.Get("model"),
		Submitter: q.Get("submitter"), Kind: task.Kind(q.Get("kind")), Limit: min(max(limit, 0), 1000),
	})
	if err != nil {
		return err
	}
	if out == nil {
		out = []taskclient.Summary{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": out})
	return nil
}

// DecisionBody is what approve, reject, cancel, pause, resume and
// set-priority take. There is no actor: it is the authenticated user.
type DecisionBody struct {
	Reason   string `json:"reason,omitempty"`
	Priority int    `json:"priority,omitempty"`
}

func (s *Server) decide(a authz.Action) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		var body DecisionBody
		if err := readJSON(r, &body); err != nil {
			return err
		}
		id := taskID(r)
		ti, roles, err := s.authorize(r.Context(), p, id, a)
		if err != nil {
			return err
		}
		if ti.Closed {
			return task.Errorf(task.WrongState, "task %s has ended (%s); it can no longer take %s", id, ti.State, a)
		}
		// The roles signed are the ones just checked, from the same
		// policy: the workflow holds no copy of it.
		req := task.DecisionRequest{Actor: p.User, Reason: body.Reason, Priority: body.Priority}
		req.Assertion = s.Tasks.Assert(id, string(a), req, roles)
		st, err := s.Tasks.Decide(r.Context(), id, string(a), req)
		if err != nil {
			return err
		}
		s.hub.poke(id)
		md := s.metadata(r.Context(), ti.Tenant, id)
		writeJSON(w, http.StatusOK, TaskStatus{Status: st, Metadata: p.Policy.Sensitive.MaskMetadata(md, roles)})
		return nil
	}
}

// resubmit starts a new task with the failed or unanswered items of a
// task the caller may view, in its tenant, as the caller.
func (s *Server) resubmit(which taskclient.Items) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		id := taskID(r)
		ti, _, err := s.authorize(r.Context(), p, id, authz.View)
		if err != nil {
			return err
		}
		if err := p.Policy.Check(ti.Tenant, p.User, authz.Submit, p.User); err != nil {
			return err
		}
		res, err := s.Tasks.Resubmit(r.Context(), id, p.User, which)
		if err != nil {
			return err
		}
		res.Task.Prompt = ""
		writeJSON(w, http.StatusCreated, res)
		return nil
	}
}

// waitParam is the long-poll time a client asks for, at most max.
func waitParam(r *http.Request, def, most time.Duration) time.Duration {
	d, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil || d <= 0 {
		return def
	}
	return min(d, most)
}

// result long-polls the workflow's result: the Temporal server answers it
// when the workflow closes, with no worker involved, so waiting does not
// compete with the work for worker slots. 202 with the state when the
// wait ends first.
func (s *Server) result(w http.ResponseWriter, r *http.Request, p principal) error {
	id := taskID(r)
	release, err := s.limits.startLongPoll(p.User)
	if err != nil {
		return err
	}
	defer release()
	ti, _, err := s.authorize(r.Context(), p, id, authz.View)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), waitParam(r, 30*time.Second, maxLongPoll))
	defer cancel()
	res, err := s.Tasks.Wait(ctx, id)
	if err != nil {
		if t := errType(err); t != "" && t != task.NotFound {
			// The workflow failed with a typed error: that is its result.
			writeJSON(w, http.StatusOK, task.Result{ID: id, State: task.Failed, Reason: string(t) + ": " + errMessage(err)})
			return nil
		}
		if r.Context().Err() != nil {
			return err
		}
		// The wait ended first (its deadline may surface as a cancelled
		// stream rather than as the context's error): say where the task is.
		if ti, err = s.info(r.Context(), id); err != nil {
			return err
		}
		if ti.Closed {
			// It closed as the wait ended: its result is there to read.
			rctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			if res, err = s.Tasks.Wait(rctx, id); err != nil {
				return fmt.Errorf("task %s has ended (%s) but its result could not be read: %w", id, ti.State, err)
			}
			writeJSON(w, http.StatusOK, res)
			return nil
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "state": ti.State})
		return nil
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// ResultFile is one downloadable object of a task.
type ResultFile struct {
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256,omitempty"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// results hands out presigned GET URLs, each for one object under the
// task's own prefix, for a short time: the bucket's credentials never
// leave the server.
func (s *Server) results(w http.ResponseWriter, r *http.Request, p principal) error {
	id := taskID(r)
	ti, _, err := s.authorize(r.Context(), p, id, authz.View)
	if err != nil {
		return err
	}
	st, err := s.Tasks.Status(r.Context(), id)
	if err != nil {
		return err
	}
	refs, err := s.Tasks.Artifacts(r.Context(), st)
	if err != nil {
		// No manifest yet (the task is still running): what its status
		// lists so far.
		refs = st.Artifacts
	}
	ps, ok := s.Tasks.Store.(storage.Presigner)
	if !ok {
		return fmt.Errorf("the bucket driver cannot presign URLs")
	}
	names, err := taskclient.LocalPaths("", refs)
	if err != nil {
		return err
	}
	files := []ResultFile{}
	for i, ref := range refs {
		if !ownKey(ref.Key, ti.Tenant, id) {
			continue
		}
		u, err := ps.PresignGet(r.Context(), ref.Key, s.PresignTTL)
		if err != nil {
			return err
		}
		files = append(files, ResultFile{Name: path.Clean(names[i]), Size: ref.Size, SHA256: ref.SHA256, URL: u, ExpiresAt: time.Now().Add(s.PresignTTL).UTC()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "state": st.State, "files": files})
	return nil
}

func (s *Server) changes(w http.ResponseWriter, r *http.Request, p principal) error {
	id := taskID(r)
	release, err := s.limits.startLongPoll(p.User)
	if err != nil {
		return err
	}
	defer release()
	if _, _, err := s.authorize(r.Context(), p, id, authz.View); err != nil {
		return err
	}
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	ctx, cancel := context.WithTimeout(r.Context(), waitParam(r, 25*time.Second, maxLongPoll))
	defer cancel()
	cs, final := s.hub.wait(ctx, id, after)
	if cs == nil {
		cs = []Change{}
	}
	writeJSON(w, http.StatusOK, Changes{Changes: cs, Final: final})
	return nil
}

// attach stores the body as an attachment of task id (?name=, &tenant=):
// to the caller's own existing task, or to an ID no task has yet, which
// the first attachment reserves for the caller (see reservation.go).
func (s *Server) attach(w http.ResponseWriter, r *http.Request, p principal) error {
	id := taskID(r)
	q := r.URL.Query()
	name, err := attachmentName(q.Get("name"))
	if err != nil {
		return err
	}
	if err := storage.CheckID("task id", id); err != nil {
		return err
	}
	tenant := q.Get("tenant")
	ti, err := s.info(r.Context(), id)
	switch {
	case err == nil:
		if len(p.Policy.RolesOf(ti.Tenant, p.User)) == 0 {
			return task.Errorf(task.NotFound, "no task %s", id)
		}
		if ti.Submitter != p.User {
			return task.Errorf(task.PermissionDenied, "task %s is %s's; only its submitter attaches files to it", id, ti.Submitter)
		}
		tenant = ti.Tenant
	case task.TypeOf(err) == task.NotFound:
		if tenant == "" {
			tenant = p.Tenant
		}
	default:
		return err
	}
	if err := p.Policy.Check(tenant, p.User, authz.Submit, p.User); err != nil {
		return err
	}
	if ti.ID == "" {
		if err := s.reserve(r.Context(), tenant, id, p.User); err != nil {
			return err
		}
	}
	extendTransfer(w)
	var sf *spoolFile
	if fid := q.Get("file_id"); fid != "" {
		sf, _, err = s.spoolUploaded(r.Context(), p, fid)
	} else {
		sf, err = s.spool(p.User, r.Body, MaxBatchBytes)
	}
	if err != nil {
		return err
	}
	defer sf.remove()
	dir, err := os.MkdirTemp(s.TempDir, spoolPattern)
	if err != nil {
		return diskError(err)
	}
	defer os.RemoveAll(dir)
	// Attach names the object after the file: give the file its name.
	path := filepath.Join(dir, name)
	if err := os.Rename(sf.path, path); err != nil {
		return err
	}
	sf.path = path
	atts, err := s.Tasks.Attach(r.Context(), tenant, id, []string{path}, taskclient.AttachOptions{StateDir: dir})
	if err != nil {
		return err
	}
	a := atts[0]
	a.Path = name
	writeJSON(w, http.StatusCreated, a)
	return nil
}

// attachmentName is the name an attachment is stored under: a safe
// object name (storage.SafeName) of one path element.
func attachmentName(raw string) (string, error) {
	name, err := storage.SafeName(raw)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return "", task.Errorf(task.InvalidInput, "attachment name %q must be one file name, without a slash", name)
	}
	// It is stored under attachments/, which counts toward the name's
	// length: refused here, before the body is read, not at the write.
	if max := storage.MaxNameLen - len(taskclient.AttachmentsDir); len(name) > max {
		return "", task.Errorf(task.InvalidInput, "attachment name %q is %d bytes; at most %d", name, len(name), max)
	}
	return name, nil
}
