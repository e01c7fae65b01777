package activities

import (
	"context"
	"encoding/json"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// AuthorizeInput is the task to check.
type AuthorizeInput struct {
	Task task.Input `json:"task"`
}

// AuthorizeResult is what the rest of the task needs of the policy, taken
// once so every later decision of this task uses the same rules. It holds
// limits only, no members, roles or screening words: it lands in the
// workflow's history, which every Web UI user with codec access reads. Who
// may decide is checked against the roles the API server signs into each
// update's actor assertion; Screen reads the words from the policy.
type AuthorizeResult struct {
	// Quorum is how many distinct reviewers must approve.
	Quorum int `json:"quorum"`
	// ApprovalDeadline expires a task nobody decided on.
	ApprovalDeadline       time.Duration `json:"approval_deadline"`
	AutoApproveMaxRequests int           `json:"auto_approve_max_requests"`
	MaxBatchRequests       int           `json:"max_batch_requests"`
	MaxRequestBytes        int           `json:"max_request_bytes"`
	// HeartbeatTimeout is how soon a silent inference activity (its worker
	// died) is given to another attempt. It is the worker's setting,
	// recorded here so the workflow reads it deterministically.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// PieceRequests cuts a larger batch into pieces of this many requests
	// that run in parallel on the nodes; 0 runs every batch whole. It keeps
	// its JSON name (see MergeInput).
	PieceRequests int `json:"shard_requests,omitempty"`
	// ContinueAsNewEvents makes the task's waits continue as new once a
	// run's history reaches this many events, besides when the server
	// suggests it; 0 leaves it to the server. A worker setting recorded
	// here, like HeartbeatTimeout, so replay reads the same value and no
	// caller can set it.
	ContinueAsNewEvents int `json:"continue_as_new_events,omitempty"`
	// NodeStartTimeout is how long a node's queue may hold a piece before
	// it is dispatched again; 0 means ten minutes. A worker setting too.
	NodeStartTimeout time.Duration `json:"node_start_timeout,omitempty"`
}

// Authorize checks the tenant exists, the submitter may submit in it, and
// the tenant may use the model.
func (a *Activities) Authorize(ctx context.Context, in AuthorizeInput) (AuthorizeResult, error) {
	res, err := a.authorize(ctx, in.Task)
	return res, asApplicationError(err)
}

func (a *Activities) authorize(ctx context.Context, t task.Input) (AuthorizeResult, error) {
	if err := t.Validate(); err != nil {
		return AuthorizeResult{}, err
	}
	// Every object of the task is keyed by tenant and ID: refuse here what
	// could not be a key, so later stages can rely on it.
	if _, err := storage.Key(storage.Data, t.Tenant, t.ID, NameInput); err != nil {
		return AuthorizeResult{}, err
	}
	if t.Source.Key != "" {
		if err := a.checkSource(t.Tenant, t.ID, t.Source); err != nil {
			return AuthorizeResult{}, err
		}
	}
	p, err := a.Policy.Current()
	if err != nil {
		return AuthorizeResult{}, err
	}
	tenant, err := p.Tenant(t.Tenant)
	if err != nil {
		return AuthorizeResult{}, err
	}
	if err := p.Check(t.Tenant, t.Submitter, authz.Submit, t.Submitter); err != nil {
		return AuthorizeResult{}, err
	}
	if err := ModelAllowed(ctx, a.Store, tenant, t.Tenant, t.Model); err != nil {
		return AuthorizeResult{}, err
	}
	if err := a.checkQuotas(ctx, t.Tenant, t.Kind, tenant.Quotas); err != nil {
		return AuthorizeResult{}, err
	}
	return AuthorizeResult{
		Quorum:                 tenant.Quorum,
		ApprovalDeadline:       tenant.ApprovalDeadline,
		AutoApproveMaxRequests: tenant.AutoApproveMaxRequests,
		MaxBatchRequests:       tenant.Quotas.MaxBatchRequests,
		MaxRequestBytes:        p.Screening.MaxRequestBytes,
		HeartbeatTimeout:       a.HeartbeatTimeout,
		PieceRequests:          a.PieceRequests,
		ContinueAsNewEvents:    a.ContinueAsNewEvents,
		NodeStartTimeout:       a.NodeStartTimeout,
	}, nil
}

// checkQuotas refuses a task of a tenant that has used its tokens of
// the day, or a fine-tuning task of one whose training attempts of the
// day have used its GPU time; a maximum of 0 is no quota. The day's
// ledger is read once, and only when a quota applies.
func (a *Activities) checkQuotas(ctx context.Context, tenant string, kind task.Kind, q authz.Quotas) error {
	training := kind == task.KindFineTune && q.MaxTrainingSecondsPerDay > 0
	if q.MaxTokensPerDay <= 0 && !training {
		return nil
	}
	now := time.Now()
	recs, err := usage.Read(ctx, a.Store, tenant, now, now)
	if err != nil {
		return err
	}
	if used := usage.Total(recs).TotalTokens; q.MaxTokensPerDay > 0 && used >= q.MaxTokensPerDay {
		return task.Errorf(task.QuotaExceeded, "tenant %s has used %d of its %d tokens for today; new tasks are refused until the day ends (UTC; see autoglm usage)", tenant, used, q.MaxTokensPerDay)
	}
	if used := usage.TrainingSeconds(recs); training && used >= q.MaxTrainingSecondsPerDay {
		return task.Errorf(task.QuotaExceeded, "tenant %s has used %.1f of its %g training seconds (GPU time) for today; new fine-tuning jobs are refused until the day ends (UTC; see autoglm usage)", tenant, used, q.MaxTrainingSecondsPerDay)
	}
	return nil
}

// UnmarshalJSON reads the results histories recorded before the policy
// left them, which kept quorum and deadline in a "grant" beside the
// tenant's members (ignored now), so those tasks replay and continue.
func (r *AuthorizeResult) UnmarshalJSON(b []byte) error {
	type plain AuthorizeResult
	var v struct {
		plain
		Grant *struct {
			Quorum           int           `json:"quorum"`
			ApprovalDeadline time.Duration `json:"approval_deadline"`
		} `json:"grant"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = AuthorizeResult(v.plain)
	if g := v.Grant; g != nil && r.Quorum == 0 && r.ApprovalDeadline == 0 {
		r.Quorum, r.ApprovalDeadline = g.Quorum, g.ApprovalDeadline
	}
	return nil
}
