package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
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
	// HTTP fetches the JWKS; nil is a client with a 10 s timeout.
	HTTP *http.Client

	mu      sync.Mutex
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

// jwksMaxAge is how long a fetched key set is used; an unknown key ID
// refetches sooner, at most once per jwksMinAge, so a key rotation is
// picked up at once and a flood of bad tokens does not flood the provider.
const (
	jwksMaxAge = 10 * time.Minute
	jwksMinAge = 30 * time.Second
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

func (o *OIDC) keySet(ctx context.Context, kid string) (*jose.JSONWebKeySet, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	age := time.Since(o.fetched)
	stale := o.keys == nil || age > jwksMaxAge || (kid != "" && len(o.keys.Key(kid)) == 0 && age > jwksMinAge)
	if !stale {
		return o.keys, nil
	}
	hc := o.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, "GET", o.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = fmt.Errorf("%s", resp.Status)
	}
	if err != nil {
		if o.keys != nil {
			return o.keys, nil // the provider is down: the keys we had still hold
		}
		return nil, fmt.Errorf("fetching the JWKS %s: %w", o.JWKSURL, err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, fmt.Errorf("the JWKS at %s: %w", o.JWKSURL, err)
	}
	o.keys, o.fetched = &set, time.Now()
	return o.keys, nil
}
