package devauth

import (
	"crypto/subtle"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// browserCookie binds an interaction to the browser that started it; with the form's csrf_token it makes the sign-in
// and consent forms unusable from any other site or browser.
const browserCookie = "devauth_browser"

// maxFormLen bounds the body of the sign-in and consent forms.
const maxFormLen = 16 << 10

// authError is a refused authorization request. When redirect is false the client or its redirect URI could not be
// trusted, so the error is shown to the user instead of being sent to the client (RFC 6749 §4.1.2.1).
type authError struct {
	code        string
	description string
	redirect    bool
}

// parseAuthRequest validates the parameters of an authorization request.
func (s *Server) parseAuthRequest(q url.Values) (authRequest, *authError) {
	var req authRequest
	var err error
	if len(q["client_id"]) > 1 || len(q["redirect_uri"]) > 1 {
		return req, &authError{"invalid_request", "client_id and redirect_uri must not be repeated", false}
	}
	req.clientID = q.Get("client_id")
	if req.client, err = parseClientID(req.clientID); err != nil {
		return req, &authError{"invalid_client", "unknown client_id: register the client first (Dynamic Client Registration)", false}
	}
	if req.redirectURI, err = req.client.redirectURI(q.Get("redirect_uri")); err != nil {
		return req, &authError{"invalid_request", err.Error(), false}
	}
	req.redirectGiven = q.Has("redirect_uri")
	for k, v := range q {
		if len(v) > 1 && k != "resource" {
			return req, &authError{"invalid_request", fmt.Sprintf("parameter %s is repeated", k), true}
		}
	}
	req.state = q.Get("state")
	req.nonce = q.Get("nonce")

	if rt := q.Get("response_type"); rt != "code" {
		return req, &authError{"unsupported_response_type", "response_type must be code", true}
	}
	req.challenge = q.Get("code_challenge")
	switch m := q.Get("code_challenge_method"); {
	case req.challenge == "":
		return req, &authError{"invalid_request", "PKCE is required: send code_challenge and code_challenge_method=S256", true}
	case m != "S256":
		return req, &authError{"invalid_request", "code_challenge_method must be S256 (plain is not accepted)", true}
	case len(req.challenge) != 43 || !isUnreserved(req.challenge):
		return req, &authError{"invalid_request", "code_challenge must be the base64url SHA-256 of the code verifier (43 characters)", true}
	}
	scope := q.Get("scope")
	if strings.TrimSpace(scope) == "" {
		scope = defaultScope
	}
	for _, sc := range strings.Fields(scope) {
		if !validScope(sc) {
			return req, &authError{"invalid_scope", "scope contains an invalid character", true}
		}
		if !slices.Contains(req.scope, sc) {
			req.scope = append(req.scope, sc)
		}
	}
	resource, rerr := resourceOf(q["resource"], s.resource)
	if rerr != nil {
		return req, rerr
	}
	req.resource = resource
	return req, nil
}

// resourceOf checks the RFC 8707 resource parameters of a request against want, the one resource this server issues
// tokens for. No parameter means want.
func resourceOf(values []string, want string) (string, *authError) {
	for _, v := range values {
		if v != want {
			return "", &authError{"invalid_target", fmt.Sprintf("this server issues tokens for the resource %s only", want), true}
		}
	}
	return want, nil
}

// authorize is the authorization endpoint. A valid request becomes an interaction (sign-in, then consent) in this
// browser, or, with AutoLogin, a code at once.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req, aerr := s.parseAuthRequest(q)
	if aerr != nil {
		s.log.Info("authorization refused", "error_code", aerr.code, "reason", aerr.description)
		if !aerr.redirect {
			s.errorPage(w, http.StatusBadRequest, "This authorization request cannot be served", aerr.description)
			return
		}
		s.redirectError(w, r, req, aerr.code, aerr.description, http.StatusFound)
		return
	}
	if s.autoLogin != nil {
		s.grantCode(w, r, req, *s.autoLogin, http.StatusFound)
		return
	}
	if q.Get("prompt") == "none" {
		s.redirectError(w, r, req, "login_required", "the user must sign in", http.StatusFound)
		return
	}

	browser := ""
	if c, err := r.Cookie(browserCookie); err == nil && len(c.Value) == 43 && isUnreserved(c.Value) {
		browser = c.Value
	} else {
		browser = randomToken(32)
	}
	id := randomToken(18)
	now := s.now()
	s.mu.Lock()
	err := s.state.room(now)
	if err == nil {
		s.state.interactions[id] = &interaction{req: req, browser: browser, csrf: randomToken(32), expires: now.Add(DefaultInteractionTTL)}
	}
	s.mu.Unlock()
	if err != nil {
		s.errorPage(w, http.StatusServiceUnavailable, "Too many sign-ins in progress", err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: browserCookie, Value: browser, Path: "/interaction/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		MaxAge: int(DefaultInteractionTTL.Seconds()),
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/interaction/"+id, http.StatusSeeOther)
}

// liveInteraction returns a copy of interaction id while it has not expired; otherwise it answers with the expiry page.
func (s *Server) liveInteraction(w http.ResponseWriter, id string) (interaction, bool) {
	s.mu.Lock()
	i, ok := s.state.interactions[id]
	var snap interaction
	if ok && s.now().Before(i.expires) {
		snap = *i
	}
	s.mu.Unlock()
	if snap.expires.IsZero() {
		s.errorPage(w, http.StatusNotFound, "This sign-in has expired", "It was finished, cancelled or left too long. Start again from your MCP client.")
		return interaction{}, false
	}
	return snap, true
}

// showInteraction renders the sign-in page, or the consent page once a user has signed in.
func (s *Server) showInteraction(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	snap, ok := s.liveInteraction(w, id)
	if !ok {
		return
	}
	data := pageData{
		ID: id, CSRF: snap.csrf, Client: snap.req.client.displayName(), RedirectURI: snap.req.redirectURI,
		Resource: snap.req.resource, Scopes: snap.req.scope, Users: s.users, User: snap.user,
	}
	if snap.user == nil {
		s.render(w, http.StatusOK, signInPage, data)
		return
	}
	s.render(w, http.StatusOK, consentPage, data)
}

// form checks a POST to an interaction: the interaction is live, and the request comes with its browser cookie and
// its csrf_token. It returns a copy of the interaction.
func (s *Server) form(w http.ResponseWriter, r *http.Request) (string, interaction, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormLen)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "The form could not be read", "Start again from your MCP client.")
		return "", interaction{}, false
	}
	id := r.PathValue("id")
	cookie, cerr := r.Cookie(browserCookie)
	snap, ok := s.liveInteraction(w, id)
	if !ok {
		return "", interaction{}, false
	}
	if cerr != nil || !equal(cookie.Value, snap.browser) || !equal(r.PostForm.Get("csrf_token"), snap.csrf) {
		s.log.Warn("form refused: browser cookie or csrf_token missing or wrong", "interaction", id)
		s.errorPage(w, http.StatusForbidden, "The form could not be verified",
			"It did not come from the sign-in page this browser opened (CSRF protection). Cookies must be enabled. Start again from your MCP client.")
		return "", interaction{}, false
	}
	return id, snap, true
}

