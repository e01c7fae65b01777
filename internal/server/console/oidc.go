package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// OIDCLogin signs users in with the identity provider the server already
// trusts: the authorization code flow with PKCE (S256), as a public
// client. The ID token it gets is the session's credential; the API
// verifies it as it verifies any JWT (issuer, audience, signature,
// expiry), so the console trusts the provider no further than the API does.
type OIDCLogin struct {
	// Issuer is the provider's issuer; its endpoints are discovered from
	// Issuer + "/.well-known/openid-configuration".
	Issuer string
	// ClientID is the console's client at the provider: the audience of
	// the ID tokens the API accepts.
	ClientID string
	// HTTP reaches the provider; nil is a client with a 10 s timeout.
	HTTP *http.Client

	mu        sync.Mutex
	endpoints *oidcEndpoints
}

type oidcEndpoints struct {
	Authorization string `json:"authorization_endpoint"`
	Token         string `json:"token_endpoint"`
}

// flowCookie carries one sign-in's state, nonce and PKCE verifier from
// the redirect to the provider to the callback. SameSite=Lax: the
// callback is a navigation from the provider's site, which a Strict
// cookie would not reach.
const flowCookie = "autoglm_console_oidc"

// flowAge bounds how long a sign-in at the provider may take.
const flowAge = 10 * time.Minute

func (o *OIDCLogin) client() *http.Client {
	if o.HTTP != nil {
		return o.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

func (o *OIDCLogin) discover() (*oidcEndpoints, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.endpoints != nil {
		return o.endpoints, nil
	}
	u := strings.TrimSuffix(o.Issuer, "/") + "/.well-known/openid-configuration"
	resp, err := o.client().Get(u)
	if err != nil {
		return nil, fmt.Errorf("the identity provider is unreachable (%s): %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the identity provider's configuration %s: %s", u, resp.Status)
	}
	var e oidcEndpoints
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e); err != nil || e.Authorization == "" || e.Token == "" {
		return nil, fmt.Errorf("the identity provider's configuration %s names no authorization and token endpoints", u)
	}
	o.endpoints = &e
	return o.endpoints, nil
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// redirectURI is the callback on the host the browser used.
func redirectURI(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + Prefix + "oidc/callback"
}

func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	if c.OIDC == nil {
		http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
		return
	}
	ep, err := c.OIDC.discover()
	if err != nil {
		c.render(w, r, http.StatusBadGateway, "login.html", nil, loginView{OIDC: true, Issuer: c.OIDC.Issuer, Message: err.Error()})
		return
	}
	state, nonce, verifier := randomString(), randomString(), randomString()
	http.SetCookie(w, &http.Cookie{
		Name: flowCookie, Value: state + "." + nonce + "." + verifier, Path: Prefix + "oidc/",
		MaxAge: int(flowAge.Seconds()), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {c.OIDC.ClientID}, "redirect_uri": {redirectURI(r)},
		"scope": {"openid"}, "state": {state}, "nonce": {nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	sep := "?"
	if strings.Contains(ep.Authorization, "?") {
		sep = "&"
	}
	http.Redirect(w, r, ep.Authorization+sep+q.Encode(), http.StatusFound)
}

func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	fail := func(msg string) {
		c.render(w, r, http.StatusUnauthorized, "login.html", nil, loginView{OIDC: c.OIDC != nil, Message: msg})
	}
	if c.OIDC == nil {
		fail("Sign-in with an identity provider is not set up on this server.")
		return
	}
	ck, err := r.Cookie(flowCookie)
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Path: Prefix + "oidc/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	parts := []string{}
	if err == nil {
		parts = strings.Split(ck.Value, ".")
	}
	q := r.URL.Query()
	if len(parts) != 3 || subtle.ConstantTimeCompare([]byte(parts[0]), []byte(q.Get("state"))) != 1 {
		fail("The sign-in did not start here, or took too long; try again.")
		return
	}
	if e := q.Get("error"); e != "" {
		fail("The identity provider refused the sign-in: " + e + " " + q.Get("error_description"))
		return
	}
	idToken, err := c.exchange(r, q.Get("code"), parts[2])
	if err != nil {
		fail(err.Error())
		return
	}
	if claimOf(idToken, "nonce") != parts[1] {
		fail("The identity provider's token is not for this sign-in (nonce); try again.")
		return
	}
	var who whoami
	if err := c.call(r, idToken, "GET", "/api/v1/whoami", nil, &who); err != nil {
		fail("The server did not accept the identity provider's token: " + err.Error())
		return
	}
	setSession(w, r, idToken, sessionAge)
	// A Strict cookie set on a navigation that came from the provider's
	// site is not sent on a redirect of that same navigation: a page of
	// ours moves on, as a same-site navigation.
	c.render(w, r, http.StatusOK, "signedin.html", nil, struct{ Next template.URL }{Prefix})
}

// exchange trades the code for the ID token at the token endpoint,
// proving with the verifier that this is the browser that started.
func (c *Console) exchange(r *http.Request, code, verifier string) (string, error) {
	ep, err := c.OIDC.discover()
	if err != nil {
		return "", err
	}
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI(r)},
		"client_id": {c.OIDC.ClientID}, "code_verifier": {verifier},
	}
	req, err := http.NewRequestWithContext(r.Context(), "POST", ep.Token, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.OIDC.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("the identity provider's token endpoint is unreachable: %w", err)
	}
	defer resp.Body.Close()
	var tok struct {
		IDToken string `json:"id_token"`
		Error   string `json:"error"`
		Desc    string `json:"error_description"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok)
	if resp.StatusCode != http.StatusOK || tok.IDToken == "" {
		return "", fmt.Errorf("the identity provider gave no ID token (%s %s %s)", resp.Status, tok.Error, tok.Desc)
	}
	return tok.IDToken, nil
}

// claimOf reads a string claim of a JWT without verifying it: the API
// verifies the token; this only matches the nonce to the sign-in.
func claimOf(jwt, name string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims map[string]any
	if json.Unmarshal(b, &claims) != nil {
		return ""
	}
	v, _ := claims[name].(string)
	return v
}
