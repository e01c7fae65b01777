// Package testmodel is the test model server: a stand-in for vLLM that
// speaks the OpenAI Chat Completions API, answers deterministically, and
// injects faults (latency, 429s, 500s, 400s, hangs, malformed bodies) at set
// rates. Tests and the demo use it to exercise the batch engine, its
// retries and its error reporting without a GPU.
//
// Endpoints: POST /v1/chat/completions, GET /v1/models, GET /healthz, and
// the LoRA adapter loading of vLLM (POST /v1/load_lora_adapter) and
// SGLang (POST /load_lora_adapter): an adapter loaded is served under its
// name, as vLLM serves it.
package testmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// DefaultModel is the model served when Options.Models is empty.
const DefaultModel = "glm-4-test"

// DefaultMaxContextChars is the default Options.MaxContextChars.
const DefaultMaxContextChars = 32768

// Options configure a test model server. The zero value serves DefaultModel
// on a free port of 127.0.0.1 without faults.
type Options struct {
	// Addr is where Start listens; default "127.0.0.1:0" (a free port).
	Addr string
	// Models are the model ids served; others get 404 model_not_found.
	Models []string
	// Faults are the initial faults; see SetFaults.
	Faults Faults
	// Seed makes the fault draws repeatable: the same seed and the same
	// sequence of requests give the same outcomes.
	Seed uint64
	// MaxContextChars is the "context window": a request whose messages
	// hold more characters of text is answered 400 the way vLLM words it.
	// Default DefaultMaxContextChars.
	MaxContextChars int
	// APIKey, when set, is required as "Authorization: Bearer <APIKey>" on
	// /v1/ endpoints; other requests get 401.
	APIKey string
}

// Server is the test model server. Its methods are safe for concurrent use.
type Server struct {
	addr       string
	models     []string
	maxContext int
	apiKey     string
	handler    http.Handler
	stats      counters
	adapters   adapters

	mu     sync.Mutex // guards rng, faults and gate: draws must happen one at a time to be repeatable
	rng    *rand.Rand
	faults Faults
	// gate, while set, holds every valid request but the next pass
	// until it is closed (Hold, HoldAfter).
	gate chan struct{}
	pass int

	// closing is cancelled by Close; requests waiting out a latency or a
	// hang watch it, so that Close never waits for them.
	closing context.Context
	cancel  context.CancelFunc

	lifeMu sync.Mutex // guards srv, url and served
	srv    *http.Server
	url    string
	served chan struct{} // closed when Serve has returned
}

// New makes a test model server. Its Handler works at once; Start makes it
// listen.
func New(opts Options) *Server {
	s := &Server{
		addr:       opts.Addr,
		models:     opts.Models,
		maxContext: opts.MaxContextChars,
		apiKey:     opts.APIKey,
		rng:        rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		faults:     opts.Faults,
	}
	if s.addr == "" {
		s.addr = "127.0.0.1:0"
	}
	if len(s.models) == 0 {
		s.models = []string{DefaultModel}
	}
	if s.maxContext <= 0 {
		s.maxContext = DefaultMaxContextChars
	}
	s.closing, s.cancel = context.WithCancel(context.Background())

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.handleChat)
	mux.HandleFunc("GET /v1/models", s.handleModels)
	mux.HandleFunc("POST /v1/load_lora_adapter", s.handleLoadLoRA("vllm"))
	mux.HandleFunc("POST /load_lora_adapter", s.handleLoadLoRA("sglang"))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	s.handler = mux
	return s
}

// Handler serves the endpoints, so the server can be mounted elsewhere
// (httptest, a demo binary). Close still releases its waiting requests.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on Options.Addr and serves in the background.
func (s *Server) Start() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.srv != nil {
		return errors.New("testmodel: already started")
	}
	if s.closing.Err() != nil {
		return errors.New("testmodel: closed")
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("testmodel: listen on %s: %w", s.addr, err)
	}
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.url = "http://" + ln.Addr().String() + "/v1"
	s.served = make(chan struct{})
	go func(srv *http.Server, served chan<- struct{}) {
		defer close(served)
		// Serve only returns ErrServerClosed after Close, or an Accept
		// failure nobody is left to hear of; either way the server is done.
		_ = srv.Serve(ln)
	}(s.srv, s.served)
	return nil
}

