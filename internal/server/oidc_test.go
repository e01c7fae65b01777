package server

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
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
