package authserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mcp-gateway/gateway/metadata"
	"github.com/mcp-gateway/gateway/proxy/clientaddr"
)

// The endpoints for a person in a browser: /authorize, with its consent page and form, and /callback.

// authorize validates an authorization request, asks for consent when this browser has not given it for the client
// and redirect URI, and redirects to the upstream authorization endpoint. POST is the consent form.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return s.authorizeRequest(w, r, r.URL.Query(), false)
	case http.MethodPost:
		return s.consentDecision(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		return pageError(http.StatusMethodNotAllowed, "Method not allowed", "Open this address in a browser.")
	}
}

// authRequest is an authorization request whose client and redirect URI are known.
type authRequest struct {
	clientID    string
	reg         registration
	host        string // the metadata document URL's host, for a client identified by one; "" for a registered client
	registered  string // the registered redirect URI that redirectURI matched: consent is remembered for it
	redirectURI string
	state       string // the client's
	// trusted is whether this browser allowed the client to use the redirect URI, so that errors may be sent there.
	trusted bool
}

// authorizeRequest handles the request's parameters q. consented is true after the consent form.
func (s *Server) authorizeRequest(w http.ResponseWriter, r *http.Request, q url.Values, consented bool) error {
	a, e := s.authorizeClient(r, q)
	if e != nil {
		return e
	}
	// Errors go back to the client only when this browser has allowed it to use this redirect URI: anyone can register
	// any redirect URI, and an error redirect to it without consent would make the gateway an open redirector
	// (RFC 9700 §4.11.2).
	a.trusted = consented || s.hasConsent(r, consentDigest(a.clientID, a.registered))
	as, scopes, e := s.checkAuthorization(q)
	if e != nil {
		return s.refuseAuthorization(a, e)
	}
	if !a.trusted {
		if strings.Contains(" "+q.Get("prompt")+" ", " none ") {
			return s.refuseAuthorization(a, oauthErr(400, "consent_required", "the user has not allowed this application yet"))
		}
		s.consentPage(w, r, a, q, scopes)
		return nil
	}
	return s.redirectUpstream(w, r, a, q, as, scopes)
}

// authorizeClient finds the client of an authorization request and the redirect URI to answer at. Its errors are
// pages: until both are known, there is nowhere an error may be sent.
func (s *Server) authorizeClient(r *http.Request, q url.Values) (authRequest, *oauthError) {
	if len(q["client_id"]) > 1 || len(q["redirect_uri"]) > 1 {
		return authRequest{}, pageError(http.StatusBadRequest, "Invalid request", "The application sent a malformed sign-in request (a parameter is repeated).")
	}
	clientID := q.Get("client_id")
	reg, host, e := s.clientFor(r, clientID)
	if e != nil {
		return authRequest{}, e
	}
	registered, redirectURI, ok := resolveRedirectURI(reg, q.Get("redirect_uri"))
	if !ok {
		return authRequest{}, pageError(http.StatusBadRequest, "Redirect address mismatch",
			"The application asked to be sent back to an address it did not register. Nothing was done. "+
				"If you develop this application, send one of the redirect_uris it registered.")
	}
	return authRequest{clientID: clientID, reg: reg, host: host, registered: registered, redirectURI: redirectURI, state: q.Get("state")}, nil
}

// checkAuthorization checks what an authorization request asks for, and returns the authorization server's metadata
// and the scopes to ask it for.
func (s *Server) checkAuthorization(q url.Values) (*metadata.AuthServer, []string, *oauthError) {
	if e := checkAuthorizeParams(q); e != nil {
		return nil, nil, e
	}
	if e := checkResource(q["resource"], s.cfg.Resource); e != nil {
		return nil, nil, e
	}
	as := s.upstream()
	if as == nil {
		return nil, nil, oauthErr(503, "temporarily_unavailable", "the authorization server is not reachable yet; try again shortly")
	}
	scopes, e := s.scopePolicy(as).settle(q.Get("scope"))
	if e != nil {
		return nil, nil, e
	}
	return as, scopes, nil
}

