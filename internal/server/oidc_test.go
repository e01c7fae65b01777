package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
)

// TestOIDC: a JWT of the identity provider (a stand-in serving its JWKS)
// authenticates the user its user claim names; a token of another issuer
// or audience, expired, without expiry, or signed by a key not in the
// JWKS is 401.
func TestOIDC(t *testing.T) {
	idpKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rogueKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	var fetches atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &idpKey.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	}))
	defer idp.Close()
	const issuer, audience = "https://idp.test", "autoglm"
	sign := func(key *rsa.PrivateKey, kid string, c jwt.Claims, extra map[string]any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(c).Claims(extra).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	good := jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Subject: "u-1", Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}
	email := map[string]any{"email": "bob"}

	s := &Server{Policy: authz.Static(authz.Default()), OIDC: &OIDC{Issuer: issuer, Audience: audience, JWKSURL: idp.URL, UserClaim: "email"}}
	h := s.Handler()
	whoami := func(token string) (int, string) {
		req := httptest.NewRequest("GET", "/api/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := whoami(sign(idpKey, "k1", good, email)); code != http.StatusOK || !strings.Contains(body, `"user":"bob"`) || !strings.Contains(body, `"tenant":"demo"`) {
		t.Fatalf("a good token: %d %s", code, body)
	}
	otherIss, otherAud, expired, noExp := good, good, good, good
	otherIss.Issuer = "https://evil.test"
	otherAud.Audience = jwt.Audience{"someone-else"}
	expired.Expiry = jwt.NewNumericDate(now.Add(-time.Hour))
	noExp.Expiry = nil
	for name, tok := range map[string]string{
		"other issuer":   sign(idpKey, "k1", otherIss, email),
		"other audience": sign(idpKey, "k1", otherAud, email),
		"expired":        sign(idpKey, "k1", expired, email),
		"no expiry":      sign(idpKey, "k1", noExp, email),
		"rogue key":      sign(rogueKey, "k1", good, email),
		"no user claim":  sign(idpKey, "k1", good, nil),
		"garbage":        "a.b.c",
	} {
		if code, body := whoami(tok); code != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, code, body)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("the JWKS was fetched %d times, want once (cached)", n)
	}
}

// TestOIDCWhileTheProviderIsDown: the stand-in identity provider hangs on
// every fetch once its key set is old. Requests with tokens of a known
// key still authenticate at once with the last good key set (they would
// block on the hung fetch otherwise); only one fetch is in flight for all
// of them; after it fails the next waits for the backoff; an oversized
// key set is refused and the good one kept.
func TestOIDCWhileTheProviderIsDown(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	good, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	var fetches atomic.Int32
	var mode atomic.Int32 // 0 up, 1 hang until release, 2 oversized
	release, arrived := make(chan struct{}), make(chan struct{}, 8)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		switch mode.Load() {
		case 1:
			arrived <- struct{}{}
			<-release
			http.Error(w, "down", http.StatusServiceUnavailable)
		case 2:
			_, _ = w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", jwksMaxBytes) + `"}`))
		default:
			_, _ = w.Write(good)
		}
	}))
	defer idp.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	const issuer, audience = "https://idp.test", "autoglm"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Subject: "bob", Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	o := &OIDC{Issuer: issuer, Audience: audience, JWKSURL: idp.URL}
	ctx := context.Background()
	if u, err := o.User(ctx, tok); err != nil || u != "bob" {
		t.Fatalf("with the provider up: %q, %v", u, err)
	}

	// The key set grows old and the provider hangs.
	mode.Store(1)
	o.mu.Lock()
	o.fetched = now.Add(-2 * jwksMaxAge)
	o.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := o.User(ctx, tok); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait() // returns only if no request waited for the hung fetch
	close(errs)
	for err := range errs {
		t.Errorf("a request while the provider hangs: %v", err)
	}

	// The fetch fails: the next request does not fetch again (backoff)
	// and still authenticates.
	<-arrived
	o.mu.Lock()
	done := o.fetching
	o.mu.Unlock()
	close(release)
	<-done
	if u, err := o.User(ctx, tok); err != nil || u != "bob" {
		t.Fatalf("after the failed fetch: %q, %v", u, err)
	}
	o.mu.Lock()
	backoff, lastErr := o.backoff, o.lastErr
	o.mu.Unlock()
	if n := fetches.Load(); n != 2 || backoff != jwksBackoffMin || lastErr == nil {
		t.Errorf("after a failure: %d fetches, backoff %s, error %v; want 2 (one at start, one for the 50 requests), %s, the failure", n, backoff, lastErr, jwksBackoffMin)
	}

	// Past the backoff the provider answers with a key set over the bound:
	// refused, the good set kept.
	mode.Store(2)
	o.mu.Lock()
	o.nextTry = time.Time{}
	o.mu.Unlock()
	if u, err := o.User(ctx, tok); err != nil || u != "bob" {
		t.Fatalf("while the provider sends too much: %q, %v", u, err)
	}
	o.mu.Lock()
	done = o.fetching
	o.mu.Unlock()
	if done != nil {
		<-done
	}
	o.mu.Lock()
	lastErr, backoff = o.lastErr, o.backoff
	o.mu.Unlock()
	if lastErr == nil || !strings.Contains(lastErr.Error(), "over") || backoff != 2*jwksBackoffMin {
		t.Errorf("an oversized JWKS: error %v, backoff %s; want refused, %s", lastErr, backoff, 2*jwksBackoffMin)
	}
	if u, err := o.User(ctx, tok); err != nil || u != "bob" {
		t.Fatalf("the good key set was not kept: %q, %v", u, err)
	}

	// A server that never had a key set answers at once with an error
	// while it backs off, instead of fetching for every request.
	fresh := &OIDC{Issuer: issuer, Audience: audience, JWKSURL: idp.URL}
	before := fetches.Load()
	for range 5 {
		if _, err := fresh.User(ctx, tok); err == nil || httpStatus(err) != http.StatusBadGateway {
			t.Fatalf("no key set and the provider failing: %v (status %d), want 502", err, httpStatus(err))
		}
	}
	if n := fetches.Load() - before; n != 1 {
		t.Errorf("%d fetches for 5 requests without a key set, want 1 (then backoff)", n)
	}
}
