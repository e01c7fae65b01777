// Package server is `autoglm server`: the one front door of autoglm-flow.
// It authenticates users (API keys stored hashed in the policy), checks
// every request against the one role table (internal/authz), and alone
// holds the Temporal and bucket clients. It serves the native task API
// under /api/v1 and the OpenAI Files and Batches API under /v1.
//
// The authenticated user is the actor of everything done with their key:
// no field of a request names the actor. Each update the server sends
// carries an ed25519 assertion of (task, action, actor, expiry) that the
// workflow's validators verify (internal/assertion).
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/codec"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// DefaultPresignTTL is how long a results URL works: long enough to start
// a download, short enough that a URL pasted somewhere soon goes stale.
const DefaultPresignTTL = 5 * time.Minute

// Server is the API server.
type Server struct {
	// Tasks holds the Temporal and bucket clients and the signer of the
	// actor assertions (Tasks.Signer must be set).
	Tasks  *taskclient.Client
	Policy *authz.Source
	// PresignTTL is how long results URLs work; DefaultPresignTTL if 0.
	PresignTTL time.Duration
	// TempDir holds request bodies on their way to the bucket; "" is the
	// system's.
	TempDir string
	Log     *logrus.Logger
	// OIDC, if not nil, also accepts the identity provider's JWTs.
	OIDC *OIDC
	// Namespace is the Temporal namespace: the fleet's liveness
	// (DescribeTaskQueue) and the only one the codec endpoint opens.
	Namespace string
	// Codec, if not nil, is served at /codec/ for the Temporal Web UI,
	// called from UIOrigins with the user's API key.
	Codec     *codec.Codec
	UIOrigins []string
	// Metrics, if not nil, is served at /metrics to the users who may read
	// every tenant (readsEveryTenant): it counts every tenant's tasks.
	Metrics http.Handler
	// Limits bound the uploads and long polls in progress.
	Limits Limits

	hub    *hub
	limits *limiter
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler {
	if s.PresignTTL <= 0 {
		s.PresignTTL = DefaultPresignTTL
	}
	if s.Log == nil {
		s.Log = logrus.New()
	}
	s.hub = newHub(temporalSource{s.Tasks}, s.Log)
	s.limits = newLimiter(s.Limits)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.native(mux)
	s.fineTuneRoutes(mux)
	s.fleetRoutes(mux)
	s.openai(mux)
	s.consoleRoutes(mux)
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.metrics())
	}
	if s.Codec != nil {
		mux.Handle("/codec/", codec.Handler(codec.HandlerOptions{
			Codec: s.Codec, Namespace: s.Namespace, Origins: s.UIOrigins, MaxBodyBytes: codec.DefaultMaxBodyBytes,
			Authenticate: func(r *http.Request) (string, error) {
				p, err := s.authenticate(r)
				return p.User, err
			},
			Allowed: s.readsEveryTenant,
		}))
	}
	return jsonFallback(mux)
}

// principal is who a request comes from, as authenticated.
type principal struct {
	User string
	// Tenant is the key's tenant: the tenant of OpenAI API calls, and the
	// default of native ones.
	Tenant string
	Policy *authz.Policy
}

var errUnauthenticated = errors.New("unauthenticated")

// authenticate reads the bearer key. Nothing else in the request bears
// on who the caller is.
func (s *Server) authenticate(r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	key, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(key) == "" {
		return principal{}, fmt.Errorf("%w: no API key; send Authorization: Bearer <key>", errUnauthenticated)
	}
	p, err := s.Policy.Current()
	if err != nil {
		return principal{}, err
	}
	key = strings.TrimSpace(key)
	if s.OIDC != nil && looksLikeJWT(key) {
		user, err := s.OIDC.User(r.Context(), key)
		if err != nil {
			return principal{}, err
		}
		// A token names no tenant: the user's only one, if one.
		tenant := ""
		if ts := p.TenantsOf(user); len(ts) == 1 {
			tenant = ts[0]
		}
		return principal{User: user, Tenant: tenant, Policy: p}, nil
	}
	k, ok := p.LookupKey(key)
	if !ok {
		return principal{}, fmt.Errorf("%w: the API key is not valid", errUnauthenticated)
	}
	return principal{User: k.User, Tenant: k.Tenant, Policy: p}, nil
}

// metrics serves the metrics handler to a user who may read every tenant;
// Prometheus sends the API key as its scrape's bearer credentials.
func (s *Server) metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if !s.readsEveryTenant(p.User) {
			http.Error(w, p.User+" may not read the metrics of every tenant", http.StatusForbidden)
			return
		}
		s.Metrics.ServeHTTP(w, r)
	})
}

