package worker

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/model"
)

// serveFineTuned is how this node serves its base models' fine-tuned
// models (AUTOGLM_LORA_ADAPTERS), or nil when it serves none. Its record
// lists those it has loaded beside its base models.
func serveFineTuned(cfg config.Config, acts *activities.Activities, cache *model.Cache) *activities.ServedFineTuned {
	if cfg.LoRAAdapters == llm.LoRANone {
		return nil
	}
	lc := llm.New(cfg.LLM)
	s := &activities.ServedFineTuned{
		Store: acts.Store, Cache: cache, Bases: acts.Models,
		Load: func(ctx context.Context, name, path string) error {
			return lc.LoadLoRAAdapter(ctx, cfg.LoRAAdapters, name, path)
		},
	}
	acts.FineTuned = s.Loaded
	return s
}

// syncFineTuned loads the fine-tuned models published since the last
// call, polls their model queues and announces them in the node record, so that
// dispatch sends their pieces here. It runs on the announce clock: a model is
// served within one tick of its job's end.
func syncFineTuned(ctx context.Context, pollers *modelPollers, acts *activities.Activities, log *logrus.Logger) {
	if pollers.served == nil {
		return
	}
	added, err := pollers.served.Sync(ctx)
	if err != nil && ctx.Err() == nil {
		log.WithError(err).Warn("serving fine-tuned models")
	}
	if len(added) == 0 {
		return
	}
	if err := pollers.refresh(); err != nil {
		log.WithError(err).Error("polling the queues of fine-tuned models")
		return
	}
	log.WithField("models", added).Info("serving fine-tuned models: fetched, verified and loaded into the model server")
	if err := acts.Announce(ctx); err != nil && ctx.Err() == nil {
		log.WithError(err).Warn("announcing node")
	}
}
