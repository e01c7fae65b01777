package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
)

// startModel starts a test model server for one test.
func startModel(t *testing.T, opts testmodel.Options) *testmodel.Server {
	t.Helper()
	s := testmodel.New(opts)
	if err := s.Start(); err != nil {
		t.Fatalf("start test model server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close test model server: %v", err)
		}
	})
	return s
}

func chatBody(model, content string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"model": model,
		"messages": []map[string]string{
			{"role": "system", "content": "You are a phone agent."},
			{"role": "user", "content": content},
		},
	})
	return b
}

// mustKind asserts err is an *llm.Error of kind k and returns it.
func mustKind(t *testing.T, err error, k llm.Kind) *llm.Error {
	t.Helper()
	e, ok := llm.AsError(err)
	if !ok {
		t.Fatalf("err = %v (%T), want *llm.Error of kind %s", err, err, k)
	}
	if e.Kind != k {
		t.Fatalf("kind = %s, want %s (err: %v)", e.Kind, k, err)
	}
	return e
}

func TestChatAnswersDeterministically(t *testing.T) {
	s := startModel(t, testmodel.Options{})
	c := llm.New(llm.Config{BaseURL: s.URL()})
	body := chatBody(testmodel.DefaultModel, "open the settings app")

	first, err := c.Chat(context.Background(), body)
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	if first.StatusCode != 200 || first.RequestID == "" {
		t.Errorf("StatusCode %d, RequestID %q; want 200 and an id", first.StatusCode, first.RequestID)
	}
	var got struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(first.Body, &got); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	want, err := testmodel.Answer(body)
	if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	if len(got.Choices) != 1 || got.Choices[0].Message.Content != want || got.Choices[0].Message.Role != "assistant" || got.Choices[0].FinishReason != "stop" {
		t.Errorf("choices = %+v, want one assistant message %q", got.Choices, want)
	}
	if !strings.Contains(want, "open the settings app") {
		t.Errorf("answer %q does not quote the prompt", want)
	}
	if got.Object != "chat.completion" || got.Model != testmodel.DefaultModel {
		t.Errorf("object %q model %q", got.Object, got.Model)
	}
	// "You are a phone agent." + "open the settings app": 5 + 4 words.
	if got.Usage.PromptTokens != 9 || got.Usage.TotalTokens != got.Usage.PromptTokens+got.Usage.CompletionTokens || got.Usage.CompletionTokens == 0 {
		t.Errorf("usage = %+v", got.Usage)
	}
	// The client's own reading of the counts, which the metrics use.
	if first.Usage.PromptTokens != got.Usage.PromptTokens || first.Usage.CompletionTokens != got.Usage.CompletionTokens {
		t.Errorf("Response.Usage = %+v, want the body's %+v", first.Usage, got.Usage)
	}

	second, err := c.Chat(context.Background(), body)
	if err != nil {
		t.Fatalf("second Chat: %v", err)
	}
	if string(second.Body) != string(first.Body) {
		t.Errorf("answers differ:\n%s\n%s", first.Body, second.Body)
	}
	other, err := c.Chat(context.Background(), chatBody(testmodel.DefaultModel, "open the camera"))
	if err != nil {
		t.Fatalf("third Chat: %v", err)
	}
	if string(other.Body) == string(first.Body) {
		t.Error("different prompts got the same answer")
	}
}

func TestChatClassifiesInjectedFaults(t *testing.T) {
	tests := []struct {
		name       string
		faults     testmodel.Faults
		kind       llm.Kind
		status     int
		retryable  bool
		retryAfter time.Duration
	}{
		{"rate limit", testmodel.Faults{RateLimit: 1, RetryAfter: 2 * time.Second}, llm.RateLimited, 429, true, 2 * time.Second},
		{"rate limit, retry at once", testmodel.Faults{RateLimit: 1}, llm.RateLimited, 429, true, 0},
		{"server error", testmodel.Faults{ServerError: 1}, llm.UpstreamUnavailable, 500, true, 0},
		{"bad request", testmodel.Faults{BadRequest: 1}, llm.InvalidRequest, 400, false, 0},
		{"malformed", testmodel.Faults{Malformed: 1}, llm.MalformedResponse, 200, true, 0},
	}
	s := startModel(t, testmodel.Options{})
	c := llm.New(llm.Config{BaseURL: s.URL()})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.SetFaults(tt.faults)
			_, err := c.Chat(context.Background(), chatBody(testmodel.DefaultModel, "hi"))
			e := mustKind(t, err, tt.kind)
			if e.StatusCode != tt.status || e.Retryable() != tt.retryable || e.RetryAfter != tt.retryAfter {
				t.Errorf("status %d retryable %v retryAfter %s; want %d %v %s",
					e.StatusCode, e.Retryable(), e.RetryAfter, tt.status, tt.retryable, tt.retryAfter)
			}
			if len(e.Body) == 0 || e.RequestID == "" {
				t.Errorf("Body %q, RequestID %q: want both", e.Body, e.RequestID)
			}
		})
	}
}