// signIn records the user chosen on the sign-in page and shows the consent page.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.form(w, r)
	if !ok {
		return
	}
	u, found := s.findUser(r.PostForm.Get("user"))
	if !found || u.ID != r.PostForm.Get("user") {
		s.errorPage(w, http.StatusBadRequest, "No such user", "Choose one of the users on the sign-in page.")
		return
	}
	s.mu.Lock()
	if i, ok := s.state.interactions[id]; ok {
		i.user = &u
	}
	s.mu.Unlock()
	http.Redirect(w, r, "/interaction/"+id, http.StatusSeeOther)
}

// consent ends an interaction: allow sends a code to the client, deny sends access_denied.
func (s *Server) consent(w http.ResponseWriter, r *http.Request) {
	id, snap, ok := s.form(w, r)
	if !ok {
		return
	}
	if snap.user == nil {
		http.Redirect(w, r, "/interaction/"+id, http.StatusSeeOther)
		return
	}
	decision := r.PostForm.Get("decision")
	if decision != "allow" && decision != "deny" {
		s.errorPage(w, http.StatusBadRequest, "No decision", "Choose Allow or Deny.")
		return
	}
	s.mu.Lock()
	_, live := s.state.interactions[id]
	delete(s.state.interactions, id)
	s.mu.Unlock()
	if !live { // finished by a concurrent submission
		s.errorPage(w, http.StatusNotFound, "This sign-in has expired", "It was already finished. Start again from your MCP client.")
		return
	}
	if decision == "deny" {
		s.log.Info("authorization denied by the user", "user", snap.user.ID, "client_name", snap.req.client.Name)
		s.redirectError(w, r, snap.req, "access_denied", "the user denied access", http.StatusSeeOther)
		return
	}
	s.grantCode(w, r, snap.req, *snap.user, http.StatusSeeOther)
}

