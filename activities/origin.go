package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// originPrefix keeps which upstream repository each model name is
// mirrored from: fleet/origins/<name>.json. Every tenant's requests and
// every node's cache share models/<name>/, so the first mirror of a name
// binds it to its repository and no later one may fill it from another.
const originPrefix = "fleet/origins/"

// Origin is where a model name's files come from.
type Origin struct {
	Name     string `json:"name"`
	Upstream string `json:"upstream"`
	Repo     string `json:"repo"`
}

func originOf(in task.MirrorInput) Origin {
	return Origin{Name: in.Name, Upstream: orHF(in.Upstream), Repo: in.Repo}
}

// sameRepo tells whether two origins name the same repository.
func (o Origin) sameRepo(p Origin) bool { return o.Upstream == p.Upstream && o.Repo == p.Repo }

// readOrigin is the origin a name is bound to; ok is false for a name
// never mirrored. A name mirrored before origins were recorded is bound
// to the repository its first cache.meta names.
func readOrigin(ctx context.Context, s storage.Store, name string) (o Origin, ok bool, err error) {
	r, _, err := s.Get(ctx, originPrefix+name+".json")
	if err == nil {
		defer r.Close()
		err = json.NewDecoder(io.LimitReader(r, 64<<10)).Decode(&o)
		return o, err == nil, err
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return o, false, err
	}
	objs, err := s.List(ctx, "models/"+name+"/")
	if err != nil {
		return o, false, err
	}
	for _, obj := range objs {
		if path.Base(obj.Key) != task.CacheMetaName {
			continue
		}
		meta, err := StoreSource{Store: s}.read(ctx, obj.Key)
		if err != nil {
			return o, false, err
		}
		return Origin{Name: name, Upstream: task.UpstreamHF, Repo: meta.Repo}, true, nil
	}
	return o, false, nil
}

// checkOrigin refuses a mirror of in.Name from another repository than
// the one the name is bound to.
func checkOrigin(ctx context.Context, s storage.Store, in task.MirrorInput) error {
	o, ok, err := readOrigin(ctx, s, in.Name)
	if err != nil || !ok {
		return err
	}
	return refuseOther(o, originOf(in))
}

func refuseOther(have, want Origin) error {
	if have.sameRepo(want) {
		return nil
	}
	return task.Errorf(task.ModelNotAllowed, "model name %s is mirrored from %s (%s); it cannot be filled from %s (%s): request another name", have.Name, have.Repo, have.Upstream, want.Repo, want.Upstream)
}

// claimOrigin binds in.Name to its repository if no mirror did yet, and
// refuses it if another repository holds the name. The record is created
// only if absent, so of two mirrors racing for a new name one wins.
func claimOrigin(ctx context.Context, s storage.Store, in task.MirrorInput) error {
	have, ok, err := readOrigin(ctx, s, in.Name)
	if err != nil {
		return err
	}
	want := originOf(in)
	if ok {
		return refuseOther(have, want)
	}
	b, err := json.Marshal(want)
	if err != nil {
		return err
	}
	_, err = s.Create(ctx, originPrefix+in.Name+".json", bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	if errors.Is(err, storage.ErrConflict) {
		// Another mirror claimed it first: it decides.
		return checkOrigin(ctx, s, in)
	}
	if err != nil {
		return fmt.Errorf("mirror: recording the origin of %s: %w", in.Name, err)
	}
	return nil
}
