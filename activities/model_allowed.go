package activities

import (
	"context"
	"errors"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// ModelAllowed is nil when the tenant may use the model: the policy lists
// it, an approved access request granted it, or it is one of the
// tenant's own fine-tuned models. Submit (through the server or the
// break-glass path) and Authorize ask it alike, so a caller that starts
// a workflow on Temporal directly meets the same refusal.
func ModelAllowed(ctx context.Context, s storage.Store, t authz.Tenant, tenant, model string) error {
	if task.IsFineTuned(model) {
		return fineTunedAllowed(ctx, s, t, tenant, model)
	}
	err := t.AllowsModel(tenant, model)
	if err == nil {
		return nil
	}
	if ok, serr := AllowedByRequest(ctx, s, tenant, model); ok && serr == nil {
		return nil
	} else if serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// fineTunedAllowed allows a fine-tuned model to the tenant it was trained
// for, and to no other, as long as that tenant may still use its base
// model and the model has been published. Ownership is read from the name
// first, so another tenant learns nothing of whether the model exists.
func fineTunedAllowed(ctx context.Context, s storage.Store, t authz.Tenant, tenant, model string) error {
	ft, err := task.ParseFineTunedName(model)
	if err != nil {
		return err
	}
	if ft.Tenant != tenant {
		return task.Errorf(task.ModelNotAllowed, "model %s is a fine-tuned model of tenant %s: only that tenant may use it, not %s", model, ft.Tenant, tenant)
	}
	if err := ModelAllowed(ctx, s, t, tenant, ft.Base); err != nil {
		return task.Errorf(task.ModelNotAllowed, "tenant %s may not use %s, the base model of %s", tenant, ft.Base, model)
	}
	if s == nil {
		return nil
	}
	_, err = s.Stat(ctx, task.FineTunedPrefix(tenant, model)+task.CacheMetaName)
	if errors.Is(err, storage.ErrNotFound) {
		return task.Errorf(task.ModelNotAllowed, "tenant %s has no fine-tuned model %s: fine-tuning job %s has not succeeded", tenant, model, ft.TaskID)
	}
	return err
}
