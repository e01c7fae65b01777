// Package console is the web console of `autoglm server`, served at
// /console/ for tenant members: their tasks, a task's page, the approval
// inbox, usage, the fleet and access requests.
//
// Every page is built from the server's own API, called in process with
// the signed-in user's credential: the same handlers, the same
// authentication and the same role checks as any other client. The
// console holds no Temporal or bucket client and decides nothing about
// who may see what; a page shows what the API answered. Pages are
// server-rendered HTML (html/template, embedded), with a little script
// that refreshes the live parts of a page; nothing is loaded from the
// network at run time.
package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Prefix is where the console is served.
const Prefix = "/console/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Console is the web console's handler.
type Console struct {
	// API is the server's API handler (/api/v1/…), which every page calls
	// with the user's credential.
	API http.Handler
	// OIDC, if not nil, offers sign-in with the identity provider.
	OIDC *OIDCLogin
	// Fetch reads presigned URLs (the first answers of a task's output);
	// nil is a client with a 10 s timeout.
	Fetch *http.Client
	Log   *logrus.Logger

	pages map[string]*template.Template
}

// Handler is the console's HTTP handler, for Prefix.
func (c *Console) Handler() (http.Handler, error) {
	if c.Log == nil {
		c.Log = logrus.New()
	}
	if c.Fetch == nil {
		c.Fetch = &http.Client{Timeout: 10 * time.Second}
	}
	if err := c.parse(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(staticFS, "static")
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", cacheFor(time.Hour, http.FileServerFS(static))))
	mux.HandleFunc("GET "+Prefix+"login", c.loginPage)
	mux.HandleFunc("POST "+Prefix+"login", c.loginKey)
	mux.HandleFunc("POST "+Prefix+"logout", c.logout)
	mux.HandleFunc("GET "+Prefix+"oidc/start", c.oidcStart)
	mux.HandleFunc("GET "+Prefix+"oidc/callback", c.oidcCallback)
	page := func(pattern string, f func(http.ResponseWriter, *http.Request, *session)) {
		mux.HandleFunc(pattern, c.signedIn(f))
	}
	page("GET "+Prefix+"{$}", c.tasksPage)
	page("GET "+Prefix+"tasks/{id}", c.taskPage)
	page("GET "+Prefix+"tasks/{id}/files/{name...}", c.download)
	page("POST "+Prefix+"tasks/{id}/{action}", c.decide)
	page("GET "+Prefix+"inbox", c.inboxPage)
	page("GET "+Prefix+"usage", c.usagePage)
	page("GET "+Prefix+"fleet", c.fleetPage)
	page("GET "+Prefix+"access", c.accessPage)
	page("POST "+Prefix+"access", c.requestAccess)
	page("POST "+Prefix+"access/{id}/{action}", c.decideAccess)
	mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "error.html", nil, errorView{Title: "Not found", Message: "There is no such page."})
	})
	return securityHeaders(mux), nil
}

// securityHeaders keeps the pages to their own origin: no framing, no
// script or style from elsewhere, no referrer carrying a task ID out.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		if r.Method == http.MethodPost && !sameOrigin(r) {
			http.Error(w, "cross-origin form posts are refused", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&cacheWriter{ResponseWriter: w, value: fmt.Sprintf("private, max-age=%d", int(d.Seconds()))}, r)
	})
}

// cacheWriter sets Cache-Control as the headers go out, over the
// no-store every other response gets.
type cacheWriter struct {
	http.ResponseWriter
	value string
}

func (w *cacheWriter) WriteHeader(code int) {
	w.Header().Set("Cache-Control", w.value)
	w.ResponseWriter.WriteHeader(code)
}

func (w *cacheWriter) Write(b []byte) (int, error) {
	if w.Header().Get("Cache-Control") != w.value {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// sameOrigin says whether a form post comes from the console's own
// pages: the session cookie is SameSite=Strict already; this also stops
// a post from another site that carries no cookie from signing someone in.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return r.Header.Get("Sec-Fetch-Site") == "" || r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// apiError is an error answer of the API: its status and its message.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

// notAllowed says whether err is the API refusing the user (401, 403).
func notAllowed(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && (ae.Status == http.StatusForbidden || ae.Status == http.StatusUnauthorized)
}

// statusOf is the HTTP status of an API error; 502 for any other error.
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return http.StatusBadGateway
}

// call runs one API request in process as the holder of cred and decodes
// the JSON answer into out.
func (c *Console) call(r *http.Request, cred, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.Context(), method, path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	c.API.ServeHTTP(rec, req)
	if rec.code >= 300 {
		var e struct {
			Error struct{ Type, Message string } `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &e) != nil || e.Error.Message == "" {
			e.Error.Message = strings.TrimSpace(rec.body.String())
		}
		return &apiError{Status: rec.code, Type: e.Error.Type, Message: e.Error.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("the API's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// recorder is the response of an in-process API call.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}