// refuseAuthorization sends e to the client at its redirect URI when this browser allowed that, and shows it on a page
// otherwise.
func (s *Server) refuseAuthorization(a authRequest, e *oauthError) *oauthError {
	if !a.trusted {
		return pageError(http.StatusBadRequest, "Invalid sign-in request",
			"The application sent a sign-in request this gateway cannot serve: "+e.Description+". Nothing was done.", e.Attrs...)
	}
	e.RedirectTo = clientRedirectURL(a.redirectURI, a.state, s.issuer, callbackParams{Error: e.Code, ErrorDescription: e.Description})
	return e
}

// redirectUpstream mints a state for a consented request and sends the browser to the upstream authorization endpoint.
func (s *Server) redirectUpstream(w http.ResponseWriter, r *http.Request, a authRequest, q url.Values, as *metadata.AuthServer, scopes []string) error {
	// A state is minted only here: limited per client id and per address, so that no one can mint them in a loop.
	now := s.now()
	for _, l := range []struct {
		lim *rateLimiter
		key string
	}{{s.limits.statesByAddr, clientaddr.Key(r, s.cfg.TrustedProxies)}, {s.limits.statesByClient, clientDigest(a.clientID)}} {
		if ok, wait := l.lim.allow(l.key, now); !ok {
			e := pageError(http.StatusTooManyRequests, "Too many sign-ins",
				"Too many sign-ins were started from this application or this network in the last minute. Nothing was done. Wait a minute and start again from your application.")
			e.RetryAfter = wait
			return e
		}
	}
	browser := s.browserCookie(w, r)
	st := pendingState{ID: randomID(), ClientID: a.clientID, RedirectURI: a.redirectURI, State: a.state,
		Browser: s.seal.mac("browser-binding", browser), Exp: now.Add(stateTTL).Unix()}
	up := url.Values{}
	for k, vs := range q {
		up[k] = vs
	}
	up.Set("resource", s.cfg.Resource)
	up.Del("scope")
	if len(scopes) > 0 {
		up.Set("scope", strings.Join(scopes, " "))
	}
	target, err := upstreamAuthorizeURL(as.AuthorizationEndpoint, up, s.client.ID, s.client.Callback, s.seal.seal("state", st))
	if err != nil {
		return s.refuseAuthorization(a, oauthErr(500, "server_error", "the authorization server's endpoint is unusable",
			slog.String("cause", "upstream authorization endpoint unusable"), slog.String("endpoint", as.AuthorizationEndpoint),
			slog.String("err", err.Error())))
	}
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// clientDigest names a client id in a rate limit, shorter than the id.
func clientDigest(clientID string) string {
	h := sha256.Sum256([]byte(clientID))
	return base64.RawURLEncoding.EncodeToString(h[:12])
}

// randomID returns 16 random bytes, base64url.
func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Cookie names: __Host- with Secure on an https public URL; on a loopback http URL, plain names without Secure.
func (s *Server) cookieName(base string) string {
	if s.secure {
		return "__Host-" + base
	}
	return base
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(name), Value: value, Path: "/", MaxAge: maxAge,
		Secure: s.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// consents returns the (client, redirect URI) digests this browser allowed.
func (s *Server) consents(r *http.Request) []string {
	c, err := r.Cookie(s.cookieName("mcpgw-consent"))
	if err != nil {
		return nil
	}
	var set consentSet
	if s.seal.open("consent", c.Value, &set) != nil || set.Exp < s.now().Unix() {
		return nil
	}
	return set.Clients
}

func (s *Server) hasConsent(r *http.Request, digest string) bool {
	return slices.Contains(s.consents(r), digest)
}

// browserCookieName is the cookie holding a random secret of this browser: the consent form's CSRF token and the
// binding of each state to the browser that started the sign-in are MACs of it.
const browserCookieName = "mcpgw-browser"

// browserCookie returns the browser's secret, setting a new one (for the browser session) when absent.
func (s *Server) browserCookie(w http.ResponseWriter, r *http.Request) string {
	if v, ok := s.browserSecret(r); ok {
		return v
	}
	v := randomID()
	s.setCookie(w, browserCookieName, v, 0)
	return v
}

// browserSecret returns the browser's secret, if it sent one.
func (s *Server) browserSecret(r *http.Request) (string, bool) {
	c, err := r.Cookie(s.cookieName(browserCookieName))
	if err != nil || len(c.Value) < 16 || len(c.Value) > 64 {
		return "", false
	}
	return c.Value, true
}

// consentPage asks the person whether the client may sign them in, with the request sealed in the form.
func (s *Server) consentPage(w http.ResponseWriter, r *http.Request, a authRequest, q url.Values, scopes []string) {
	browser := s.browserCookie(w, r)
	name := a.reg.Name
	if name == "" {
		name = "An unnamed application"
	}
	pending := s.seal.seal("pending", pendingAuth{ClientID: a.clientID, Registered: a.registered, RedirectURI: a.redirectURI,
		Query: q.Encode(), Exp: s.now().Add(pendingTTL).Unix()})
	pageHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	consentTemplate.Execute(w, map[string]any{
		"Client": name, "ResourceName": s.cfg.ResourceName, "Resource": s.cfg.Resource, "Upstream": s.cfg.Issuer, "Scopes": scopes,
		"RedirectURI": a.redirectURI, "ClientHost": a.host, "Action": authorizePath, "Request": pending, "CSRF": s.seal.mac("csrf", browser),
	})
}

// consentDecision handles the consent form: CSRF token bound to the browser's cookie, Origin (when sent) the gateway.
func (s *Server) consentDecision(w http.ResponseWriter, r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, s.issuer) {
		return pageError(http.StatusForbidden, "Request refused", "The form was sent from another site. Nothing was done. Start again from your application.")
	}
	body, e := readRequestBody(r)
	if e != nil {
		return pageError(e.Status, "Invalid request", "The form could not be read.")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return pageError(http.StatusBadRequest, "Invalid request", "The form could not be read.")
	}
	browser, ok := s.browserSecret(r)
	if !ok || !macEqual(form.Get("csrf"), s.seal.mac("csrf", browser)) {
		return pageError(http.StatusForbidden, "Request refused",
			"The consent form was not sent from this browser's consent page (or cookies are off). Nothing was done. Start again from your application.")
	}
	var p pendingAuth
	if s.seal.open("pending", form.Get("request"), &p) != nil || p.Exp < s.now().Unix() {
		return pageError(http.StatusBadRequest, "Expired", "This consent page has expired. Nothing was done. Start again from your application.")
	}
	q, _ := url.ParseQuery(p.Query)
	switch form.Get("decision") {
	case "allow":
		set := consentSet{Clients: withConsent(s.consents(r), consentDigest(p.ClientID, p.Registered)), Exp: s.now().Add(consentTTL).Unix()}
		s.setCookie(w, "mcpgw-consent", s.seal.seal("consent", set), int(consentTTL/time.Second))
		return s.authorizeRequest(w, r, q, true)
	case "deny":
		http.Redirect(w, r, clientRedirectURL(p.RedirectURI, q.Get("state"), s.issuer,
			callbackParams{Error: "access_denied", ErrorDescription: "the user denied the request"}), http.StatusSeeOther)
		return nil
	default:
		return pageError(http.StatusBadRequest, "Invalid request", "Choose Allow or Deny.")
	}
}

// callback receives the upstream's redirect and sends the browser on to the client. Everything that can refuse without
// memory is checked first (see openState). Only then is the state marked used, so that no one but the browser that
// started a sign-in can spend its state.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		return pageError(http.StatusMethodNotAllowed, "Method not allowed", "Open this address in a browser.")
	}
	q := r.URL.Query()
	st, e := s.openState(r, q)
	if e != nil {
		return e
	}
	// Kept a minute past the state's expiry: replicas' clocks may differ by that much.
	fresh, err := s.used.Use(r.Context(), st.ID, time.Unix(st.Exp, 0).Sub(s.now())+time.Minute)
	if err != nil {
		e := pageError(http.StatusServiceUnavailable, "Sign-in cannot complete right now",
			"The gateway cannot check this sign-in response right now. Nothing was done. Reload this page in a moment; "+
				"if it keeps failing, start again from your application.",
			slog.String("cause", "replay_memory_unavailable"), slog.String("err", err.Error()))
		e.RetryAfter = time.Second
		return e
	}
	if !fresh {
		return pageError(http.StatusBadRequest, "Sign-in already used",
			"This sign-in response has been used already. Nothing more was done. Start again from your application.")
	}
	var p callbackParams
	switch {
	case q.Get("error") != "":
		p = callbackParams{Error: oauthErrorCode(q.Get("error")), ErrorDescription: q.Get("error_description")}
		s.note(r, true, slog.String("cause", "upstream_refused"), slog.String("upstream_error", p.Error),
			slog.String("upstream_error_description", errorDescription(p.ErrorDescription)))
	case q.Get("code") == "":
		p = callbackParams{Error: "server_error", ErrorDescription: "the authorization server answered without a code"}
		s.note(r, true, slog.String("cause", "upstream_without_code"))
	default:
		p.Code = s.seal.seal("code", wrappedCode{Code: q.Get("code"), ClientID: st.ClientID, RedirectURI: st.RedirectURI, Exp: s.now().Add(codeTTL).Unix()})
	}
	http.Redirect(w, r, clientRedirectURL(st.RedirectURI, st.State, s.issuer, p), http.StatusFound)
	return nil
}

