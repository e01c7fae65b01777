package llm_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/llm"
)

// These tests use a hand-written upstream where the test model server
// cannot misbehave in the way needed.

const okCompletion = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}`

func upstream(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestAPIKeyIsSentAsBearerAndNeverShown(t *testing.T) {
	const key = "sk-test-9f8e7d6c5b4a"
	var gotAuth atomic.Value
	srv := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusUnauthorized)
		// Some upstreams quote the key they refuse.
		io.WriteString(w, `{"error":{"message":"Incorrect API key provided: `+key+`","type":"invalid_request_error","code":"invalid_api_key"}}`)
	})
	c := llm.New(llm.Config{BaseURL: srv.URL + "/v1", APIKey: key})

	_, err := c.Chat(context.Background(), json.RawMessage(`{"model":"m","messages":[]}`))
	e := mustKind(t, err, llm.Unauthorized)
	if got := gotAuth.Load(); got != "Bearer "+key {
		t.Errorf("Authorization = %q, want Bearer and the key", got)
	}
	for what, s := range map[string]string{"Error()": err.Error(), "Message": e.Message, "Body": string(e.Body)} {
		if strings.Contains(s, key) {
			t.Errorf("%s shows the API key: %s", what, s)
		}
	}
	if !strings.Contains(e.Message, "Incorrect API key provided") {
		t.Errorf("Message = %q, want the upstream's message", e.Message)
	}
}

func TestForbiddenIsUnauthorized(t *testing.T) {
	srv := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"model access denied"}`, http.StatusForbidden)
	})
	_, err := llm.New(llm.Config{BaseURL: srv.URL}).Chat(context.Background(), json.RawMessage(`{}`))
	if e := mustKind(t, err, llm.Unauthorized); e.Message != "model access denied" {
		t.Errorf("Message = %q", e.Message)
	}
}

func TestRequestIDPrefersUpstreamsOwn(t *testing.T) {
	var sent atomic.Value
	var echo atomic.Bool
	echo.Store(true)
	srv := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		sent.Store(r.Header.Get("X-Request-Id"))
		if echo.Load() {
			w.Header().Set("X-Request-Id", "upstream-42")
		}
		io.WriteString(w, okCompletion)
	})
	c := llm.New(llm.Config{BaseURL: srv.URL + "/v1"})
	body := json.RawMessage(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)

	resp, err := c.Chat(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.RequestID != "upstream-42" || string(resp.Body) != okCompletion {
		t.Errorf("RequestID %q, Body %s", resp.RequestID, resp.Body)
	}

	echo.Store(false)
	resp, err = c.Chat(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.RequestID == "" || resp.RequestID != sent.Load() {
		t.Errorf("RequestID %q, sent %q: want the generated id that was sent", resp.RequestID, sent.Load())
	}
}

func TestMalformedAnswers(t *testing.T) {
	for name, answer := range map[string]string{
		"not JSON":            `{"choices": [`,
		"null":                `null`,
		"array":               `[{"choices":[]}]`,
		"no choices":          `{"id":"x"}`,
		"choices not array":   `{"choices":{"0":{}}}`,
		"HTML from a proxy":   `<html>gateway</html>`,
		"over the size limit": `{"choices":[],"pad":"` + strings.Repeat("x", 16<<20) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, answer) })
			_, err := llm.New(llm.Config{BaseURL: srv.URL}).Chat(context.Background(), json.RawMessage(`{}`))
			e := mustKind(t, err, llm.MalformedResponse)
			if !e.Retryable() || e.StatusCode != 200 || len(e.Body) > 64<<10 {
				t.Errorf("retryable %v status %d body %d bytes", e.Retryable(), e.StatusCode, len(e.Body))
			}
		})
	}
}

func TestChatRefusesBeforeSending(t *testing.T) {
	var hits atomic.Int64
	srv := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, okCompletion)
	})
	c := llm.New(llm.Config{BaseURL: srv.URL})
	for _, body := range []string{``, `[]`, `null`, `{"model":"m"`, `{"model":"m","stream":true}`} {
		_, err := c.Chat(context.Background(), json.RawMessage(body))
		if e := mustKind(t, err, llm.InvalidRequest); e.Retryable() {
			t.Errorf("%s: retryable", body)
		}
	}
	_, err := llm.New(llm.Config{BaseURL: "127.0.0.1:8000/v1"}).Chat(context.Background(), json.RawMessage(`{}`))
	mustKind(t, err, llm.InvalidRequest)
	if n := hits.Load(); n != 0 {
		t.Errorf("upstream got %d requests, want none", n)
	}
}

func TestModelsMalformed(t *testing.T) {
	srv := upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"object":"list"}`) })
	_, err := llm.New(llm.Config{BaseURL: srv.URL}).Models(context.Background())
	mustKind(t, err, llm.MalformedResponse)
}