func TestChatInvalidRequests(t *testing.T) {
	s := startModel(t, testmodel.Options{MaxContextChars: 100})
	c := llm.New(llm.Config{BaseURL: s.URL()})

	_, err := c.Chat(context.Background(), chatBody("gpt-unknown", "hi"))
	e := mustKind(t, err, llm.InvalidRequest)
	if e.StatusCode != 404 || e.Retryable() || !strings.Contains(e.Message, "gpt-unknown") {
		t.Errorf("unknown model: status %d retryable %v message %q", e.StatusCode, e.Retryable(), e.Message)
	}

	_, err = c.Chat(context.Background(), chatBody(testmodel.DefaultModel, strings.Repeat("tap ", 50)))
	e = mustKind(t, err, llm.ContextLengthExceeded)
	if e.StatusCode != 400 || e.Retryable() || !strings.Contains(e.Message, "maximum context length is 100") {
		t.Errorf("long prompt: status %d retryable %v message %q", e.StatusCode, e.Retryable(), e.Message)
	}

	_, err = c.Chat(context.Background(), json.RawMessage(`{"model": "glm-4-test", "messages": "hi"}`))
	mustKind(t, err, llm.InvalidRequest)

	if got := s.Stats(); got.Rejected != 3 || got.Requests != 3 {
		t.Errorf("stats = %+v, want 3 requests, all rejected", got)
	}
}

func TestChatTimeoutWhenUpstreamHangs(t *testing.T) {
	s := startModel(t, testmodel.Options{Faults: testmodel.Faults{Hang: 1}})
	c := llm.New(llm.Config{BaseURL: s.URL(), Timeout: 100 * time.Millisecond})

	start := time.Now()
	_, err := c.Chat(context.Background(), chatBody(testmodel.DefaultModel, "hi"))
	e := mustKind(t, err, llm.Timeout)
	if !e.Retryable() || e.StatusCode != 0 {
		t.Errorf("retryable %v status %d", e.Retryable(), e.StatusCode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timed out after %s, want about 100ms", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap the request's deadline", err)
	}
	if got := s.Stats().Hung; got != 1 {
		t.Errorf("Hung = %d, want 1", got)
	}
}

func TestChatReturnsCallerCancellation(t *testing.T) {
	s := startModel(t, testmodel.Options{Faults: testmodel.Faults{Hang: 1}})
	c := llm.New(llm.Config{BaseURL: s.URL(), Timeout: 10 * time.Second})

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, func() bool { return s.Stats().Hung == 1 })
		cancel()
	}()
	_, err := c.Chat(ctx, chatBody(testmodel.DefaultModel, "hi"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, ok := llm.AsError(err); ok {
		t.Errorf("cancellation by the caller came back as *llm.Error: %v", err)
	}

	// The caller's own deadline is the caller's business too, not a Timeout.
	ctx, cancelDeadline := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelDeadline()
	_, err = c.Chat(ctx, chatBody(testmodel.DefaultModel, "hi"))
	if _, ok := llm.AsError(err); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the caller's context.DeadlineExceeded", err)
	}
}

func TestCloseReleasesHungRequests(t *testing.T) {
	s := testmodel.New(testmodel.Options{Faults: testmodel.Faults{Hang: 1}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c := llm.New(llm.Config{BaseURL: s.URL(), Timeout: 30 * time.Second})
	done := make(chan error, 1)
	go func() {
		_, err := c.Chat(context.Background(), chatBody(testmodel.DefaultModel, "hi"))
		done <- err
	}()
	waitFor(t, func() bool { return s.Stats().Hung == 1 })

	// A Close that waited for the hung request would wait out the
	// client's timeout, and the client would see a timeout instead.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		mustKind(t, err, llm.UpstreamUnavailable)
	case <-time.After(30 * time.Second):
		t.Fatal("the hung request was not released by Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestModelsListsIDs(t *testing.T) {
	s := startModel(t, testmodel.Options{Models: []string{"glm-4-test", "autoglm-phone-9b"}})
	ids, err := llm.New(llm.Config{BaseURL: s.URL() + "/"}).Models(context.Background())
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	if !slices.Equal(ids, []string{"glm-4-test", "autoglm-phone-9b"}) {
		t.Errorf("ids = %v", ids)
	}
}

func TestAPIKeyRequiredByTestModel(t *testing.T) {
	s := startModel(t, testmodel.Options{APIKey: "sk-good"})
	body := chatBody(testmodel.DefaultModel, "hi")

	_, err := llm.New(llm.Config{BaseURL: s.URL(), APIKey: "sk-bad"}).Chat(context.Background(), body)
	if e := mustKind(t, err, llm.Unauthorized); e.Retryable() || e.StatusCode != 401 {
		t.Errorf("retryable %v status %d", e.Retryable(), e.StatusCode)
	}
	if _, err := llm.New(llm.Config{BaseURL: s.URL(), APIKey: "sk-good"}).Chat(context.Background(), body); err != nil {
		t.Errorf("with the right key: %v", err)
	}
}

func TestConnectionRefusedIsUpstreamUnavailable(t *testing.T) {
	s := testmodel.New(testmodel.Options{})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	url := s.URL()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := llm.New(llm.Config{BaseURL: url}).Chat(context.Background(), chatBody(testmodel.DefaultModel, "hi"))
	e := mustKind(t, err, llm.UpstreamUnavailable)
	if e.StatusCode != 0 || !e.Retryable() || errors.Unwrap(e) == nil {
		t.Errorf("status %d retryable %v cause %v", e.StatusCode, e.Retryable(), errors.Unwrap(e))
	}
}

// waitFor polls cond for up to 2s; the test fails if it never holds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Error("condition not reached in 30s")
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
