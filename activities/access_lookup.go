package activities

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// AllowedByRequest tells whether an access request allowed the model for
// the tenant: a grant exists, the model name is still bound to the
// repository the grant names, and the grant's commit is mirrored from
// that repository at that commit. A grant without a repository and a
// commit allows nothing.
func AllowedByRequest(ctx context.Context, s storage.Store, tenant, model string) (bool, error) {
	if s == nil || storage.CheckID("model", model) != nil || storage.CheckID("tenant", tenant) != nil {
		return false, nil
	}
	g, err := readGrant(ctx, s, tenant, model)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	in := task.MirrorInput{Name: model, Repo: g.Repo, Revision: g.Commit, Upstream: g.Upstream}
	if g.Commit == "" || in.Validate() != nil {
		return false, nil
	}
	switch o, ok, err := readOrigin(ctx, s, model); {
	case err != nil:
		return false, err
	case !ok || !o.sameRepo(originOf(in)):
		return false, nil
	}
	meta, err := StoreSource{Store: s}.Meta(ctx, model, g.Commit)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return meta.Repo == g.Repo && meta.Commit == g.Commit, nil
}

// readGrant reads fleet/access/<tenant>/<model>.json.
func readGrant(ctx context.Context, s storage.Store, tenant, model string) (Grant, error) {
	var g Grant
	r, _, err := s.Get(ctx, accessPrefix+tenant+"/"+model+".json")
	if err != nil {
		return g, err
	}
	defer r.Close()
	err = json.NewDecoder(io.LimitReader(r, 64<<10)).Decode(&g)
	if err == nil && (g.Tenant != tenant || g.Model != model) {
		return Grant{}, task.Errorf(task.InvalidInput, "the grant of %s for %s names %s for %s", model, tenant, g.Model, g.Tenant)
	}
	return g, err
}
