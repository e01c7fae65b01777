package testmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
)

// LoRALoad is one load_lora_adapter call the server accepted.
type LoRALoad struct {
	// API is "vllm" (POST /v1/load_lora_adapter) or "sglang" (POST
	// /load_lora_adapter).
	API  string `json:"api"`
	Name string `json:"lora_name"`
	Path string `json:"lora_path"`
}

// adapters are the LoRA adapters loaded at run time, served under their
// names beside Options.Models, as vLLM serves them.
type adapters struct {
	mu    sync.Mutex
	loads []LoRALoad
	// changed is closed, and replaced, at every load.
	changed chan struct{}
}

func (a *adapters) serves(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.ContainsFunc(a.loads, func(l LoRALoad) bool { return l.Name == name })
}

func (a *adapters) names() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, l := range a.loads {
		out = append(out, l.Name)
	}
	return out
}

// handleLoadLoRA answers both APIs' load_lora_adapter: the adapter must be
// a folder on this host (the model server reads it from its own disk), and
// a name loaded before is refused with vLLM's words.
func (s *Server) handleLoadLoRA(api string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(w, r) {
			return
		}
		var req struct {
			Name string `json:"lora_name"`
			Path string `json:"lora_path"`
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil || json.Unmarshal(body, &req) != nil || req.Name == "" || req.Path == "" {
			writeError(w, http.StatusBadRequest, "lora_name and lora_path are required", "BadRequestError", http.StatusBadRequest)
			return
		}
		if fi, err := os.Stat(req.Path); err != nil || !fi.IsDir() {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("No adapter found at %s.", req.Path), "BadRequestError", http.StatusBadRequest)
			return
		}
		a := &s.adapters
		a.mu.Lock()
		if slices.ContainsFunc(a.loads, func(l LoRALoad) bool { return l.Name == req.Name }) || slices.Contains(s.models, req.Name) {
			a.mu.Unlock()
			writeError(w, http.StatusBadRequest, fmt.Sprintf("The lora adapter '%s' has already been loaded.", req.Name), "InvalidUserInput", http.StatusBadRequest)
			return
		}
		a.loads = append(a.loads, LoRALoad{API: api, Name: req.Name, Path: req.Path})
		if a.changed != nil {
			close(a.changed)
		}
		a.changed = make(chan struct{})
		a.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "Success: LoRA adapter '%s' added successfully.", req.Name)
	}
}

// LoRALoads are the load_lora_adapter calls the server accepted, in order.
func (s *Server) LoRALoads() []LoRALoad {
	a := &s.adapters
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.loads)
}

// WaitLoRALoad waits until an adapter named name is loaded, and returns
// that load call; ctx bounds the wait.
func (s *Server) WaitLoRALoad(ctx context.Context, name string) (LoRALoad, error) {
	a := &s.adapters
	for {
		a.mu.Lock()
		i := slices.IndexFunc(a.loads, func(l LoRALoad) bool { return l.Name == name })
		if i >= 0 {
			l := a.loads[i]
			a.mu.Unlock()
			return l, nil
		}
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		changed := a.changed
		a.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return LoRALoad{}, fmt.Errorf("testmodel: no LoRA adapter %s loaded: %w", name, ctx.Err())
		}
	}
}
