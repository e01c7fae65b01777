// Package authz is the tenant policy: tenants, their users and roles, the
// models each may use, approval rules and quotas, and what each role may do.
// The same table answers the update validators in the workflow and the
// checks in the activities.
package authz

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Role is what a user is in a tenant.
type Role string

// The roles.
const (
	Admin     Role = "admin"
	Reviewer  Role = "reviewer"
	Operator  Role = "operator"
	Submitter Role = "submitter"
	Auditor   Role = "auditor"
)

// Action is something a user asks of a task.
type Action string

// The actions.
const (
	Submit      Action = "submit"
	Approve     Action = "approve"
	Reject      Action = "reject"
	Cancel      Action = "cancel"
	Pause       Action = "pause"
	Resume      Action = "resume"
	SetPriority Action = "set-priority"
	View        Action = "view"
)

// Actions lists every action, in the order the README's table shows them.
var Actions = []Action{Submit, Approve, Reject, Cancel, Pause, Resume, SetPriority, View}

// Roles lists every role.
var Roles = []Role{Admin, Reviewer, Operator, Submitter, Auditor}

// allowed is the role table. A submitter may also cancel their own task
// (see Allowed); nobody approves or rejects their own task.
var allowed = map[Role][]Action{
	Admin:     {Submit, Approve, Reject, Cancel, Pause, Resume, SetPriority, View},
	Reviewer:  {Approve, Reject, View},
	Operator:  {Cancel, Pause, Resume, SetPriority, View},
	Submitter: {Submit, View},
	Auditor:   {View},
}

// Policy is the whole tenant policy file.
type Policy struct {
	Tenants   map[string]Tenant `yaml:"tenants"`
	Screening Screening         `yaml:"screening"`
	// Access screens requests for new models (see access.go).
	Access AccessRules `yaml:"access"`
	// Fleet names who runs the fleet (see fleet.go).
	Fleet FleetRules `yaml:"fleet"`
	// APIKeys are the API server's keys, stored hashed (see keys.go).
	APIKeys []APIKey `yaml:"api_keys"`
	// Sensitive names what the API server masks for roles not allowed to
	// see it (see mask.go).
	Sensitive Sensitive `yaml:"sensitive"`
}

// Tenant is one tenant's rules.
type Tenant struct {
	Models []string `yaml:"models"`
	// DefaultModel is what a submission that names no model runs (default:
	// the first of Models that is not "*").
	DefaultModel string            `yaml:"default_model"`
	Users        map[string][]Role `yaml:"users"`
	// Quorum is how many distinct reviewers must approve (default 1).
	Quorum int `yaml:"quorum"`
	// ApprovalDeadline expires a task nobody decided on (default 24h).
	ApprovalDeadline time.Duration `yaml:"approval_deadline"`
	// AutoApproveMaxRequests lets screened work of at most this many
	// requests, with nothing flagged, skip human approval. 0 turns it off.
	AutoApproveMaxRequests int    `yaml:"auto_approve_max_requests"`
	Quotas                 Quotas `yaml:"quotas"`
	// Webhooks are the tenant's event subscribers (see webhook.go).
	Webhooks []Webhook `yaml:"webhooks"`
}

// Quotas bound what a tenant may ask for.
type Quotas struct {
	MaxBatchRequests int `yaml:"max_batch_requests"`
	// MaxTokensPerDay, if set, refuses new tasks at authorization once
	// the tenant's tasks that ended today (UTC) used this many tokens, as
	// the usage ledger has them. A task already running is not stopped.
	MaxTokensPerDay int64 `yaml:"max_tokens_per_day"`
	// MaxTrainingSecondsPerDay, if set, refuses new fine-tuning tasks at
	// authorization once the tenant's training attempts that started
	// today (UTC) held nodes' training slots this many seconds: its GPU
	// time. A job already training is not stopped.
	MaxTrainingSecondsPerDay float64 `yaml:"max_training_seconds_per_day"`
}

// Screening configures the screen stage.
type Screening struct {
	// MaxRequestBytes bounds one request line of a batch.
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// SensitiveWords flag a task for human approval, whatever its size.
	SensitiveWords []string `yaml:"sensitive_words"`
}

