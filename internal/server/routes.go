package server

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/server/console"
)

// consoleRoutes serves the web console at /console/. It calls the API
// (mux) in process with the signed-in user's credential, so every page
// passes the same authentication and role checks as any client.
func (s *Server) consoleRoutes(mux *http.ServeMux) {
	c := &console.Console{API: mux, Log: s.Log}
	if s.OIDC != nil {
		// The console is a public client of the provider; the ID tokens it
		// gets are for the audience the API accepts.
		c.OIDC = &console.OIDCLogin{Issuer: s.OIDC.Issuer, ClientID: s.OIDC.Audience, HTTP: s.OIDC.HTTP}
	}
	h, err := c.Handler()
	if err != nil {
		// The templates are embedded: only a broken build gets here, and
		// the console's unit test fails first.
		panic(fmt.Sprintf("console: %v", err))
	}
	mux.Handle(console.Prefix, h)
	mux.Handle("GET /console", http.RedirectHandler(console.Prefix, http.StatusMovedPermanently))
}

// jsonFallback answers a request no route takes (an unknown path, or a
// method the path does not take) with an error body in JSON, as every
// other answer of the API: OpenAI's shape, or the native API's under its
// prefix. A 405 keeps its Allow header.
func jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusOnly{header: http.Header{}}
		h.ServeHTTP(rec, r)
		code := rec.code
		if code != http.StatusMethodNotAllowed {
			code = http.StatusNotFound
		}
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		msg := fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)
		errCode := "unknown_url"
		if code == http.StatusMethodNotAllowed {
			msg = fmt.Sprintf("%s does not take %s; it takes %s", r.URL.Path, r.Method, rec.header.Get("Allow"))
			errCode = "method_not_allowed"
		}
		if strings.HasPrefix(r.URL.Path, APIPrefix+"/") {
			var body APIError
			body.Error.Type, body.Error.Message = string(notFoundOrMethod(code)), msg
			writeJSON(w, code, body)
			return
		}
		writeJSON(w, code, OpenAIError{Error: OpenAIErrorBody{Message: msg, Type: "invalid_request_error", Code: &errCode}})
	})
}

func notFoundOrMethod(code int) string {
	if code == http.StatusMethodNotAllowed {
		return "MethodNotAllowed"
	}
	return "NotFound"
}

// statusOnly keeps the status and headers of the mux's own 404 or 405
// answer and drops its plain-text body.
type statusOnly struct {
	header http.Header
	code   int
}

func (s *statusOnly) Header() http.Header { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return len(b), nil
}
func (s *statusOnly) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}
