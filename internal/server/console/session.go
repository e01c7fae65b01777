package console

import (
	"net/http"
	"slices"
	"sort"
	"time"
)

// sessionCookie holds the signed-in user's credential: an API key or the
// identity provider's ID token. HttpOnly, so no script reads it;
// SameSite=Strict, so no other site's page sends it; scoped to the
// console's path. No page ever renders it.
const sessionCookie = "autoglm_console"

// sessionAge is how long a browser stays signed in with an API key; an
// ID token's own expiry ends its session sooner.
const sessionAge = 8 * time.Hour

// whoami is the API's answer to GET /api/v1/whoami.
type whoami struct {
	User    string              `json:"user"`
	Tenant  string              `json:"tenant"`
	Tenants map[string][]string `json:"tenants"`
}

// session is the signed-in user as the API knows them.
type session struct {
	cred string
	whoami
}

// TenantNames are the user's tenants, sorted.
func (s *session) TenantNames() []string {
	var out []string
	for t := range s.Tenants {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Has says whether the user has any of roles in some tenant.
func (s *session) Has(roles ...string) bool {
	for _, rs := range s.Tenants {
		for _, r := range rs {
			if slices.Contains(roles, r) {
				return true
			}
		}
	}
	return false
}

// HasIn says whether the user has any of roles in tenant.
func (s *session) HasIn(tenant string, roles ...string) bool {
	for _, r := range s.Tenants[tenant] {
		if slices.Contains(roles, r) {
			return true
		}
	}
	return false
}

// signedIn runs f for a signed-in user; anyone else goes to the sign-in
// page and sees nothing of the page they asked for.
func (c *Console) signedIn(f func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(sessionCookie)
		if err != nil || ck.Value == "" {
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		s := &session{cred: ck.Value}
		if err := c.call(r, s.cred, "GET", "/api/v1/whoami", nil, &s.whoami); err != nil {
			if statusOf(err) == http.StatusUnauthorized {
				clearSession(w, r)
				http.Redirect(w, r, Prefix+"login?expired=1", http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, err)
			return
		}
		f(w, r, s)
	}
}

func setSession(w http.ResponseWriter, r *http.Request, cred string, age time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: cred, Path: Prefix, MaxAge: int(age.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// loginView is the sign-in page.
type loginView struct {
	OIDC    bool
	Issuer  string
	Message string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	v := loginView{OIDC: c.OIDC != nil}
	if c.OIDC != nil {
		v.Issuer = c.OIDC.Issuer
	}
	if r.URL.Query().Get("expired") != "" {
		v.Message = "Your session has ended; sign in again."
	}
	c.render(w, r, http.StatusOK, "login.html", nil, v)
}

// loginKey signs in with an API key, for development: the key is checked
// by the API (whoami) before it is kept.
func (c *Console) loginKey(w http.ResponseWriter, r *http.Request) {
	key := r.PostFormValue("key")
	var who whoami
	if key == "" {
		c.render(w, r, http.StatusUnauthorized, "login.html", nil, loginView{OIDC: c.OIDC != nil, Message: "Enter an API key."})
		return
	}
	if err := c.call(r, key, "GET", "/api/v1/whoami", nil, &who); err != nil {
		c.render(w, r, statusOf(err), "login.html", nil, loginView{OIDC: c.OIDC != nil, Message: "That key was not accepted: " + err.Error()})
		return
	}
	setSession(w, r, key, sessionAge)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	clearSession(w, r)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}
