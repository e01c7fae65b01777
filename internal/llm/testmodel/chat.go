package testmodel

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
)

// maxRequestBytes bounds a request body; screenshots in base64 make big
// but not this big prompts.
const maxRequestBytes = 32 << 20

// handleChat answers POST /v1/chat/completions: invalid requests are
// rejected first, then a draw decides whether a fault is injected.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	s.stats.requests.Add(1)
	if id := r.Header.Get("X-Request-Id"); id != "" {
		w.Header().Set("X-Request-Id", id) // as vLLM does with --enable-request-id-headers
	}
	if !s.authorized(w, r) {
		s.stats.rejected.Add(1)
		return
	}
	req, ok := s.readRequest(w, r)
	if !ok {
		s.stats.rejected.Add(1)
		return
	}

	if !s.held(w, r) {
		return
	}
	faults, o := s.draw()
	s.count(o)
	if o == injectHang {
		s.pause(w, r, -1)
		return
	}
	if !s.pause(w, r, faults.Latency) {
		return
	}
	switch o {
	case injectBadRequest:
		writeError(w, http.StatusBadRequest, "bad request injected by the test model server", "invalid_request_error", "injected_bad_request")
	case injectRateLimit:
		if v := retryAfterHeader(faults.RetryAfter); v != "" {
			w.Header().Set("Retry-After", v)
		}
		writeError(w, http.StatusTooManyRequests, "rate limit injected by the test model server", "rate_limit_error", "rate_limit_exceeded")
	case injectServerError:
		writeError(w, http.StatusInternalServerError, "server error injected by the test model server", "server_error", nil)
	case injectMalformed:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-malformed","object":"chat.completion","choices":[{"index":0,"message":`)
	default:
		writeJSON(w, http.StatusOK, req.completion())
	}
}

// readRequest reads and validates a request, answering the client itself
// when the request is not valid.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request) (*request, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			writeError(w, http.StatusRequestEntityTooLarge, "request body is too large", "invalid_request_error", nil)
		} else {
			writeError(w, http.StatusBadRequest, "cannot read request body", "invalid_request_error", nil)
		}
		return nil, false
	}
	req, err := parseRequest(body)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error(), "invalid_request_error", nil)
	case req.model == "":
		writeError(w, http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", nil)
	case !slices.Contains(s.models, req.model) && !s.adapters.serves(req.model):
		writeError(w, http.StatusNotFound, fmt.Sprintf("The model `%s` does not exist.", req.model), "invalid_request_error", "model_not_found")
	case len(req.messages) == 0:
		writeError(w, http.StatusBadRequest, "messages must not be empty", "invalid_request_error", nil)
	case req.contextChars() > s.maxContext:
		// Worded as vLLM words it (in characters, which is what this
		// server counts), so clients classify it as the real thing.
		writeError(w, http.StatusBadRequest, fmt.Sprintf(
			"This model's maximum context length is %d characters. However, you requested %d characters in the messages. Please reduce the length of the messages.",
			s.maxContext, req.contextChars()), "BadRequestError", http.StatusBadRequest)
	default:
		return req, true
	}
	return nil, false
}

// count records an outcome in the stats.
func (s *Server) count(o outcome) {
	c := &s.stats
	switch o {
	case injectBadRequest:
		c.badRequests.Add(1)
	case injectRateLimit:
		c.rateLimited.Add(1)
	case injectServerError:
		c.serverErrors.Add(1)
	case injectHang:
		c.hung.Add(1)
	case injectMalformed:
		c.malformed.Add(1)
	default:
		c.ok.Add(1)
	}
}
