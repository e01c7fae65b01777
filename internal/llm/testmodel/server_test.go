package testmodel

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

const validBody = `{"model":"glm-4-test","messages":[{"role":"user","content":"tap the red button"}]}`

// post sends body to the chat endpoint of h and returns the recorded answer.
func post(h http.Handler, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body)))
	return rec
}

// outcomes answers n valid requests and returns their status codes.
func outcomes(s *Server, n int) []int {
	codes := make([]int, n)
	for i := range codes {
		codes[i] = post(s.Handler(), validBody).Code
	}
	return codes
}

func TestRateLimitShareIsNearTheFraction(t *testing.T) {
	const n = 500
	s := New(Options{Seed: 42, Faults: Faults{RateLimit: 0.2}})
	codes := outcomes(s, n)
	limited := 0
	for _, c := range codes {
		if c == http.StatusTooManyRequests {
			limited++
		} else if c != http.StatusOK {
			t.Fatalf("unexpected status %d", c)
		}
	}
	if share := float64(limited) / n; share < 0.12 || share > 0.28 {
		t.Errorf("429 share = %.3f, want about 0.2", share)
	}
	if st := s.Stats(); st.Requests != n || st.RateLimited != int64(limited) || st.OK != int64(n-limited) {
		t.Errorf("stats = %+v, observed %d limited of %d", st, limited, n)
	}

	again := outcomes(New(Options{Seed: 42, Faults: Faults{RateLimit: 0.2}}), n)
	if !slices.Equal(codes, again) {
		t.Error("the same seed gave a different sequence of outcomes")
	}
	other := outcomes(New(Options{Seed: 43, Faults: Faults{RateLimit: 0.2}}), n)
	if slices.Equal(codes, other) {
		t.Error("a different seed gave the same sequence of outcomes")
	}
}

func TestFaultsArePickedInOrder(t *testing.T) {
	f := Faults{BadRequest: 0.1, RateLimit: 0.1, ServerError: 0.1, Hang: 0.1, Malformed: 0.1}
	for _, tt := range []struct {
		u    float64
		want outcome
	}{
		{0.05, injectBadRequest}, {0.15, injectRateLimit}, {0.25, injectServerError},
		{0.35, injectHang}, {0.45, injectMalformed}, {0.55, answerOK}, {0.99, answerOK},
	} {
		if got := f.pick(tt.u); got != tt.want {
			t.Errorf("pick(%v) = %d, want %d", tt.u, got, tt.want)
		}
	}
	if got := (Faults{RateLimit: -1, ServerError: 0.5}).pick(0.2); got != injectServerError {
		t.Errorf("a negative fraction took a share: got %d", got)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", time.Nanosecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", -1: "",
	} {
		s := New(Options{Faults: Faults{RateLimit: 1, RetryAfter: d}})
		rec := post(s.Handler(), validBody)
		if got := rec.Header().Get("Retry-After"); rec.Code != 429 || got != want {
			t.Errorf("RetryAfter %s: status %d header %q, want 429 %q", d, rec.Code, got, want)
		}
	}
}

func TestInjectedAnswersHaveTheirShapes(t *testing.T) {
	for _, tt := range []struct {
		faults    Faults
		status    int
		validJSON bool
	}{
		{Faults{BadRequest: 1}, 400, true},
		{Faults{ServerError: 1}, 500, true},
		{Faults{Malformed: 1}, 200, false},
		{Faults{}, 200, true},
	} {
		rec := post(New(Options{Faults: tt.faults}).Handler(), validBody)
		if rec.Code != tt.status || json.Valid(rec.Body.Bytes()) != tt.validJSON {
			t.Errorf("%+v: status %d, valid JSON %v: %s", tt.faults, rec.Code, json.Valid(rec.Body.Bytes()), rec.Body)
		}
	}
}

