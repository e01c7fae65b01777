package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// maxMessageBytes bounds Error.Message: enough for any model server's
	// explanation, short enough for a log line.
	maxMessageBytes = 300
	// maxRetryAfter caps what we believe of a Retry-After header, so a
	// broken upstream cannot park an item for days.
	maxRetryAfter = time.Hour
)

// statusError classifies a non-2xx answer. body is the start of the
// upstream's body, already read.
func (c *Client) statusError(status int, h http.Header, body []byte, requestID string) *Error {
	body = c.redact(body)
	e := &Error{
		StatusCode: status,
		RetryAfter: parseRetryAfter(h, time.Now()),
		Message:    upstreamMessage(body),
		RequestID:  requestID,
		Body:       body,
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind = RateLimited
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = Unauthorized
	case status == http.StatusRequestTimeout:
		e.Kind = Timeout
	case (status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge ||
		status == http.StatusUnprocessableEntity) && mentionsContextLength(body):
		e.Kind = ContextLengthExceeded
	case status >= 400 && status < 500:
		e.Kind = InvalidRequest
	default:
		// 5xx, and the odd 1xx/3xx a misbehaving proxy lets through: the
		// upstream is not answering properly, which may pass.
		e.Kind = UpstreamUnavailable
	}
	return e
}

// transportError classifies a failure without a (complete) response to op
// (e.g. "POST /chat/completions"). The caller's context comes first: if the
// caller stopped us, its error is returned, so "stopped by us" is never
// mistaken for "upstream slow".
func (c *Client) transportError(ctx, reqCtx context.Context, op string, err error, requestID string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("llm: %s: %w", op, ctx.Err())
	}
	e := &Error{
		Kind:      UpstreamUnavailable,
		Message:   truncate(oneLine(string(c.redact([]byte(err.Error()))))),
		RequestID: requestID,
		err:       err,
	}
	var netErr net.Error
	switch {
	case errors.Is(reqCtx.Err(), context.DeadlineExceeded):
		e.Kind = Timeout
		e.Message = fmt.Sprintf("%s: no answer within %s", op, c.timeout)
	case errors.As(err, &netErr) && netErr.Timeout():
		e.Kind = Timeout
	}
	return e
}

// malformed reports a 2xx answer the batch engine cannot use.
func (c *Client) malformed(status int, body []byte, requestID, why string) *Error {
	return &Error{
		Kind:       MalformedResponse,
		StatusCode: status,
		Message:    why,
		RequestID:  requestID,
		Body:       c.redact(body[:min(len(body), maxErrorBodyBytes)]),
	}
}

// redact removes the API key from anything that came back from upstream:
// some servers quote the key they rejected, and errors end up in logs and
// in the batch's errors file.
func (c *Client) redact(b []byte) []byte {
	if c.apiKey == "" || !bytes.Contains(b, []byte(c.apiKey)) {
		return b
	}
	return bytes.ReplaceAll(b, []byte(c.apiKey), []byte("[redacted]"))
}

// mentionsContextLength reports whether an error body says the prompt does
// not fit. Model servers word it differently:
//
//	OpenAI: "This model's maximum context length is 8192 tokens. ...", code "context_length_exceeded"
//	vLLM:   "This model's maximum context length is 4096 tokens. However, you requested ..."
//	vLLM:   "The prompt (total length 25938) is too long to fit into the model (context length 4096)."
//	SGLang: "The input (61709 tokens) is longer than the model's context length (40960 tokens)."
func mentionsContextLength(body []byte) bool {
	lower := strings.ToLower(string(body))
	for _, p := range []string{
		"context length", "context_length", "maximum context", "context window",
		"too many tokens", "too long to fit", "prompt is too long", "input is too long",
	} {
		if strings.Contains(lower, p) {
			return true
		}
	}
	return false
}

// upstreamMessage finds the human-readable message in an error body. Model
// servers disagree on where it goes:
//
//	{"error": {"message": "..."}}               OpenAI, newer vLLM, Zhipu
//	{"object": "error", "message": "..."}       older vLLM, SGLang
//	{"error": "..."}                            Ollama
//	{"detail": "..."}                           FastAPI defaults (unknown routes)
//
// Anything else (an HTML page from a proxy, plain text) is used as text.
func upstreamMessage(body []byte) string {
	var doc struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return truncate(oneLine(string(body)))
	}
	var nested struct {
		Message string `json:"message"`
	}
	var flat, detail string
	switch {
	case json.Unmarshal(doc.Error, &nested) == nil && nested.Message != "":
		return truncate(oneLine(nested.Message))
	case json.Unmarshal(doc.Error, &flat) == nil && flat != "":
		return truncate(oneLine(flat))
	case doc.Message != "":
		return truncate(oneLine(doc.Message))
	case json.Unmarshal(doc.Detail, &detail) == nil && detail != "":
		return truncate(oneLine(detail))
	}
	return truncate(oneLine(string(body)))
}

// parseRetryAfter reads how long the upstream asked us to wait. OpenAI's
// retry-after-ms is preferred when present because it is finer; Retry-After
// may be delay-seconds (fractions tolerated) or an HTTP-date.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil {
			return clampRetryAfter(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		return clampRetryAfter(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return clampRetryAfter(float64(t.Sub(now)))
	}
	return 0
}

// clampRetryAfter turns nanoseconds into a Duration in [0, maxRetryAfter];
// it is done in float64 so that absurd header values cannot overflow.
func clampRetryAfter(ns float64) time.Duration {
	if math.IsNaN(ns) || ns <= 0 {
		return 0
	}
	return time.Duration(min(ns, float64(maxRetryAfter)))
}

// oneLine collapses runs of white space, so a message fits a log line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// truncate shortens s to at most maxMessageBytes without splitting a
// character.
func truncate(s string) string {
	if len(s) <= maxMessageBytes {
		return s
	}
	const ellipsis = "…"
	cut := maxMessageBytes - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
