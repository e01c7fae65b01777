package llm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout             = 60 * time.Second
	DefaultMaxIdleConnsPerHost = 64
)

const (
	// maxResponseBytes bounds a chat completion we accept; a larger answer
	// is a broken upstream, not a model's output.
	maxResponseBytes = 16 << 20
	// maxErrorBodyBytes bounds the error body kept for the errors file.
	maxErrorBodyBytes = 64 << 10
)

// Config says where a model server is and how to talk to it. Only BaseURL
// is required.
type Config struct {
	// BaseURL is the API root, like the OpenAI SDKs' base_url:
	// "http://127.0.0.1:8000/v1" for vLLM, "https://api.openai.com/v1",
	// "https://open.bigmodel.cn/api/paas/v4" for Zhipu. It is used as given
	// (a trailing slash is dropped) and no /v1 is added, because not every
	// provider's root ends in /v1.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <APIKey>" when set. It is
	// never logged, and is redacted from anything the upstream sends back.
	APIKey string
	// Timeout bounds one request, from sending to the last byte of the
	// answer. Default DefaultTimeout.
	Timeout time.Duration
	// MaxIdleConnsPerHost is how many keep-alive connections to the model
	// server are kept; it should be at least the number of requests in
	// flight, or connections are opened and closed for every request.
	// Default DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
}

// Client calls one model server. It is safe for concurrent use and should
// be shared: it holds the connection pool.
type Client struct {
	baseURL string
	baseErr error // a BaseURL that cannot work, reported by every call
	apiKey  string
	timeout time.Duration
	http    *http.Client
}

// Response is a successful answer from the model server.
type Response struct {
	StatusCode int
	// RequestID is the upstream's x-request-id, or the one the client
	// generated and sent as X-Request-Id when the upstream does not echo it.
	RequestID string
	// Body is the upstream's answer as it was sent. For Chat it is a JSON
	// object with a choices array.
	Body json.RawMessage
	// Usage is the answer's token counts (zero when it reports none),
	// read in the same parse that checks the answer, so that the metrics
	// do not parse every answer again.
	Usage Usage
}

// Usage is the token counts a chat-completions answer reports.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// New makes a client for the model server described by cfg. A BaseURL that
// is not an absolute http(s) URL makes every call fail with InvalidRequest,
// which is not retryable: no amount of retrying fixes a configuration.
func New(cfg Config) *Client {
	c := &Client{
		baseURL: strings.TrimRight(cfg.BaseURL, "/"),
		apiKey:  cfg.APIKey,
		timeout: cfg.Timeout,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if u, err := url.Parse(c.baseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.baseErr = &Error{Kind: InvalidRequest, Message: fmt.Sprintf("BaseURL %q is not an http(s) URL", cfg.BaseURL)}
	}
	idle := cfg.MaxIdleConnsPerHost
	if idle <= 0 {
		idle = DefaultMaxIdleConnsPerHost
	}
	c.http = &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}}
	return c
}

// Chat sends one chat-completions request body (raw JSON, exactly as in an
// OpenAI Batch line's "body") to POST {BaseURL}/chat/completions and returns
// the upstream's answer untouched. Failures are *Error, except that a
// cancelled or expired ctx is returned as ctx's error (errors.Is(err,
// context.Canceled)).
//
// Streaming is not supported: a body with "stream": true is refused before
// sending, since a batch needs the whole answer.
func (c *Client) Chat(ctx context.Context, body json.RawMessage) (*Response, error) {
	if err := checkChatBody(body); err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/chat/completions", body)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Choices json.RawMessage `json:"choices"`
		Usage   *Usage          `json:"usage"`
	}
	if !isObject(resp.Body) || json.Unmarshal(resp.Body, &doc) != nil || !bytes.HasPrefix(doc.Choices, []byte("[")) {
		return nil, c.malformed(resp.StatusCode, resp.Body, resp.RequestID, "answer is not a JSON object with a choices array")
	}
	if doc.Usage != nil {
		resp.Usage = *doc.Usage
	}
	return resp, nil
}

// Models lists the ids of GET {BaseURL}/models, for health checks and to
// find which node serves which model.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	resp, err := c.do(ctx, http.MethodGet, "/models", nil)
	if err != nil {
		return nil, err
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if !isObject(resp.Body) || json.Unmarshal(resp.Body, &list) != nil || list.Data == nil {
		return nil, c.malformed(resp.StatusCode, resp.Body, resp.RequestID, "answer is not a JSON object with a data array")
	}
	ids := make([]string, 0, len(list.Data))
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	return ids, nil
}

// checkChatBody refuses, without a round trip, bodies no server can answer
// usefully. The body is only inspected, never rewritten.
func checkChatBody(body json.RawMessage) error {
	var doc struct {
		Stream bool `json:"stream"`
	}
	if !isObject(body) || json.Unmarshal(body, &doc) != nil {
		return &Error{Kind: InvalidRequest, Message: "request body is not a JSON object"}
	}
	if doc.Stream {
		return &Error{Kind: InvalidRequest, Message: `"stream": true is not supported in a batch`}
	}
	return nil
}

// do makes one request under the per-request timeout and returns the
// complete 2xx answer, or a classified error.
func (c *Client) do(ctx context.Context, method, path string, body []byte) (*Response, error) {
	if c.baseErr != nil {
		return nil, c.baseErr
	}
	op := method + " " + path
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel() // only after the body is read: the timeout covers it too

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(reqCtx, method, c.baseURL+path, rd)
	if err != nil {
		return nil, fmt.Errorf("llm: build %s request: %w", op, err)
	}
	// Sent so that the upstream's logs (vLLM with --enable-request-id-headers,
	// proxies) can be matched with ours even when it does not echo an id.
	requestID := rand.Text()
	req.Header.Set("X-Request-Id", requestID)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, reqCtx, op, err, requestID)
	}
	defer resp.Body.Close()
	if id := resp.Header.Get("X-Request-Id"); id != "" {
		requestID = id
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// A failed read leaves a shorter body; the status already says what
		// happened, so it is classified all the same.
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
		return nil, c.statusError(resp.StatusCode, resp.Header, raw, requestID)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, c.transportError(ctx, reqCtx, op, err, requestID)
	}
	if len(raw) > maxResponseBytes {
		return nil, c.malformed(resp.StatusCode, raw, requestID, fmt.Sprintf("answer is larger than %d bytes", maxResponseBytes))
	}
	return &Response{StatusCode: resp.StatusCode, RequestID: requestID, Body: raw}, nil
}

// isObject reports whether b is (at first glance) a JSON object; it guards
// json.Unmarshal into a struct, which accepts "null" without complaint.
func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}
