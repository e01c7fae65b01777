package llm

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is how long to wait before retry number attempt (0 for the first
// retry) of a failed call: exponential backoff with full jitter, a uniform
// draw from [0, min(maxDelay, base·2^attempt)), so that many items failing
// together do not retry together. retryAfter, the upstream's own request
// (Error.RetryAfter), is a floor.
//
// maxDelay caps everything, retryAfter included: an upstream asking for
// longer than the operator allows is retried at maxDelay and, at worst,
// answers 429 again. maxDelay <= 0 means no cap. base <= 0 means no
// backoff of our own, only retryAfter.
//
// Backoff draws random numbers, so in Temporal workflow code it must be
// called inside workflow.SideEffect (or in an activity), never directly.
func Backoff(attempt int, base, maxDelay, retryAfter time.Duration) time.Duration {
	if maxDelay <= 0 {
		maxDelay = math.MaxInt64
	}
	var d time.Duration
	if base > 0 {
		ceiling := min(base, maxDelay)
		for i := 0; i < attempt && ceiling < maxDelay; i++ {
			if ceiling > maxDelay/2 { // doubling would pass maxDelay, or overflow
				ceiling = maxDelay
				break
			}
			ceiling *= 2
		}
		d = rand.N(ceiling)
	}
	return min(max(d, retryAfter), maxDelay)
}
