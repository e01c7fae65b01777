package console

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// idp is the stand-in identity provider: OpenID Connect discovery, an
// authorization endpoint that signs in whoever the test names (no login
// form), a token endpoint that checks the PKCE verifier against the
// challenge, and the JWKS the server verifies ID tokens with.
type idp struct {
	URL      string
	ClientID string
	key      *rsa.PrivateKey
	srv      *http.Server

	mu    sync.Mutex
	user  string
	codes map[string]grant
	// Refused counts token requests refused for a wrong verifier.
	Refused int
}

// grant is what an authorization code stands for.
type grant struct {
	user, challenge, redirect, nonce string
}

func startIDP(clientID string) (*idp, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &idp{URL: "http://" + ln.Addr().String(), ClientID: clientID, key: key, codes: map[string]grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer": p.URL, "authorization_endpoint": p.URL + "/authorize",
			"token_endpoint": p.URL + "/token", "jwks_uri": p.URL + "/jwks",
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "idp-1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = &http.Server{Handler: mux}
	go p.srv.Serve(ln)
	return p, nil
}

// SignInAs makes the next authorization sign in user.
func (p *idp) SignInAs(user string) {
	p.mu.Lock()
	p.user = user
	p.mu.Unlock()
}

func (p *idp) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != p.ClientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	code := base64.RawURLEncoding.EncodeToString(b)
	p.mu.Lock()
	p.codes[code] = grant{user: p.user, challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri"), nonce: q.Get("nonce")}
	p.mu.Unlock()
	back, _ := url.Parse(q.Get("redirect_uri"))
	back.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (p *idp) token(w http.ResponseWriter, r *http.Request) {
	code, verifier := r.PostFormValue("code"), r.PostFormValue("code_verifier")
	p.mu.Lock()
	g, ok := p.codes[code]
	delete(p.codes, code)
	sum := sha256.Sum256([]byte(verifier))
	if ok && base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		ok = false
		p.Refused++
	}
	p.mu.Unlock()
	if !ok || r.PostFormValue("redirect_uri") != g.redirect || r.PostFormValue("client_id") != p.ClientID {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
		return
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "idp-1"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: p.URL, Audience: jwt.Audience{p.ClientID}, Subject: g.user,
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now),
	}).Claims(map[string]any{"nonce": g.nonce}).Serialize()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"id_token": tok, "token_type": "Bearer", "expires_in": 3600})
}

func (p *idp) Close() { p.srv.Close() }