func TestRejections(t *testing.T) {
	s := New(Options{Models: []string{"a"}, MaxContextChars: 10})
	for _, tt := range []struct {
		body, code string
		status     int
		message    string
	}{
		{`{"model":`, "", 400, "not a valid"},
		{`{"model":"b","messages":[{"role":"user","content":"hi"}]}`, `"model_not_found"`, 404, "`b` does not exist"},
		{`{"model":"a","messages":[]}`, "", 400, "must not be empty"},
		{`{"messages":[{"role":"user","content":"hi"}]}`, "", 400, "provide a model"},
		{`{"model":"a","messages":[{"role":"user","content":42}]}`, "", 400, "must be a string"},
		{`{"model":"a","messages":[{"role":"user","content":"eleven char"}]}`, "400", 400, "maximum context length is 10 characters"},
	} {
		rec := post(s.Handler(), tt.body)
		var e struct {
			Error struct {
				Message string          `json:"message"`
				Type    string          `json:"type"`
				Code    json.RawMessage `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != tt.status ||
			!strings.Contains(e.Error.Message, tt.message) || (tt.code != "" && string(e.Error.Code) != tt.code) {
			t.Errorf("%s: status %d, body %s; want %d, %q, code %s", tt.body, rec.Code, rec.Body, tt.status, tt.message, tt.code)
		}
	}
	// Images do not count against the context.
	image := `{"model":"a","messages":[{"role":"user","content":[{"type":"text","text":"tap"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("A", 100) + `"}}]}]}`
	if rec := post(s.Handler(), image); rec.Code != 200 {
		t.Errorf("multimodal request: status %d: %s", rec.Code, rec.Body)
	}
	if st := s.Stats(); st.Rejected != 6 || st.OK != 1 || st.Requests != 7 {
		t.Errorf("stats = %+v", st)
	}
}

func TestAnswerIgnoresEncodingButNotContent(t *testing.T) {
	a, err := Answer([]byte(validBody))
	if err != nil {
		t.Fatal(err)
	}
	reencoded, _ := Answer([]byte(`{ "messages": [ {"content": "tap the red button", "role": "user"} ], "model": "glm-4-test" }`))
	otherModel, _ := Answer([]byte(`{"model":"glm-4-other","messages":[{"role":"user","content":"tap the red button"}]}`))
	if a != reencoded {
		t.Errorf("re-encoding changed the answer: %q vs %q", a, reencoded)
	}
	if a == otherModel || !strings.HasPrefix(a, "test model answer to: tap the red button [") {
		t.Errorf("answer %q (other model: %q)", a, otherModel)
	}
	long, _ := Answer([]byte(`{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("word ", 100) + `"}]}`))
	if n := len([]rune(long)); n > 130 {
		t.Errorf("answer to a long prompt has %d characters: %q", n, long)
	}
}

func TestServerEndpoints(t *testing.T) {
	s := New(Options{Models: []string{"x", "y"}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || !strings.HasSuffix(s.URL(), "/v1") {
		t.Errorf("URL = %q", s.URL())
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}

	resp, err := http.Get(strings.TrimSuffix(s.URL(), "/v1") + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	resp, err = http.Get(s.URL() + "/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || list.Object != "list" || len(list.Data) != 2 ||
		list.Data[0].ID != "x" || list.Data[1].ID != "y" || list.Data[0].Object != "model" {
		t.Errorf("models: %+v %v", list, err)
	}
}

func TestLatencyIsAddedAndCutShortByTheClient(t *testing.T) {
	s := New(Options{Faults: Faults{Latency: 60 * time.Millisecond}})
	start := time.Now()
	if rec := post(s.Handler(), validBody); rec.Code != 200 || time.Since(start) < 60*time.Millisecond {
		t.Errorf("status %d after %s, want 200 after at least 60ms", rec.Code, time.Since(start))
	}

	s.SetFaults(Faults{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/chat/completions", strings.NewReader(validBody))
	done := make(chan struct{})
	go func() {
		s.Handler().ServeHTTP(httptest.NewRecorder(), req)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("handler kept waiting after its client left")
	}
}

func TestCloseAnswersWaitingRequestsOfAMountedHandler(t *testing.T) {
	s := New(Options{Faults: Faults{Hang: 1}})
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(validBody)))
		close(done)
	}()
	for deadline := time.Now().Add(30 * time.Second); s.Stats().Hung == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never hung")
		}
	}
	if err := s.Close(); err != nil { // never started: only releases the waiting
		t.Fatal(err)
	}
	select {
	case <-done:
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("released request got %d, want 503", rec.Code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not release the hung request")
	}
}

// heldRequest sends a request and fails unless, once the server has
// taken it, it is still unanswered; done closes when it is answered.
func heldRequest(t *testing.T, s *Server) (*httptest.ResponseRecorder, chan struct{}) {
	t.Helper()
	rec, done := httptest.NewRecorder(), make(chan struct{})
	before := s.Stats().Requests
	go func() {
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(validBody)))
		close(done)
	}()
	for s.Stats().Requests == before {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatalf("a held request was answered (%d) before the release", rec.Code)
	default:
	}
	return rec, done
}

// A held request is answered only once the hold is released, and then
// with its usual outcome; requests after the release are not held.
func TestHoldKeepsRequestsUntilReleased(t *testing.T) {
	s := New(Options{})
	release := s.Hold()
	rec, done := heldRequest(t, s)
	release()
	release()
	<-done
	if rec.Code != http.StatusOK {
		t.Fatalf("the released request got %d, want 200", rec.Code)
	}
	if code := post(s.Handler(), validBody).Code; code != http.StatusOK {
		t.Fatalf("a request after the release got %d", code)
	}
}

// HoldAfter answers the next n valid requests and holds the one after.
func TestHoldAfterAnswersExactlyN(t *testing.T) {
	s := New(Options{})
	release := s.HoldAfter(2)
	defer release()
	for i := range 2 {
		if code := post(s.Handler(), validBody).Code; code != http.StatusOK {
			t.Fatalf("request %d of the 2 let through got %d", i+1, code)
		}
	}
	rec, done := heldRequest(t, s)
	release()
	<-done
	if rec.Code != http.StatusOK || s.Stats().OK != 3 {
		t.Fatalf("after the release: %d, %d answered; want 200, 3", rec.Code, s.Stats().OK)
	}
}
