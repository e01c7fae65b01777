package codec

import (
	"net/http"
	"strings"

	"go.temporal.io/sdk/converter"
)

// NamespaceHeader is the header the Temporal Web UI and CLI send with a
// codec request, naming the namespace whose payloads they show.
const NamespaceHeader = "X-Namespace"

// HandlerOptions configure the codec endpoint.
type HandlerOptions struct {
	Codec *Codec
	// Authenticate says who the caller is, from its credentials (the
	// server's API keys); an error refuses the request with 401.
	Authenticate func(*http.Request) (user string, err error)
	// Allowed, if set, says whether an authenticated user may read this
	// namespace's payloads; a false refuses with 403.
	Allowed func(user string) bool
	// Namespace is the only namespace whose payloads this endpoint opens.
	Namespace string
	// Origins are the Web UI origins (scheme://host:port) a browser may
	// call from; the UI sends the user's credentials, so "*" is refused.
	Origins []string
	// MaxBodyBytes bounds a request's body (DefaultMaxBodyBytes if 0): a
	// body past it is refused with 413 before it is read.
	MaxBodyBytes int64
}

// DefaultMaxBodyBytes bounds a codec request: the payloads the Web UI
// shows at once, each at most Temporal's 2 MiB, JSON-encoded.
const DefaultMaxBodyBytes = 16 << 20

// Handler serves POST /codec/encode and /codec/decode for the Temporal Web
// UI ("Codec Server" setting) and `temporal --codec-endpoint`. Mount it at
// the server's root: it answers only those two paths.
func Handler(o HandlerOptions) http.Handler {
	inner := converter.NewPayloadCodecHTTPHandler(o.Codec)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/codec/encode" && r.URL.Path != "/codec/decode" {
			http.NotFound(w, r)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && origin != "*" && contains(o.Origins, origin) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, "+NamespaceHeader+", X-CSRF-Token")
			h.Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			// The browser's preflight carries no credentials.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		if o.Authenticate == nil {
			http.Error(w, "no authentication is configured", http.StatusUnauthorized)
			return
		}
		user, err := o.Authenticate(r)
		if err != nil || user == "" {
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		if ns := r.Header.Get(NamespaceHeader); ns != o.Namespace {
			http.Error(w, "this codec endpoint serves namespace "+o.Namespace+" only", http.StatusForbidden)
			return
		}
		if o.Allowed != nil && !o.Allowed(user) {
			http.Error(w, user+" may not read this namespace's payloads", http.StatusForbidden)
			return
		}
		limit := o.MaxBodyBytes
		if limit <= 0 {
			limit = DefaultMaxBodyBytes
		}
		if r.ContentLength > limit {
			http.Error(w, "the body is over the codec endpoint's limit", http.StatusRequestEntityTooLarge)
			return
		}
		// A body sent without a length stops at the limit: the decoder
		// then fails and the handler answers 400.
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		inner.ServeHTTP(w, r)
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(strings.TrimRight(v, "/"), s) {
			return true
		}
	}
	return false
}
