package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
)

// TestConsoleSignIn: a browser without a session is sent to the sign-in
// page from every console page; a wrong key is refused; a good key is
// kept in an HttpOnly, SameSite=Strict cookie that no page shows; a form
// post from another site is refused.
func TestConsoleSignIn(t *testing.T) {
	p := authz.Default()
	key, entry, err := authz.NewAPIKey("alice", "demo", "test")
	if err != nil {
		t.Fatal(err)
	}
	p.APIKeys = append(p.APIKeys, entry)
	h := (&Server{Policy: authz.Static(p)}).Handler()
	do := func(method, path string, form url.Values, cookie *http.Cookie) *httptest.ResponseRecorder {
		var req *http.Request
		if form != nil {
			req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req = httptest.NewRequest(method, path, nil)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, path := range []string{"/console/", "/console/tasks/t1", "/console/inbox", "/console/usage", "/console/fleet", "/console/access", "/console/tasks/t1/files/output.jsonl"} {
		if rec := do("GET", path, nil, nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/console/login" {
			t.Errorf("GET %s signed out: %d to %q", path, rec.Code, rec.Header().Get("Location"))
		}
	}
	if rec := do("GET", "/console/login", nil, nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `type="password"`) {
		t.Fatalf("sign-in page: %d %s", rec.Code, rec.Body)
	}
	if rec := do("POST", "/console/login", url.Values{"key": {"agk_wrong"}}, nil); rec.Code != http.StatusUnauthorized || len(rec.Result().Cookies()) != 0 {
		t.Errorf("a wrong key: %d, cookies %v", rec.Code, rec.Result().Cookies())
	}
	rec := do("POST", "/console/login", url.Values{"key": {key}}, nil)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("a good key: %d %s", rec.Code, rec.Body)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Path != "/console/" {
		t.Fatalf("session cookie: %+v", cookies)
	}
	page := do("GET", "/console/access", nil, cookies[0])
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), "alice") || strings.Contains(page.Body.String(), key) {
		t.Errorf("a page signed in: %d; shows the user: %v; shows the key: %v", page.Code, strings.Contains(page.Body.String(), "alice"), strings.Contains(page.Body.String(), key))
	}
	if rec := do("POST", "/console/tasks/t1/reject", url.Values{"reason": {"  "}}, cookies[0]); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "needs a reason") {
		t.Errorf("a rejection without a reason: %d", rec.Code)
	}
	req := httptest.NewRequest("POST", "/console/tasks/t1/approve", strings.NewReader("reason=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.AddCookie(cookies[0])
	cross := httptest.NewRecorder()
	h.ServeHTTP(cross, req)
	if cross.Code != http.StatusForbidden {
		t.Errorf("a cross-site post: %d", cross.Code)
	}
}

// TestJSONFallback: an unknown path and a method a path does not take
// are answered in JSON, OpenAI's shape under /v1 and the native one
// under /api/v1, 405 with its Allow header.
func TestJSONFallback(t *testing.T) {
	h := (&Server{Policy: authz.Static(authz.Default())}).Handler()
	for _, c := range []struct {
		method, path string
		code         int
		errCode      string
	}{
		{"PUT", "/v1/files", http.StatusMethodNotAllowed, "method_not_allowed"},
		{"GET", "/v1/nope", http.StatusNotFound, "unknown_url"},
		{"PATCH", "/v1/batches/batch_x", http.StatusMethodNotAllowed, "method_not_allowed"},
		{"GET", "/nope", http.StatusNotFound, "unknown_url"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		var body OpenAIError
		if rec.Code != c.code || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error.Code == nil || *body.Error.Code != c.errCode || body.Error.Type != "invalid_request_error" || body.Error.Message == "" {
			t.Errorf("%s %s: %d %s", c.method, c.path, rec.Code, rec.Body)
		}
		if c.code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Errorf("%s %s: no Allow header", c.method, c.path)
		}
		if !strings.Contains(rec.Body.String(), `"param":null`) {
			t.Errorf("%s %s: no param in %s", c.method, c.path, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("DELETE", "/api/v1/tasks", nil))
	var native APIError
	if rec.Code != http.StatusMethodNotAllowed || json.Unmarshal(rec.Body.Bytes(), &native) != nil || native.Error.Type != "MethodNotAllowed" {
		t.Errorf("DELETE /api/v1/tasks: %d %s", rec.Code, rec.Body)
	}
}

// TestConsoleOIDCStart: signing in with the identity provider starts the
// authorization code flow with an S256 PKCE challenge of a verifier kept
// in an HttpOnly cookie, and a callback whose state is not that sign-in's
// is refused without a session.
func TestConsoleOIDCStart(t *testing.T) {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"authorization_endpoint": "https://idp.test/authorize", "token_endpoint": "https://idp.test/token"})
	}))
	defer idp.Close()
	h := (&Server{Policy: authz.Static(authz.Default()), OIDC: &OIDC{Issuer: idp.URL, Audience: "console", JWKSURL: idp.URL + "/jwks"}}).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://autoglm.test/console/oidc/start", nil))
	loc, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || err != nil || loc.Host != "idp.test" {
		t.Fatalf("start: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	q := loc.Query()
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteLaxMode {
		t.Fatalf("flow cookie: %+v", cookies)
	}
	parts := strings.Split(cookies[0].Value, ".")
	sum := sha256.Sum256([]byte(parts[len(parts)-1]))
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") != base64.RawURLEncoding.EncodeToString(sum[:]) ||
		q.Get("client_id") != "console" || q.Get("state") != parts[0] || q.Get("redirect_uri") != "http://autoglm.test/console/oidc/callback" {
		t.Errorf("authorization request %v", q)
	}
	req := httptest.NewRequest("GET", "http://autoglm.test/console/oidc/callback?code=x&state=forged", nil)
	req.AddCookie(cookies[0])
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "autoglm_console" && c.MaxAge >= 0 {
			t.Errorf("a forged callback set a session")
		}
	}
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("a forged callback: %d", rec.Code)
	}
}