// Parse reads a policy from YAML and checks it.
func Parse(b []byte) (*Policy, error) {
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("authz: policy: %w", err)
	}
	for name, t := range p.Tenants {
		for user, roles := range t.Users {
			for _, r := range roles {
				if !slices.Contains(Roles, r) {
					return nil, fmt.Errorf("authz: policy: tenant %s user %s: unknown role %q", name, user, r)
				}
			}
		}
		for _, w := range t.Webhooks {
			if err := w.check(name); err != nil {
				return nil, err
			}
		}
		if t.Quorum <= 0 {
			t.Quorum = 1
		}
		if t.ApprovalDeadline <= 0 {
			t.ApprovalDeadline = 24 * time.Hour
		}
		if t.DefaultModel == "" {
			if i := slices.IndexFunc(t.Models, func(m string) bool { return m != "*" }); i >= 0 {
				t.DefaultModel = t.Models[i]
			}
		}
		if t.DefaultModel != "" && t.AllowsModel(name, t.DefaultModel) != nil {
			return nil, fmt.Errorf("authz: policy: tenant %s: default_model %q is not among its models %v", name, t.DefaultModel, t.Models)
		}
		p.Tenants[name] = t
	}
	if err := p.checkKeys(); err != nil {
		return nil, err
	}
	if p.Screening.MaxRequestBytes <= 0 {
		p.Screening.MaxRequestBytes = 1 << 20
	}
	if p.Access.ApprovalDeadline <= 0 {
		p.Access.ApprovalDeadline = p.Access.DeprecatedReviewDeadline
	}
	return &p, nil
}

// Tenant returns the named tenant, or an UnknownTenant error.
func (p *Policy) Tenant(name string) (Tenant, error) {
	t, ok := p.Tenants[name]
	if !ok {
		return Tenant{}, task.Errorf(task.UnknownTenant, "unknown tenant %q", name)
	}
	return t, nil
}

// Check is Allowed with user's roles in tenant from this policy: for the
// API server, the activities and the CLI, which read the policy. The
// update validators, which must be deterministic and hold no policy, call
// Allowed with the roles the server signed into the actor assertion.
func (p *Policy) Check(tenant, user string, a Action, submitter string) error {
	t, err := p.Tenant(tenant)
	if err != nil {
		return err
	}
	return Allowed(tenant, user, t.Users[user], a, submitter)
}

// Allowed is the role table, with its two rules about one's own task: a
// submitter may cancel their own task, and nobody approves or rejects it.
// It is the one rule: every other check calls it.
func Allowed(tenant, user string, roles []Role, a Action, submitter string) error {
	if user == "" {
		return task.Errorf(task.PermissionDenied, "no user given for %s", a)
	}
	own := user == submitter
	if own && (a == Approve || a == Reject) {
		return task.Errorf(task.PermissionDenied, "%s submitted this task and may not %s it", user, a)
	}
	if own && a == Cancel && slices.Contains(roles, Submitter) {
		return nil
	}
	for _, r := range roles {
		if slices.Contains(allowed[r], a) {
			return nil
		}
	}
	if len(roles) == 0 {
		return task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", user, tenant)
	}
	return task.Errorf(task.PermissionDenied, "%s (%v) may not %s in tenant %s", user, roles, a, tenant)
}

// AllowsModel reports whether the tenant may use model; a ModelNotAllowed
// error if not.
func (t Tenant) AllowsModel(tenant, model string) error {
	if slices.Contains(t.Models, model) || slices.Contains(t.Models, "*") {
		return nil
	}
	return task.Errorf(task.ModelNotAllowed, "tenant %s may not use model %q (allowed: %v)", tenant, model, t.Models)
}

// DefaultModel is the model a submission to tenant runs when it names
// none; an InvalidInput error if the tenant has no default.
func (p *Policy) DefaultModel(tenant string) (string, error) {
	t, err := p.Tenant(tenant)
	if err != nil {
		return "", err
	}
	if t.DefaultModel == "" {
		return "", task.Errorf(task.InvalidInput, "tenant %s has no default model; name one with --model", tenant)
	}
	return t.DefaultModel, nil
}

// TenantsOf lists, sorted, the tenants in which user has a role: what they
// may see in `autoglm list`.
func (p *Policy) TenantsOf(user string) []string {
	var out []string
	for name, t := range p.Tenants {
		if len(t.Users[user]) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
