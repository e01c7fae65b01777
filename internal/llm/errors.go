package llm

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is a stable name for a kind of failure. It is used as the Temporal
// application error type, so it must never change once released.
type Kind string

// The kinds of failure of a call to a model server.
const (
	// RateLimited is a 429: the upstream wants fewer requests; see RetryAfter.
	RateLimited Kind = "RateLimited"
	// UpstreamUnavailable is a 5xx or a connection that could not be made or
	// broke off.
	UpstreamUnavailable Kind = "UpstreamUnavailable"
	// Timeout is the per-request timeout (Config.Timeout) running out, not
	// the caller's context: that is returned as the context's own error.
	Timeout Kind = "Timeout"
	// InvalidRequest is a request the upstream refuses and will refuse again
	// (400, 404, 422 and other 4xx), or one the client refuses before sending.
	InvalidRequest Kind = "InvalidRequest"
	// Unauthorized is a 401 or 403: the API key is missing, wrong or not
	// allowed to use the model.
	Unauthorized Kind = "Unauthorized"
	// ContextLengthExceeded is a 400 because the prompt (plus max_tokens) is
	// longer than the model's context window. Retrying cannot help; a batch
	// engine may want to report it apart from other bad requests.
	ContextLengthExceeded Kind = "ContextLengthExceeded"
	// MalformedResponse is a 2xx whose body is not a chat completion (or is
	// larger than the client accepts). Proxies and overloaded servers produce
	// these transiently, so it is retryable.
	MalformedResponse Kind = "MalformedResponse"
)

// Error is a failed call to a model server. Callers look at Kind (or
// Retryable) to decide what to do, and may write Body to an errors file.
// Neither Error() nor any field ever holds the API key.
type Error struct {
	Kind Kind
	// StatusCode is the upstream's HTTP status, or 0 when there was no
	// response (connection refused, timeout, refused before sending).
	StatusCode int
	// RetryAfter is how long the upstream asked us to wait (Retry-After or
	// retry-after-ms), 0 when it did not say.
	RetryAfter time.Duration
	// Message is a short, single-line description, from the upstream's
	// error.message when it sent one.
	Message string
	// RequestID identifies the request in the upstream's logs: its
	// x-request-id header, or the one the client generated and sent.
	RequestID string
	// Body is the start of the upstream's response body (at most 64 KiB) for
	// non-2xx and malformed answers. It is often JSON but need not be (a
	// proxy's HTML page, or JSON cut short), so it is bytes, not RawMessage.
	Body []byte

	err error // the transport error behind a response-less failure
}

// Error describes the failure in one line, e.g.
// "llm: RateLimited: HTTP 429: Rate limit reached (retry after 2s)".
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "llm: %s", e.Kind)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.StatusCode)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Unwrap returns the transport error behind a failure without a response,
// so errors.Is(err, syscall.ECONNREFUSED) and the like work.
func (e *Error) Unwrap() error { return e.err }

// Retryable reports whether the same request may succeed later. Rate limits,
// unavailable upstreams, timeouts and malformed answers are transient; bad
// requests, bad keys and over-long prompts will fail the same way again.
func (e *Error) Retryable() bool {
	switch e.Kind {
	case RateLimited, UpstreamUnavailable, Timeout, MalformedResponse:
		return true
	}
	return false
}

// AsError returns the first *Error in err's chain. It is false for the
// caller's own context errors (context.Canceled, context.DeadlineExceeded),
// which are returned as they are.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