// openState checks an authorization response without touching the replay memory: the state's seal and expiry, the
// browser that started the sign-in, and the issuer (RFC 9207). Its errors are pages, never redirects.
func (s *Server) openState(r *http.Request, q url.Values) (pendingState, *oauthError) {
	var st pendingState
	if len(q["state"]) != 1 || s.seal.open("state", q.Get("state"), &st) != nil {
		return st, pageError(http.StatusBadRequest, "Invalid sign-in response",
			"This sign-in response was not started by this gateway. Nothing was done. Start again from your application.")
	}
	if st.Exp < s.now().Unix() {
		return st, pageError(http.StatusBadRequest, "Sign-in expired", "This sign-in took too long and has expired. Nothing was done. Start again from your application.")
	}
	// A page, never a redirect: a state opened in a browser that did not start the sign-in must not send that browser
	// to the redirect URI of whoever started it.
	if browser, ok := s.browserSecret(r); !ok || !macEqual(s.seal.mac("browser-binding", browser), st.Browser) {
		return st, pageError(http.StatusBadRequest, "Sign-in started elsewhere",
			"This sign-in was started in another browser (or this browser's cookies were cleared). Nothing was done. "+
				"If you did not start a sign-in, close this page. Otherwise start again from your application, in this browser.",
			slog.String("cause", "state_browser_mismatch"))
	}
	as := s.upstream()
	switch iss, n := q.Get("iss"), len(q["iss"]); {
	case n > 1 || (n == 1 && iss != s.cfg.Issuer):
		return st, pageError(http.StatusBadRequest, "Invalid sign-in response",
			"The sign-in response came from another authorization server. Nothing was done. Start again from your application.",
			slog.String("cause", "foreign_iss"), slog.String("iss", errorDescription(iss)))
	case n == 0 && as != nil && as.AuthorizationResponseIssParameterSupported:
		return st, pageError(http.StatusBadRequest, "Invalid sign-in response",
			"The sign-in response does not say which authorization server sent it, although that server says it always does. Nothing was done. Start again from your application.",
			slog.String("cause", "missing_iss"))
	}
	return st, nil
}
