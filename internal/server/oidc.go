package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// OIDC accepts JWTs of an identity provider beside API keys: signed by a
// key of its JWKS, from its issuer, for this audience, unexpired. The
// user is the claim UserClaim names (default "sub"); nothing else in the
// token or the request changes who it is.
type OIDC struct {
	Issuer    string
	Audience  string
	JWKSURL   string
	UserClaim string
	// HTTP fetches the JWKS; nil is a client with a jwksFetchTimeout.
	HTTP *http.Client

	// The key set is fetched on a goroutine of its own, never under mu
	// and never on a request's context: requests use the last good set
	// while a fetch runs, and wait for one only when they have no key to
	// check their token with.
	mu       sync.Mutex
	keys     *jose.JSONWebKeySet
	fetched  time.Time
	fetching chan struct{} // closed when the fetch in flight ends; nil if none
	lastErr  error         // why the last fetch failed, until one succeeds
	backoff  time.Duration // the wait after the last failure
	nextTry  time.Time     // no fetch before this, after a failure
}

// jwksMaxAge is how long a fetched key set is used; an unknown key ID
// refetches sooner, at most once per jwksMinAge, so a key rotation is
// picked up at once and a flood of bad tokens does not flood the provider.
// A failed fetch is retried after jwksBackoffMin, doubling to
// jwksBackoffMax, and the last good key set stays in use meanwhile.
const (
	jwksMaxAge       = 10 * time.Minute
	jwksMinAge       = 30 * time.Second
	jwksBackoffMin   = time.Second
	jwksBackoffMax   = 5 * time.Minute
	jwksFetchTimeout = 10 * time.Second
	// jwksMaxBytes bounds the JWKS document: a few keys are a few KiB.
	jwksMaxBytes = 1 << 20
)

var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}

// looksLikeJWT tells a JWT (three base64url parts) from an API key.
func looksLikeJWT(token string) bool { return strings.Count(token, ".") == 2 }

// User verifies token and returns the user it names.
func (o *OIDC) User(ctx context.Context, token string) (string, error) {
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		return "", fmt.Errorf("%w: the token is not a signed JWT", errUnauthenticated)
	}
	kid := ""
	if len(tok.Headers) > 0 {
		kid = tok.Headers[0].KeyID
	}
	keys, err := o.keySet(ctx, kid)
	if err != nil {
		return "", err
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(keys, &std, &all); err != nil {
		return "", fmt.Errorf("%w: the token's signature does not verify", errUnauthenticated)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: o.Issuer, AnyAudience: jwt.Audience{o.Audience}, Time: time.Now()}, 30*time.Second); err != nil {
		return "", fmt.Errorf("%w: the token is not valid here: %v", errUnauthenticated, err)
	}
	if std.Expiry == nil {
		return "", fmt.Errorf("%w: the token has no expiry", errUnauthenticated)
	}
	claim := o.UserClaim
	if claim == "" {
		claim = "sub"
	}
	user, _ := all[claim].(string)
	if user == "" {
		return "", fmt.Errorf("%w: the token has no %q claim", errUnauthenticated, claim)
	}
	return user, nil
}

// keySet is the key set to check a token signed with key kid. It
// starts a fetch when the set is missing, old, or lacks kid (within the
// limits above), and waits for it only when it has no set at all or lacks
// kid; otherwise the last good set answers at once.
func (o *OIDC) keySet(ctx context.Context, kid string) (*jose.JSONWebKeySet, error) {
	o.mu.Lock()
	now := time.Now()
	age := now.Sub(o.fetched)
	unknown := o.keys != nil && kid != "" && len(o.keys.Key(kid)) == 0
	stale := o.keys == nil || age > jwksMaxAge || (unknown && age > jwksMinAge)
	if stale && o.fetching == nil && !now.Before(o.nextTry) {
		o.fetching = make(chan struct{})
		go o.fetch(o.fetching)
	}
	keys, wait, lastErr := o.keys, o.fetching, o.lastErr
	o.mu.Unlock()
	if wait == nil || (keys != nil && !unknown) {
		if keys == nil {
			return nil, task.Errorf(task.UpstreamUnavailable, "the identity provider's keys are not available (%v); retrying with backoff", lastErr)
		}
		return keys, nil
	}
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	o.mu.Lock()
	keys, lastErr = o.keys, o.lastErr
	o.mu.Unlock()
	if keys == nil {
		return nil, task.Errorf(task.UpstreamUnavailable, "the identity provider's keys are not available (%v); retrying with backoff", lastErr)
	}
	return keys, nil
}

// fetch reads the JWKS and installs it, or on failure keeps the set there
// was and backs off; done is closed at the end.
func (o *OIDC) fetch(done chan struct{}) {
	set, err := o.get()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil {
		o.keys, o.fetched, o.lastErr, o.backoff, o.nextTry = set, time.Now(), nil, 0, time.Time{}
	} else {
		o.backoff = min(max(2*o.backoff, jwksBackoffMin), jwksBackoffMax)
		o.lastErr, o.nextTry = err, time.Now().Add(o.backoff)
	}
	o.fetching = nil
	close(done)
}

func (o *OIDC) get() (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), jwksFetchTimeout)
	defer cancel()
	hc := o.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: jwksFetchTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, "GET", o.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the JWKS: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the JWKS: %w", err)
	}
	if len(b) > jwksMaxBytes {
		return nil, fmt.Errorf("the JWKS is over %d bytes", jwksMaxBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("the JWKS: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("the JWKS holds no key")
	}
	return &set, nil
}