// URL is the base URL of the API, ending in /v1 (what llm.Config.BaseURL
// wants), or "" before Start.
func (s *Server) URL() string {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	return s.url
}

// Close stops the server. Requests that hang or wait out a latency are
// released at once rather than waited for; their clients see the
// connection close or a 503. Close may be called more than once.
func (s *Server) Close() error {
	s.cancel()
	s.lifeMu.Lock()
	srv, served := s.srv, s.served
	s.lifeMu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	<-served
	if err != nil {
		return fmt.Errorf("testmodel: close: %w", err)
	}
	return nil
}

// SetFaults replaces the faults for the requests that follow; requests
// already decided keep theirs.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// Hold makes valid requests wait, before their latency and outcome, until
// release is called: a test decides when a request is answered instead of
// guessing how long one should take. release may be called more than once.
func (s *Server) Hold() (release func()) { return s.HoldAfter(0) }

// HoldAfter is Hold for the valid requests after the next n: a test that
// needs a batch stopped part way gets exactly n answers first.
func (s *Server) HoldAfter(n int) (release func()) {
	gate := make(chan struct{})
	s.mu.Lock()
	s.gate, s.pass = gate, n
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.gate == gate {
				s.gate = nil
			}
			s.mu.Unlock()
			close(gate)
		})
	}
}

// held waits while the server holds requests, and reports whether the
// answer should still be written (see pause).
func (s *Server) held(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	gate := s.gate
	if gate != nil && s.pass > 0 {
		s.pass--
		gate = nil
	}
	s.mu.Unlock()
	if gate == nil {
		return true
	}
	return waitFor(s, w, r, gate)
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list"}
	for _, id := range append(slices.Clone(s.models), s.adapters.names()...) {
		list.Data = append(list.Data, model{ID: id, Object: "model", Created: created, OwnedBy: "testmodel"})
	}
	writeJSON(w, http.StatusOK, list)
}

// authorized answers 401 and reports false when an API key is required and
// the request does not carry it.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.apiKey == "" || r.Header.Get("Authorization") == "Bearer "+s.apiKey {
		return true
	}
	writeError(w, http.StatusUnauthorized, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
	return false
}

// pause waits d, or forever when d < 0, and reports whether the answer
// should still be written: not when the client has gone, and not (beyond a
// 503) when the server is closing.
func (s *Server) pause(w http.ResponseWriter, r *http.Request, d time.Duration) bool {
	if d == 0 {
		return true
	}
	var elapsed <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		elapsed = t.C
	}
	return waitFor(s, w, r, elapsed)
}

// waitFor waits until ready yields (never, when it is nil), and reports
// whether the answer should still be written: not when the client has
// gone, and not (beyond a 503) when the server is closing.
func waitFor[T any](s *Server, w http.ResponseWriter, r *http.Request, ready <-chan T) bool {
	select {
	case <-ready:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing.Done():
		// Without an answer net/http would send an empty 200, which a
		// client would take for a malformed completion.
		writeError(w, http.StatusServiceUnavailable, "the test model server is closing", "server_error", nil)
		return false
	}
}

// writeJSON answers v as JSON. v is always one of our own structs, so
// encoding cannot fail.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// apiError is the OpenAI error shape. Code is a string for OpenAI and an
// int (the status) for vLLM, so it is left to the caller.
type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    any     `json:"code"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, message, typ string, code any) {
	var e apiError
	e.Error.Message, e.Error.Type, e.Error.Code = message, typ, code
	writeJSON(w, status, e)
}