// grantCode issues an authorization code for req and user and redirects to the client with it.
func (s *Server) grantCode(w http.ResponseWriter, r *http.Request, req authRequest, u User, status int) {
	code := randomToken(32)
	now := s.now()
	s.mu.Lock()
	err := s.state.room(now)
	if err == nil {
		s.state.codes[code] = &codeEntry{
			grant: grant{family: randomToken(16), clientID: req.clientID, user: u, scope: req.scope, resource: req.resource,
				sid: "session_" + ulid(), nonce: req.nonce},
			redirectURI: req.redirectURI, redirectGiven: req.redirectGiven, challenge: req.challenge, expires: now.Add(s.codeTTL),
		}
	}
	s.mu.Unlock()
	if err != nil {
		s.redirectError(w, r, req, "temporarily_unavailable", err.Error(), status)
		return
	}
	s.log.Info("authorization granted", "user", u.ID, "client_name", req.client.Name, "resource", req.resource, "scope", strings.Join(req.scope, " "))
	s.redirect(w, r, req.redirectURI, url.Values{"code": {code}}, req.state, status)
}

// redirectError sends an authorization error to the client's redirect URI.
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, req authRequest, code, description string, status int) {
	s.redirect(w, r, req.redirectURI, url.Values{"error": {code}, "error_description": {description}}, req.state, status)
}

// redirect sends the browser to target with params, state and iss (RFC 9207) added to its query.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, target string, params url.Values, state string, status int) {
	u, err := url.Parse(target)
	if err != nil { // registered URIs were checked; cannot happen
		s.errorPage(w, http.StatusBadRequest, "Bad redirect URI", "The client's redirect URI cannot be parsed.")
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.issuer)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), status)
}

// pageData is what the pages show.
type pageData struct {
	ID, CSRF    string
	Client      string
	RedirectURI string
	Resource    string
	Scopes      []string
	Users       []User
	User        *User
	Title       string
	Message     string
}

// render writes a page with headers that forbid framing, scripts and caching.
func (s *Server) render(w http.ResponseWriter, status int, t *template.Template, data pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if err := t.Execute(w, data); err != nil {
		s.log.Warn("render page", "err", err)
	}
}

func (s *Server) errorPage(w http.ResponseWriter, status int, title, message string) {
	s.render(w, status, errorPage, pageData{Title: title, Message: message})
}

// equal compares secrets in constant time.
func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// isUnreserved reports whether s has only RFC 3986 unreserved characters, the alphabet of PKCE values.
func isUnreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// validScope reports whether s is a scope-token (RFC 6749 §3.3).
func validScope(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return s != ""
}

const pageHead = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{block "title" .}}{{end}} · development authorization server</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #1c1c21; }
main { max-width: 34rem; margin: 3rem auto; background: #fff; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 3px #0002; }
.dev { background: #fff4d6; border: 1px solid #e8c766; padding: .5rem .75rem; border-radius: 4px; font-size: .9rem; }
ul { list-style: none; padding: 0; }
li { margin: .5rem 0; }
button { font: inherit; cursor: pointer; border-radius: 6px; border: 1px solid #bbb; background: #fff; padding: .6rem 1rem; }
.user { width: 100%; text-align: left; }
.user small { display: block; color: #555; }
.allow { background: #1c1c21; color: #fff; border-color: #1c1c21; }
dt { font-weight: 600; margin-top: .5rem; }
code { overflow-wrap: anywhere; }
</style>
</head>
<body>
<main>
<p class="dev">Development authorization server: not for production. There are no passwords; anyone on this machine can sign in as any demo user.</p>
`

const pageFoot = `
</main>
</body>
</html>
`

var (
	signInPage = template.Must(template.New("sign-in").Parse(pageHead + `{{define "title"}}Sign in{{end}}
<h1>Sign in</h1>
<p><strong>{{.Client}}</strong> asks you to sign in for <code>{{.Resource}}</code>. Choose a user:</p>
<form method="post" action="/interaction/{{.ID}}/sign-in">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<ul>
{{range .Users}}<li><button class="user" type="submit" name="user" value="{{.ID}}">{{.Name}}<small>{{.Email}} · {{if .OrgID}}{{.OrgID}}{{else}}no organization{{end}}{{range .Roles}} · {{.}}{{end}}</small></button></li>
{{end}}</ul>
</form>` + pageFoot))

	consentPage = template.Must(template.New("consent").Parse(pageHead + `{{define "title"}}Allow access{{end}}
<h1>Allow access?</h1>
<p>Signed in as <strong>{{.User.Name}}</strong> ({{.User.Email}}).</p>
<p><strong>{{.Client}}</strong> wants to use <code>{{.Resource}}</code> on your behalf.</p>
<dl>
<dt>Client</dt><dd>{{.Client}}</dd>
<dt>Returns to</dt><dd><code>{{.RedirectURI}}</code></dd>
<dt>Scopes</dt><dd>{{range $i, $s := .Scopes}}{{if $i}} {{end}}<code>{{$s}}</code>{{end}}</dd>
</dl>
<form method="post" action="/interaction/{{.ID}}/consent">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<button class="allow" type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>` + pageFoot))

	errorPage = template.Must(template.New("error").Parse(pageHead + `{{define "title"}}{{.Title}}{{end}}
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>` + pageFoot))
)
