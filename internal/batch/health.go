package batch

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm"
)

// health tells an outage of the model server from a bad item. Requests
// that fail without an answer (connection refused, reset, timeout) or with
// a 5xx count in a row across all workers; at OutageAfter the server is
// down: the engine stops sending, and a single request, the probe, tries
// again with a growing wait until one gets an answer. An item's own
// failures (a 400, a context length) and any answer reset the count.
type health struct {
	after      int
	base, most time.Duration

	mu      sync.Mutex
	fails   int
	down    time.Time     // zero while the server answers
	probing bool          // a request holds the probe
	probes  int           // failed probes in this outage, for the backoff
	up      chan struct{} // closed when the outage ends
}

func newHealth(cfg Config) *health {
	return &health{after: cfg.OutageAfter, base: cfg.ProbeBase, most: cfg.ProbeMax}
}

// serverWide reports whether an error says the server, not the item, is
// failing.
func serverWide(le *llm.Error) bool {
	return le.StatusCode == 0 || le.StatusCode >= http.StatusInternalServerError
}

// acquire waits until a request may go out: at once while the server is
// up; during an outage, only as the probe. It reports whether this
// request is the probe.
func (h *health) acquire(ctx context.Context) (probe bool, err error) {
	for {
		h.mu.Lock()
		if h.down.IsZero() {
			h.mu.Unlock()
			return false, nil
		}
		if !h.probing {
			h.probing = true
			h.mu.Unlock()
			return true, nil
		}
		up := h.up
		h.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// ok records an answer from the server. Only the probe ends an outage:
// an answer to a request sent before the outage began says nothing of
// the server now.
func (h *health) ok(probe bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fails = 0
	if !probe {
		return
	}
	h.probing = false
	if !h.down.IsZero() {
		h.down, h.probes = time.Time{}, 0
		close(h.up)
	}
}

// failed records a server-wide failure and reports whether the server is
// now held to be down (then the failure does not count against the item).
func (h *health) failed(probe bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fails++
	if probe {
		h.probes++
	}
	if h.fails >= h.after {
		h.tripLocked()
	}
	return !h.down.IsZero()
}

// trip holds the server to be down.
func (h *health) trip() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tripLocked()
}

func (h *health) tripLocked() {
	if h.down.IsZero() {
		h.down = time.Now()
		h.up = make(chan struct{})
	}
}

// release gives up the probe, so another request may take it.
func (h *health) release(probe bool) {
	if !probe {
		return
	}
	h.mu.Lock()
	h.probing = false
	h.mu.Unlock()
}

// probeWait is how long the probe waits before it tries again.
func (h *health) probeWait() time.Duration {
	h.mu.Lock()
	n := h.probes
	h.mu.Unlock()
	return max(h.base, llm.Backoff(n, h.base, h.most, 0))
}

// since is when the outage began; zero while the server answers.
func (h *health) since() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.down
}
