package activities

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// fineTunedIndexPrefix lists the published fine-tuned models by base
// model, fleet/fine-tuned/<base>/<fine-tuned name>.json, so a node finds
// those of the models it serves with one short listing per base instead
// of listing every model's files.
const fineTunedIndexPrefix = "fleet/fine-tuned/"

// FineTunedRecord is a published fine-tuned model's entry in the index.
type FineTunedRecord struct {
	Name   string `json:"name"`
	Base   string `json:"base"`
	Tenant string `json:"tenant"`
	TaskID string `json:"task_id"`
	// Manifest is the model's manifest (task.CacheMetaName) in the bucket.
	Manifest task.ObjectRef `json:"manifest"`
}

// indexFineTuned writes the model's entry in the index, once its
// manifest is written: a node that finds the entry finds a whole model.
func (a *Activities) indexFineTuned(ctx context.Context, name string, manifest task.ObjectRef) error {
	ft, err := task.ParseFineTunedName(name)
	if err != nil {
		return err
	}
	rec := FineTunedRecord{Name: name, Base: ft.Base, Tenant: ft.Tenant, TaskID: ft.TaskID, Manifest: manifest}
	_, err = a.putJSON(ctx, fineTunedIndexPrefix+ft.Base+"/"+name+".json", storage.Data, rec)
	return err
}

// ServedFineTuned is how a node serves its base models' fine-tuned
// models: it finds them in the index, fetches each into its cache (the
// path ensure-model takes, every file's sha256 checked against the
// model's manifest), loads it into its model server (Load: vLLM's or
// SGLang's load_lora_adapter) and then lists it among the models it
// serves, so dispatch sends the model's batches here and only to nodes
// like it.
type ServedFineTuned struct {
	Store storage.Store
	Cache *model.Cache
	// Bases are the models the node serves.
	Bases []string
	// Load loads the model at path, a folder of the node's cache, into
	// the model server under name.
	Load func(ctx context.Context, name, path string) error

	mu     sync.Mutex
	loaded []string
}

// Loaded are the fine-tuned models this node has loaded, in the order it
// loaded them.
func (s *ServedFineTuned) Loaded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.loaded)
}

// Sync loads the fine-tuned models of the node's base models it has not
// loaded yet, and returns those it loaded now. A model that fails (its
// files do not match their sha256, the model server refuses it) is not
// served, is named in the error, and is tried again at the next Sync.
func (s *ServedFineTuned) Sync(ctx context.Context) ([]string, error) {
	var added []string
	var errs []error
	for _, base := range s.Bases {
		if base == "*" || task.IsFineTuned(base) {
			continue
		}
		infos, err := s.Store.List(ctx, fineTunedIndexPrefix+base+"/")
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the fine-tuned models of %s: %w", base, err))
			continue
		}
		for _, in := range infos {
			name, ok := strings.CutSuffix(path.Base(in.Key), ".json")
			if !ok || slices.Contains(s.Loaded(), name) {
				continue
			}
			if err := s.load(ctx, base, name); err != nil {
				errs = append(errs, fmt.Errorf("fine-tuned model %s: %w", name, err))
				continue
			}
			s.mu.Lock()
			s.loaded = append(s.loaded, name)
			s.mu.Unlock()
			added = append(added, name)
		}
	}
	return added, errors.Join(errs...)
}

func (s *ServedFineTuned) load(ctx context.Context, base, name string) error {
	ft, err := task.ParseFineTunedName(name)
	if err != nil {
		return err
	}
	if ft.Base != base {
		return task.Errorf(task.InvalidInput, "listed under base %s, but its base is %s", base, ft.Base)
	}
	got, err := s.Cache.Ensure(ctx, ft.Tenant, name, nil)
	if err != nil {
		return fmt.Errorf("fetching it into the cache: %w", err)
	}
	// The model server reads the folder itself: a path relative to this
	// process means nothing to it.
	dir, err := filepath.Abs(got.Dir)
	if err != nil {
		return err
	}
	if err := s.Load(ctx, name, dir); err != nil {
		return fmt.Errorf("loading it into the model server: %w", err)
	}
	return nil
}
