package activities

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// accessPrefix keeps the models an access request allowed, per tenant:
// fleet/access/<tenant>/<model>.json. Authorize reads it beside the
// tenant's own list in the policy (see AllowedByRequest).
const accessPrefix = "fleet/access/"

// Grant is an approved access request: it binds the tenant and the model
// name to the upstream repository and the commit that were screened,
// audited and approved, never to the name alone.
type Grant struct {
	Tenant   string `json:"tenant"`
	Model    string `json:"model"`
	Upstream string `json:"upstream"`
	Repo     string `json:"repo"`
	// Commit is the mirrored revision: models/<model>/<commit>/.
	Commit string `json:"commit"`
	// Revision is what the requester named (a branch, say).
	Revision string `json:"revision"`
	Request  string `json:"request"`
	Approver string `json:"approver"`
}

// AllowModelInput records an approved access request.
type AllowModelInput struct {
	Request  task.AccessRequest `json:"request"`
	Approver string             `json:"approver"`
	Mirror   task.MirrorResult  `json:"mirror"`
	// Commit is what screening resolved and the mirror copied; empty in
	// histories recorded before it did, which grant nothing usable.
	Commit string `json:"commit,omitempty"`
}

// AllowModel makes the mirrored model usable by the tenant.
func (m *Mirror) AllowModel(ctx context.Context, in AllowModelInput) (task.ObjectRef, error) {
	g := Grant{
		Tenant: in.Request.Tenant, Model: in.Request.Model.Name, Upstream: orHF(in.Request.Model.Upstream), Repo: in.Request.Model.Repo,
		Commit: in.Commit, Revision: in.Request.Model.Revision, Request: in.Request.ID, Approver: in.Approver,
	}
	b, err := json.Marshal(g)
	if err != nil {
		return task.ObjectRef{}, err
	}
	b = append(b, '\n')
	key := accessPrefix + g.Tenant + "/" + g.Model + ".json"
	info, err := m.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	if err != nil {
		return task.ObjectRef{}, asApplicationError(err)
	}
	return task.ObjectRef{Bucket: m.Store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256}, nil
}
