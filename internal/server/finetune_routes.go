package server

import (
	"context"
	"net/http"
	"slices"
	"strconv"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// The native routes of fine-tuning tasks under /api/v1/fine-tunes: the
// task routes narrowed to the kind, and what only fine-tuning has (its
// events and checkpoints). Each checks the caller's role in the task's
// tenant as the task routes do.
func (s *Server) fineTuneRoutes(mux *http.ServeMux) {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request, principal) error) {
		mux.HandleFunc(pattern, s.nativeHandler(f))
	}
	base := APIPrefix + "/fine-tunes"
	h("POST "+base, s.createFineTune)
	h("GET "+base, s.listFineTunes)
	h("GET "+base+"/{id}", s.fineTuneOnly(authz.View, s.status))
	h("GET "+base+"/{id}/events", s.fineTuneEvents)
	h("GET "+base+"/{id}/checkpoints", s.fineTuneCheckpoints)
	for _, a := range []authz.Action{authz.Cancel, authz.Pause, authz.Resume} {
		h("POST "+base+"/{id}/"+string(a), s.fineTuneOnly(a, s.decide(a)))
	}
}

// fineTuneTask authorizes action a on task id and checks it is a
// fine-tuning task; any other task is not found here.
func (s *Server) fineTuneTask(ctx context.Context, p principal, id string, a authz.Action) (taskInfo, []authz.Role, error) {
	ti, roles, err := s.authorize(ctx, p, id, a)
	if err == nil && ti.Kind != string(task.KindFineTune) {
		err = task.Errorf(task.NotFound, "task %s is not a fine-tuning task", id)
	}
	return ti, roles, err
}

// fineTuneOnly is f for fine-tuning tasks only.
func (s *Server) fineTuneOnly(a authz.Action, f func(http.ResponseWriter, *http.Request, principal) error) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		if _, _, err := s.fineTuneTask(r.Context(), p, taskID(r), a); err != nil {
			return err
		}
		return f(w, r, p)
	}
}

func (s *Server) listFineTunes(w http.ResponseWriter, r *http.Request, p principal) error {
	q := r.URL.Query()
	q.Set("kind", string(task.KindFineTune))
	r.URL.RawQuery = q.Encode()
	return s.list(w, r, p)
}

// FineTuneEvents is the answer of GET /api/v1/fine-tunes/{id}/events:
// the events after the one named by ?after=, oldest first, at most
// ?limit= (default 100, at most 1,000).
type FineTuneEvents struct {
	Events  []taskclient.FineTuneEvent `json:"events"`
	HasMore bool                       `json:"has_more"`
}

func (s *Server) fineTuneEvents(w http.ResponseWriter, r *http.Request, p principal) error {
	evs, err := s.fineTuneEventList(r.Context(), p, taskID(r))
	if err != nil {
		return err
	}
	limit, err := pageLimit(r, 100, 1000)
	if err != nil {
		return err
	}
	if after := r.URL.Query().Get("after"); after != "" {
		i := slices.IndexFunc(evs, func(e taskclient.FineTuneEvent) bool { return e.ID == after })
		if i < 0 {
			return paramError("after", "no event %s to list after", after)
		}
		evs = evs[i+1:]
	}
	out := FineTuneEvents{Events: evs}
	if len(evs) > limit {
		out.Events, out.HasMore = evs[:limit], true
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// fineTuneEventList is every event of fine-tuning task id, oldest first.
func (s *Server) fineTuneEventList(ctx context.Context, p principal, id string) ([]taskclient.FineTuneEvent, error) {
	if _, _, err := s.fineTuneTask(ctx, p, id, authz.View); err != nil {
		return nil, err
	}
	st, err := s.Tasks.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.Tasks.FineTuneEvents(ctx, st)
}

// FineTuneCheckpoints is the answer of GET
// /api/v1/fine-tunes/{id}/checkpoints, oldest first.
type FineTuneCheckpoints struct {
	Checkpoints []taskclient.FineTuneCheckpoint `json:"checkpoints"`
}

func (s *Server) fineTuneCheckpoints(w http.ResponseWriter, r *http.Request, p principal) error {
	id := taskID(r)
	ti, _, err := s.fineTuneTask(r.Context(), p, id, authz.View)
	if err != nil {
		return err
	}
	cps, err := s.Tasks.FineTuneCheckpoints(r.Context(), ti.Tenant, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, FineTuneCheckpoints{Checkpoints: cps})
	return nil
}

// pageLimit is ?limit=, def when absent, from 1 to most.
func pageLimit(r *http.Request, def, most int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, paramError("limit", "limit must be a number from 1 to %d", most)
	}
	return n, nil
}
