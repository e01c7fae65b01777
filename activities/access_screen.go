package activities

import (
	"context"
	"fmt"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// ScreenAccessResult is the automatic screening of an access request.
type ScreenAccessResult struct {
	// Refused says why the request stops here; empty when it goes on.
	Refused string `json:"refused,omitempty"`
	Licence string `json:"licence"`
	Bytes   int64  `json:"bytes"`
	// Commit is the upstream commit the requested revision resolved to,
	// and Files exactly its files: the audit reads them, the grant binds
	// the commit, the mirror copies these files at it and nothing else.
	Commit string           `json:"commit,omitempty"`
	Files  []task.ModelFile `json:"files"`
	// No members or roles: the approval's validators check the roles the
	// server signs into each decision's assertion. Results recorded with a
	// "grant" still decode; it is ignored.
	//
	// ApprovalDeadline keeps the JSON name the recorded histories and the
	// requests in flight carry: the wait's timer is built from it.
	ApprovalDeadline time.Duration `json:"review_deadline"`
}

// ScreenAccessRequest checks an access request against the policy's
// access rules (an allowed upstream, an allowed licence, a size in
// bounds) and that the model name is not bound to another repository,
// and resolves the revision to a commit with its exact files.
func (m *Mirror) ScreenAccessRequest(ctx context.Context, in task.AccessRequest) (ScreenAccessResult, error) {
	res, err := m.screenAccess(ctx, in)
	return res, asApplicationError(err)
}

func (m *Mirror) screenAccess(ctx context.Context, in task.AccessRequest) (ScreenAccessResult, error) {
	var res ScreenAccessResult
	if err := in.Validate(); err != nil {
		return res, err
	}
	p, err := m.Policy.Current()
	if err != nil {
		return res, err
	}
	t, err := p.Tenant(in.Tenant)
	if err != nil {
		return res, err
	}
	if len(t.Users[in.Requester]) == 0 {
		return res, task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", in.Requester, in.Tenant)
	}
	res.ApprovalDeadline = p.Access.ApprovalDeadline
	if res.ApprovalDeadline <= 0 {
		res.ApprovalDeadline = 72 * time.Hour
	}
	rules := p.Access
	switch o, ok, err := readOrigin(ctx, m.Store, in.Model.Name); {
	case err != nil:
		return res, err
	case ok && !o.sameRepo(originOf(in.Model)):
		res.Refused = fmt.Sprintf("the name %s is taken by %s (%s); request the model under another name", in.Model.Name, o.Repo, o.Upstream)
		return res, nil
	}
	if !rules.AllowsUpstream(in.Model.Repo) {
		res.Refused = fmt.Sprintf("upstream %s is not on the allow-list %v", in.Model.Repo, rules.Upstreams)
		return res, nil
	}
	// The commit first: the licence is read at it, so the licence checked
	// is that of the files recorded.
	l, err := m.Upstream.List(ctx, in.Model.Upstream, in.Model.Repo, in.Model.Revision)
	if err != nil {
		return res, err
	}
	info, err := m.Upstream.Info(ctx, in.Model.Upstream, in.Model.Repo, l.Commit)
	if err != nil {
		return res, err
	}
	res.Licence = info.Licence
	if !rules.AllowsLicence(info.Licence) {
		res.Refused = fmt.Sprintf("licence %q is not on the allow-list %v", info.Licence, rules.Licences)
		return res, nil
	}
	res.Commit, res.Files = l.Commit, l.Files
	for _, f := range res.Files {
		res.Bytes += f.Size
	}
	if rules.MaxBytes > 0 && res.Bytes > rules.MaxBytes {
		res.Refused = fmt.Sprintf("the model is %d bytes, over the limit of %d", res.Bytes, rules.MaxBytes)
	}
	return res, nil
}
