package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// CheckServed is a NoNode error unless a live node serves model now, by
// the same node registry and liveness rule dispatch uses. Submit asks it
// so that a model the policy allows but no node serves is refused at
// once, not by dispatch minutes later; how liveness is told stays here.
func CheckServed(ctx context.Context, store storage.Store, tc client.Client, model string) error {
	nodes, err := (&Activities{Store: store, Temporal: tc}).LiveNodes(ctx)
	if err != nil {
		return err
	}
	if _, err := pick(nodes, model, nil, time.Now()); err != nil {
		return task.Errorf(task.NoNode, "no live node serves model %s; start a worker that serves it (AUTOGLM_MODELS) or choose another with --model", model)
	}
	return nil
}
