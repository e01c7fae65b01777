package testmodel

import "sync/atomic"

// Stats counts the chat-completion requests and how each was answered.
// Every request counted in Requests is counted once more in exactly one of
// the others when it has been decided (a request whose client leaves during
// the latency is still counted under what it would have been).
type Stats struct {
	Requests     int64
	OK           int64
	RateLimited  int64
	ServerErrors int64
	BadRequests  int64 // injected 400s only; see Rejected
	Hung         int64
	Malformed    int64
	// Rejected are genuinely bad requests: not JSON, unknown model, no
	// messages, over MaxContextChars, wrong API key.
	Rejected int64
}

type counters struct {
	requests, ok, rateLimited, serverErrors, badRequests, hung, malformed, rejected atomic.Int64
}

// Stats returns the counts so far. Each count is read atomically, but not
// all together, so under load they may be a moment apart.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests:     c.requests.Load(),
		OK:           c.ok.Load(),
		RateLimited:  c.rateLimited.Load(),
		ServerErrors: c.serverErrors.Load(),
		BadRequests:  c.badRequests.Load(),
		Hung:         c.hung.Load(),
		Malformed:    c.malformed.Load(),
		Rejected:     c.rejected.Load(),
	}
}
