package testmodel

import (
	"strconv"
	"time"
)

// Faults are what can go wrong with an answer, as fractions of the valid
// chat-completion requests (invalid ones are always rejected). One draw per
// request picks an outcome, the fractions taken in the order BadRequest,
// RateLimit, ServerError, Hang, Malformed; the rest are answered properly.
// If the fractions add up to more than 1, the later ones get what is left.
type Faults struct {
	// Latency is added to every answer to a valid request, faults included.
	// Invalid requests are answered at once, as real servers do.
	Latency time.Duration
	// RateLimit is the fraction answered 429 with a Retry-After header.
	RateLimit float64
	// RetryAfter is the Retry-After of the 429s, in whole seconds rounded
	// up: 0 sends "0", 1ns..1s send "1". Negative sends no header.
	RetryAfter time.Duration
	// ServerError is the fraction answered 500.
	ServerError float64
	// BadRequest is the fraction answered 400, which clients must not retry.
	BadRequest float64
	// Hang is the fraction never answered: they wait until the client gives
	// up or the server closes.
	Hang float64
	// Malformed is the fraction answered 200 with a body that is not valid
	// JSON (a completion cut short).
	Malformed float64
}

// outcome is how one request is answered.
type outcome int

const (
	answerOK outcome = iota
	injectBadRequest
	injectRateLimit
	injectServerError
	injectHang
	injectMalformed
)

// pick maps a uniform draw u in [0, 1) to an outcome.
func (f Faults) pick(u float64) outcome {
	for _, c := range []struct {
		share float64
		o     outcome
	}{
		{f.BadRequest, injectBadRequest},
		{f.RateLimit, injectRateLimit},
		{f.ServerError, injectServerError},
		{f.Hang, injectHang},
		{f.Malformed, injectMalformed},
	} {
		share := max(c.share, 0)
		if u < share {
			return c.o
		}
		u -= share
	}
	return answerOK
}

// draw decides the next request's outcome. Every valid request draws, even
// without faults, so that an outcome depends only on the seed and the
// request's place in the sequence.
func (s *Server) draw() (Faults, outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults, s.faults.pick(s.rng.Float64())
}

// retryAfterHeader is the Retry-After value for d, "" for none.
func retryAfterHeader(d time.Duration) string {
	if d < 0 {
		return ""
	}
	secs := (d + time.Second - 1) / time.Second
	return strconv.FormatInt(int64(secs), 10)
}