// readsEveryTenant says whether user may open any payload of the
// namespace through the codec endpoint: the Web UI shows every tenant's
// workflows, so only admins and operators of every tenant may.
func (s *Server) readsEveryTenant(user string) bool {
	p, err := s.Policy.Current()
	if err != nil || len(p.Tenants) == 0 {
		return false
	}
	for name := range p.Tenants {
		roles := p.RolesOf(name, user)
		if !slices.Contains(roles, authz.Admin) && !slices.Contains(roles, authz.Operator) {
			return false
		}
	}
	return true
}

// taskInfo is what the Temporal server itself knows of a task, from its
// search attributes: enough to authorize a request without a worker.
type taskInfo struct {
	ID, Tenant, Submitter, State, Kind string
	Closed                             bool
}

func (s *Server) info(ctx context.Context, id string) (taskInfo, error) {
	if id == "" || len(id) > task.MaxIDLength {
		return taskInfo{}, task.Errorf(task.NotFound, "no task %s", id)
	}
	d, err := s.Tasks.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return taskInfo{}, task.Errorf(task.NotFound, "no task %s", id)
		}
		return taskInfo{}, err
	}
	e := d.GetWorkflowExecutionInfo()
	if e.GetType().GetName() != task.WorkflowType {
		return taskInfo{}, task.Errorf(task.NotFound, "no task %s", id)
	}
	ti := taskInfo{ID: id, Closed: e.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING}
	fields := e.GetSearchAttributes().GetIndexedFields()
	for name, v := range map[string]*string{
		task.AttrTenant.GetName(): &ti.Tenant, task.AttrSubmitter.GetName(): &ti.Submitter,
		task.AttrState.GetName(): &ti.State, task.AttrKind.GetName(): &ti.Kind,
	} {
		if p := fields[name]; p != nil {
			_ = converter.GetDefaultDataConverter().FromPayload(p, v)
		}
	}
	if ti.Closed && !task.State(ti.State).Final() {
		// Terminated or timed out from outside: the search attribute
		// still holds the last state the workflow set.
		ti.State = string(task.Failed)
	}
	return ti, nil
}

// authorize finds task id and checks that p may take action on it. A user
// with no role in the task's tenant learns nothing, not even that it
// exists: NotFound.
func (s *Server) authorize(ctx context.Context, p principal, id string, a authz.Action) (taskInfo, []authz.Role, error) {
	ti, err := s.info(ctx, id)
	if err != nil {
		return ti, nil, err
	}
	roles := p.Policy.RolesOf(ti.Tenant, p.User)
	if len(roles) == 0 {
		return ti, nil, task.Errorf(task.NotFound, "no task %s", id)
	}
	if err := authz.Allowed(ti.Tenant, p.User, roles, a, ti.Submitter); err != nil {
		return ti, roles, err
	}
	return ti, roles, nil
}

// errType is the stable type of err: a Temporal application error's, or
// the project's own; never a name the SDK made up for an untyped error.
func errType(err error) task.ErrorType {
	var le *limitError
	if errors.As(err, &le) {
		return task.ErrorType(le.errorType())
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && task.ErrorType(ae.Type()).Known() {
		return task.ErrorType(ae.Type())
	}
	return task.TypeOf(err)
}

// errMessage is err without the layers of wrapping around an application
// error.
func errMessage(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Message()
	}
	return err.Error()
}

// httpStatus is the status code of an error type.
func httpStatus(err error) int {
	if errors.Is(err, errUnauthenticated) {
		return http.StatusUnauthorized
	}
	var le *limitError
	if errors.As(err, &le) {
		return le.status
	}
	switch errType(err) {
	case task.InvalidInput, task.ScreeningFailed:
		return http.StatusBadRequest
	case task.PermissionDenied, task.UnknownTenant, task.ModelNotAllowed:
		return http.StatusForbidden
	case task.QuotaExceeded, task.RateLimited:
		return http.StatusTooManyRequests
	case task.NotFound:
		return http.StatusNotFound
	case task.WrongState, task.Conflict:
		return http.StatusConflict
	case task.NoNode:
		// The request names a model no node serves: a retry of the same
		// request fails the same way until someone starts one.
		return http.StatusBadRequest
	case task.UpstreamUnavailable, task.ContextLengthExceeded:
		return http.StatusBadGateway
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// readJSON decodes a small request body into v; an empty body leaves v
// as it is.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, task.MaxPromptBytes+64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return task.Errorf(task.InvalidInput, "the request body is not the expected JSON: %v", err)
	}
	return nil
}

// ownKey reports whether key lies under the task's own prefix: category,
// then the tenant hash, tenant and ID of that very task.
func ownKey(key, tenant, id string) bool {
	parts := strings.SplitN(key, "/", 5)
	return len(parts) == 5 && parts[1] == storage.TenantHash(tenant) && parts[2] == tenant && parts[3] == id
}

func decodePayload(p *commonpb.Payload, v any) error {
	return converter.GetDefaultDataConverter().FromPayload(p, v)
}
