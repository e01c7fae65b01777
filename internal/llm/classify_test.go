package llm

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestStatusErrorKinds(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		kind    Kind
		message string
	}{
		{"OpenAI context length", 400,
			`{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`,
			ContextLengthExceeded, "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages."},
		{"vLLM (old shape) context length", 400,
			`{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 4472 tokens (376 in the messages, 4096 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}`,
			ContextLengthExceeded, "This model's maximum context length is 4096 tokens. However, you requested 4472 tokens (376 in the messages, 4096 in the completion). Please reduce the length of the messages or completion."},
		{"vLLM max_tokens too large", 400,
			`{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length is 4096 tokens and your request has 2778 input tokens (8000 > 4096 - 2778).","type":"BadRequestError","param":null,"code":400}}`,
			ContextLengthExceeded, ""},
		{"vLLM prompt too long", 400,
			`{"error":{"message":"The prompt (total length 25938) is too long to fit into the model (context length 4096).","type":"BadRequestError","code":400}}`,
			ContextLengthExceeded, ""},
		{"SGLang", 400,
			`{"object":"error","message":"The input (61709 tokens) is longer than the model's context length (40960 tokens).","type":"BadRequestError","param":null,"code":400}`,
			ContextLengthExceeded, ""},
		{"plain bad request", 400, `{"error":{"message":"temperature must be <= 2"}}`, InvalidRequest, "temperature must be <= 2"},
		{"unprocessable", 422, `{"detail":"messages: field required"}`, InvalidRequest, "messages: field required"},
		{"not found, Ollama shape", 404, `{"error":"model \"x\" not found, try pulling it first"}`, InvalidRequest, `model "x" not found, try pulling it first`},
		{"rate limited", 429, `{"error":{"message":"Rate limit reached","type":"requests"}}`, RateLimited, "Rate limit reached"},
		{"unauthorized", 401, ``, Unauthorized, "Unauthorized"},
		{"forbidden", 403, `forbidden`, Unauthorized, "forbidden"},
		{"request timeout", 408, ``, Timeout, "Request Timeout"},
		{"bad gateway from a proxy", 502, "<html>\n<head><title>502 Bad Gateway</title></head>\n</html>", UpstreamUnavailable, "<html> <head><title>502 Bad Gateway</title></head> </html>"},
		{"service unavailable", 503, `{"error":{"message":"engine is loading"}}`, UpstreamUnavailable, "engine is loading"},
		{"context length in a 5xx is still a 5xx", 500, `{"error":{"message":"context length check crashed"}}`, UpstreamUnavailable, ""},
	}
	c := New(Config{BaseURL: "http://x/v1"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := c.statusError(tt.status, http.Header{}, []byte(tt.body), "req-1")
			if e.Kind != tt.kind || e.StatusCode != tt.status || e.RequestID != "req-1" || string(e.Body) != tt.body {
				t.Errorf("got %s %d %q body %q; want %s %d", e.Kind, e.StatusCode, e.RequestID, e.Body, tt.kind, tt.status)
			}
			if tt.message != "" && e.Message != tt.message {
				t.Errorf("Message = %q, want %q", e.Message, tt.message)
			}
		})
	}
}

func TestMessageIsTruncatedOnACharacter(t *testing.T) {
	long := strings.Repeat("模型", 200) // 3-byte characters, so a byte cut would split one
	e := New(Config{BaseURL: "http://x"}).statusError(400, nil, []byte(`{"error":{"message":"`+long+`"}}`), "")
	if len(e.Message) > maxMessageBytes || !utf8.ValidString(e.Message) || !strings.HasSuffix(e.Message, "…") {
		t.Errorf("Message has %d bytes, valid UTF-8 %v: %q", len(e.Message), utf8.ValidString(e.Message), e.Message)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		header map[string]string
		want   time.Duration
	}{
		{nil, 0},
		{map[string]string{"Retry-After": "3"}, 3 * time.Second},
		{map[string]string{"Retry-After": "0"}, 0},
		{map[string]string{"Retry-After": "1.5"}, 1500 * time.Millisecond},
		{map[string]string{"Retry-After": "-4"}, 0},
		{map[string]string{"Retry-After": "soon"}, 0},
		{map[string]string{"Retry-After": "NaN"}, 0},
		{map[string]string{"Retry-After": "99999999999999999999"}, maxRetryAfter},
		{map[string]string{"Retry-After": "Sun, 01 Jun 2025 12:00:07 GMT"}, 7 * time.Second},
		{map[string]string{"Retry-After": "Sun, 01 Jun 2025 11:59:00 GMT"}, 0},
		{map[string]string{"Retry-After": "20", "Retry-After-Ms": "250"}, 250 * time.Millisecond},
		{map[string]string{"Retry-After": "2", "Retry-After-Ms": "junk"}, 2 * time.Second},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.header {
			h.Set(k, v)
		}
		if got := parseRetryAfter(h, now); got != tt.want {
			t.Errorf("parseRetryAfter(%v) = %s, want %s", tt.header, got, tt.want)
		}
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Kind: RateLimited, StatusCode: 429, Message: "slow down", RetryAfter: 2 * time.Second}
	if got, want := e.Error(), "llm: RateLimited: HTTP 429: slow down (retry after 2s)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
