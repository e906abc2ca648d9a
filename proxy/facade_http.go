package proxy

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mcp-gateway/gateway/metadata"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// facade serves the Option B endpoints. See facade.go.
type facade struct {
	issuer       string // the gateway's public URL, its issuer as an authorization server
	upIssuer     string // the upstream authorization server's issuer
	resource     string
	resourceName string
	client       upstreamClient
	seal         *sealer
	used         *usedSet
	now          func() time.Time
	log          *slog.Logger
	http         *http.Client // upstream token requests; never follows redirects
	upstream     *atomic.Pointer[metadata.AuthServer]
	secure       bool           // https public URL: __Host- cookies with Secure
	cfg          *Config        // scopes (GATEWAY_FACADE_SCOPES, GATEWAY_FACADE_DEFAULT_SCOPE, GATEWAY_REQUIRED_SCOPES)
	trusted      []netip.Prefix // GATEWAY_TRUSTED_PROXIES
	limits       facadeLimits
	doc          atomic.Pointer[facadeDoc]
}

// Per-minute limits. A person starts a sign-in a few times a day and a client refreshes once per access-token
// lifetime, so these leave room for many people behind one address; they stop a party that loops /authorize and
// /callback, registers clients by the thousand, or makes the gateway call the token endpoint in a loop. Beyond a limit
// the gateway answers 429 with Retry-After (a page at /authorize) until the minute ends.
const (
	statesPerClient  = 20  // sign-ins started (states minted) per client id
	statesPerAddr    = 120 // sign-ins started per client address
	tokensPerClient  = 60  // token requests sent to the authorization server per client id
	tokensPerAddr    = 600 // token requests sent to the authorization server per client address
	registersPerAddr = 60  // registrations per client address
	// limiterKeys is how many client ids or addresses each limit counts per minute; beyond, new ones pass uncounted.
	limiterKeys = 10_000
	// usedStates is how many used states the replay memory holds; beyond, the oldest are forgotten.
	usedStates = 100_000
)

// facadeLimits are the facade's rate limiters, each bounded by limiterKeys.
type facadeLimits struct {
	statesByClient, statesByAddr, tokensByClient, tokensByAddr, registersByAddr *rateLimiter
}

// facadeDoc is the gateway's authorization server metadata, as built for one upstream document (nil before discovery).
type facadeDoc struct {
	as   *metadata.AuthServer
	body []byte
}

// maxFacadeBody bounds registration, consent and token request bodies.
const maxFacadeBody = 64 << 10

func newFacade(cfg *Config, key []byte, asClient *http.Client, upstream *atomic.Pointer[metadata.AuthServer], now func() time.Time, log *slog.Logger) *facade {
	issuer := cfg.Public.String()
	f := &facade{
		issuer:       issuer,
		upIssuer:     cfg.Issuer,
		resource:     cfg.Resource,
		resourceName: cfg.ResourceName,
		client: upstreamClient{
			ID:         cfg.StaticClientID,
			Secret:     cfg.ClientSecret,
			AuthMethod: cfg.ClientAuthMethod,
			Callback:   issuer + facadeCallbackPath,
		},
		seal:     newSealer(key),
		used:     newUsedSet(usedStates),
		now:      now,
		log:      log,
		upstream: upstream,
		secure:   cfg.Public.Scheme == "https",
		cfg:      cfg,
		trusted:  cfg.TrustedProxyList,
		limits: facadeLimits{
			statesByClient:  newRateLimiter(statesPerClient, limiterKeys),
			statesByAddr:    newRateLimiter(statesPerAddr, limiterKeys),
			tokensByClient:  newRateLimiter(tokensPerClient, limiterKeys),
			tokensByAddr:    newRateLimiter(tokensPerAddr, limiterKeys),
			registersByAddr: newRateLimiter(registersPerAddr, limiterKeys),
		},
	}
	c := *asClient
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	f.http = &c
	return f
}

// scopes returns the facade's scopes for the upstream metadata as (nil before discovery): see Config.FacadeScopesFor.
func (f *facade) scopes(as *metadata.AuthServer) (advertised, resource, fallback []string) {
	var upstream []string
	if as != nil {
		upstream = as.ScopesSupported
	}
	return f.cfg.FacadeScopesFor(upstream)
}

// resourceScopes is the scopes_supported of the protected resource metadata in Option B.
func (f *facade) resourceScopes(as *metadata.AuthServer) []string {
	_, resource, _ := f.scopes(as)
	return resource
}

// scopePolicy is the scope policy for authorization requests: the allow-list, and the scope sent when a client sends
// none.
func (f *facade) scopePolicy(as *metadata.AuthServer) scopePolicy {
	_, _, fallback := f.scopes(as)
	return scopePolicy{allowed: f.cfg.FacadeScopeList, fallback: fallback}
}

// document returns the gateway's authorization server metadata for the current upstream document.
func (f *facade) document() []byte {
	as := f.upstream.Load()
	if d := f.doc.Load(); d != nil && d.as == as {
		return d.body
	}
	doc := map[string]any{
		"issuer":                                         f.issuer,
		"authorization_endpoint":                         f.issuer + facadeAuthorizePath,
		"token_endpoint":                                 f.issuer + facadeTokenPath,
		"registration_endpoint":                          f.issuer + facadeRegisterPath,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          facadeGrantTypes,
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none", "client_secret_basic", "client_secret_post"},
		"authorization_response_iss_parameter_supported": true,
	}
	if scopes, _, _ := f.scopes(as); len(scopes) > 0 {
		doc["scopes_supported"] = scopes
	}
	body, _ := json.MarshalIndent(doc, "", "  ")
	body = append(body, '\n')
	f.doc.Store(&facadeDoc{as: as, body: body})
	return body
}

// facadeGrantTypes are the grant types the facade serves; /token refuses others.
var facadeGrantTypes = []string{"authorization_code", "refresh_token"}

// metadataHandler serves the gateway's own authorization server metadata (RFC 8414), at both well-known paths.
func (f *facade) metadataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			corsPreflight(w, r, "GET, HEAD, OPTIONS")
			return
		default:
			h.Set("Allow", "GET, HEAD, OPTIONS")
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
			return
		}
		doc := f.document()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Content-Length", strconv.Itoa(len(doc)))
		if r.Method == http.MethodGet {
			w.Write(doc)
		}
	})
}

// corsPreflight answers a preflight for a public endpoint that takes no cookies.
func corsPreflight(w http.ResponseWriter, r *http.Request, methods string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", methods)
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// ReasonOAuth labels, in the access log, a request the authorization-server facade refused.
const ReasonOAuth token.Reason = "oauth_refused"

// refused records a refusal for the access log and logs what was refused (fixed texts only).
func (f *facade) refused(r *http.Request, attrs ...any) {
	if st := stateOf(r.Context()); st != nil {
		st.reason = ReasonOAuth
	}
	f.note(r, attrs...)
}

// note puts attrs (key, value pairs) on the request's access line: the facade writes no line of its own per request,
// so that nobody can make it log faster than the access log's budget allows.
func (f *facade) note(r *http.Request, attrs ...any) {
	st := stateOf(r.Context())
	if st == nil {
		f.log.Warn("oauth request", append([]any{"path", r.URL.Path}, attrs...)...)
		return
	}
	for i := 0; i+1 < len(attrs); i += 2 {
		k, _ := attrs[i].(string)
		st.attrs = append(st.attrs, slog.Any(k, attrs[i+1]))
	}
}

// fail answers an OAuth error as JSON (RFC 6749 §5.2).
func (f *facade) fail(w http.ResponseWriter, r *http.Request, e *oauthError) {
	f.refused(r, "error", e.Code, "error_description", e.Description)
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
	}
	writeJSONError(w, e.Status, e.Code, e.Description)
}

// readFacadeBody reads a request body of at most maxFacadeBody bytes.
func readFacadeBody(r *http.Request) ([]byte, *oauthError) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxFacadeBody+1))
	if err != nil {
		return nil, errInvalidRequest("the request body could not be read")
	}
	if len(b) > maxFacadeBody {
		return nil, &oauthError{http.StatusRequestEntityTooLarge, "invalid_request", "the request body is too large"}
	}
	return b, nil
}

// postEndpoint answers what a cross-origin, POST-only endpoint owes before its work: CORS for any origin, nosniff on
// every answer, the preflight, and 405 for other methods. It reports whether the handler should go on.
func postEndpoint(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch r.Method {
	case http.MethodPost:
		return true
	case http.MethodOptions:
		corsPreflight(w, r, "POST, OPTIONS")
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
	}
	return false
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

// limited answers an API request over a per-minute limit: 429, Retry-After and an OAuth-shaped JSON error.
func (f *facade) limited(w http.ResponseWriter, r *http.Request, wait time.Duration, what string) {
	w.Header().Set("Retry-After", retryAfter(wait))
	f.fail(w, r, &oauthError{http.StatusTooManyRequests, "temporarily_unavailable", "too many " + what + " from this client or address; retry after the time in Retry-After"})
}

// register answers Dynamic Client Registration (RFC 7591).
func (f *facade) register(w http.ResponseWriter, r *http.Request) {
	if !postEndpoint(w, r) {
		return
	}
	if ok, wait := f.limits.registersByAddr.allow(clientAddr(r, f.trusted), f.now()); !ok {
		f.limited(w, r, wait, "registrations")
		return
	}
	body, oe := readFacadeBody(r)
	if oe != nil {
		f.fail(w, r, oe)
		return
	}
	reg, meta, oe := parseRegistration(body, f.now())
	if oe != nil {
		f.fail(w, r, oe)
		return
	}
	id := f.seal.clientID(reg)
	meta["client_id"] = id
	meta["client_id_issued_at"] = reg.IssuedAt
	if reg.confidential() {
		meta["client_secret"] = f.seal.clientSecret(id)
		meta["client_secret_expires_at"] = 0
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(meta)
	f.note(r, "client_name", reg.Name, "redirect_uris", reg.RedirectURIs, "auth_method", reg.AuthMethod)
}

// authorize validates an authorization request, asks for consent when this browser has not given it for the client
// and redirect URI, and redirects to the upstream authorization endpoint. POST is the consent form.
func (f *facade) authorize(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		f.authorizeRequest(w, r, r.URL.Query(), false)
	case http.MethodPost:
		f.consentDecision(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		f.page(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Open this address in a browser.")
	}
}

// authorizeRequest handles the request's parameters q. consented is true after the consent form.
func (f *facade) authorizeRequest(w http.ResponseWriter, r *http.Request, q url.Values, consented bool) {
	if len(q["client_id"]) > 1 || len(q["redirect_uri"]) > 1 {
		f.page(w, r, http.StatusBadRequest, "Invalid request", "The application sent a malformed sign-in request (a parameter is repeated).")
		return
	}
	clientID := q.Get("client_id")
	reg, oe := f.seal.openClientID(clientID)
	if oe != nil {
		f.page(w, r, http.StatusBadRequest, "Unknown application",
			"This gateway does not know the application that sent you here (its client id is not one this gateway issued). "+
				"Remove the server from the application and add it again so that it registers anew.")
		return
	}
	registered, redirectURI, ok := resolveRedirectURI(reg, q.Get("redirect_uri"))
	if !ok {
		f.page(w, r, http.StatusBadRequest, "Redirect address mismatch",
			"The application asked to be sent back to an address it did not register. Nothing was done. "+
				"If you develop this application, send one of the redirect_uris it registered.")
		return
	}
	clientState := q.Get("state")
	// Errors go back to the client only when this browser has allowed it to use this redirect URI: anyone can register
	// any redirect URI, and an error redirect to it without consent would make the gateway an open redirector
	// (RFC 9700 §4.11.2).
	trusted := consented || f.hasConsent(r, consentDigest(clientID, registered))
	redirectErr := func(oe *oauthError) {
		if !trusted {
			f.page(w, r, http.StatusBadRequest, "Invalid sign-in request",
				"The application sent a sign-in request this gateway cannot serve: "+oe.Description+". Nothing was done.")
			return
		}
		f.refused(r, "error", oe.Code, "error_description", oe.Description, "answered_at", "redirect_uri")
		http.Redirect(w, r, clientRedirectURL(redirectURI, clientState, f.issuer, callbackParams{Error: oe.Code, ErrorDescription: oe.Description}), http.StatusFound)
	}
	if oe := checkAuthorizeParams(q); oe != nil {
		redirectErr(oe)
		return
	}
	if oe := checkResource(q["resource"], f.resource); oe != nil {
		redirectErr(oe)
		return
	}
	as := f.upstream.Load()
	if as == nil {
		redirectErr(&oauthError{503, "temporarily_unavailable", "the authorization server is not reachable yet; try again shortly"})
		return
	}
	scopes, oe := f.scopePolicy(as).settle(q.Get("scope"))
	if oe != nil {
		redirectErr(oe)
		return
	}
	if !trusted {
		if strings.Contains(" "+q.Get("prompt")+" ", " none ") {
			redirectErr(&oauthError{400, "consent_required", "the user has not allowed this application yet"})
			return
		}
		f.consentPage(w, r, reg, clientID, registered, redirectURI, q, scopes)
		return
	}
	// A state is minted only here: limited per client id and per address, so that no one can mint them in a loop.
	now := f.now()
	for _, l := range []struct {
		lim *rateLimiter
		key string
	}{{f.limits.statesByAddr, clientAddr(r, f.trusted)}, {f.limits.statesByClient, clientDigest(clientID)}} {
		if ok, wait := l.lim.allow(l.key, now); !ok {
			w.Header().Set("Retry-After", retryAfter(wait))
			f.page(w, r, http.StatusTooManyRequests, "Too many sign-ins",
				"Too many sign-ins were started from this application or this network in the last minute. Nothing was done. Wait a minute and start again from your application.")
			return
		}
	}
	browser := f.browserCookie(w, r)
	st := pendingState{ID: randomID(), ClientID: clientID, RedirectURI: redirectURI, State: clientState,
		Browser: f.seal.mac("browser-binding", browser), Exp: now.Add(stateTTL).Unix()}
	up := url.Values{}
	for k, vs := range q {
		up[k] = vs
	}
	up.Set("resource", f.resource)
	up.Del("scope")
	if len(scopes) > 0 {
		up.Set("scope", strings.Join(scopes, " "))
	}
	target, err := upstreamAuthorizeURL(as.AuthorizationEndpoint, up, f.client.ID, f.client.Callback, f.seal.seal("state", st))
	if err != nil {
		f.note(r, "cause", "upstream authorization endpoint unusable", "endpoint", as.AuthorizationEndpoint, "err", err.Error())
		redirectErr(&oauthError{500, "server_error", "the authorization server's endpoint is unusable"})
		return
	}
	http.Redirect(w, r, target, http.StatusFound)
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
func (f *facade) cookieName(base string) string {
	if f.secure {
		return "__Host-" + base
	}
	return base
}

func (f *facade) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: f.cookieName(name), Value: value, Path: "/", MaxAge: maxAge,
		Secure: f.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// consents returns the (client, redirect URI) digests this browser allowed.
func (f *facade) consents(r *http.Request) []string {
	c, err := r.Cookie(f.cookieName("mcpgw-consent"))
	if err != nil {
		return nil
	}
	var set consentSet
	if f.seal.open("consent", c.Value, &set) != nil || set.Exp < f.now().Unix() {
		return nil
	}
	return set.Clients
}

func (f *facade) hasConsent(r *http.Request, digest string) bool {
	return slices.Contains(f.consents(r), digest)
}

// browserCookieName is the cookie holding a random secret of this browser: the consent form's CSRF token and the
// binding of each state to the browser that started the sign-in are MACs of it.
const browserCookieName = "mcpgw-browser"

// browserCookie returns the browser's secret, setting a new one (for the browser session) when absent.
func (f *facade) browserCookie(w http.ResponseWriter, r *http.Request) string {
	if v, ok := f.browserSecret(r); ok {
		return v
	}
	v := randomID()
	f.setCookie(w, browserCookieName, v, 0)
	return v
}

// browserSecret returns the browser's secret, if it sent one.
func (f *facade) browserSecret(r *http.Request) (string, bool) {
	c, err := r.Cookie(f.cookieName(browserCookieName))
	if err != nil || len(c.Value) < 16 || len(c.Value) > 64 {
		return "", false
	}
	return c.Value, true
}

var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Allow {{.Client}}?</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
code{overflow-wrap:anywhere;background:#f3f3f3;padding:0 .2em}button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.8rem}
.note{color:#555;font-size:.9rem}</style></head>
<body>
<h1>Allow <q>{{.Client}}</q> to use {{.ResourceName}}?</h1>
<p>The application <strong>{{.Client}}</strong> wants to sign you in to <code>{{.Resource}}</code> and act as you there.</p>
{{if .Scopes}}<p>It asks for these permissions (scopes):</p>
<ul id="scopes">{{range .Scopes}}<li><code>{{.}}</code></li>{{end}}</ul>{{else}}<p>It asks for no particular permissions (scopes).</p>{{end}}
<p>After you sign in at <code>{{.Upstream}}</code>, you will be sent to this address, which the application registered:</p>
<p><code id="redirect-uri">{{.RedirectURI}}</code></p>
<p class="note">The name is what the application says about itself. Allow only if you started this from an application you trust and the address above belongs to it.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="request" value="{{.Request}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>
`))

var messageTemplate = template.Must(template.New("message").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// pageHeaders are the headers of every HTML page: never framed, never cached, nothing loaded.
func pageHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // not no-referrer: with it, browsers send the consent form with Origin: null
}

// page shows a message to a person (errors that must not be sent to an unverified redirect URI).
func (f *facade) page(w http.ResponseWriter, r *http.Request, status int, title, text string, attrs ...any) {
	f.refused(r, append([]any{"status", status, "page", title}, attrs...)...)
	pageHeaders(w.Header())
	w.WriteHeader(status)
	messageTemplate.Execute(w, struct{ Title, Text string }{title, text})
}

func (f *facade) consentPage(w http.ResponseWriter, r *http.Request, reg registration, clientID, registered, redirectURI string, q url.Values, scopes []string) {
	browser := f.browserCookie(w, r)
	name := reg.Name
	if name == "" {
		name = "An unnamed application"
	}
	pending := f.seal.seal("pending", pendingAuth{ClientID: clientID, Registered: registered, RedirectURI: redirectURI, Query: q.Encode(),
		Exp: f.now().Add(pendingTTL).Unix()})
	pageHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	consentTemplate.Execute(w, map[string]any{
		"Client": name, "ResourceName": f.resourceName, "Resource": f.resource, "Upstream": f.upIssuer, "Scopes": scopes,
		"RedirectURI": redirectURI, "Action": facadeAuthorizePath, "Request": pending, "CSRF": f.seal.mac("csrf", browser),
	})
}

// consentDecision handles the consent form: CSRF token bound to the browser's cookie, Origin (when sent) the gateway.
func (f *facade) consentDecision(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, f.issuer) {
		f.page(w, r, http.StatusForbidden, "Request refused", "The form was sent from another site. Nothing was done. Start again from your application.")
		return
	}
	body, oe := readFacadeBody(r)
	if oe != nil {
		f.page(w, r, oe.Status, "Invalid request", "The form could not be read.")
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		f.page(w, r, http.StatusBadRequest, "Invalid request", "The form could not be read.")
		return
	}
	browser, ok := f.browserSecret(r)
	if !ok || !macEqual(form.Get("csrf"), f.seal.mac("csrf", browser)) {
		f.page(w, r, http.StatusForbidden, "Request refused",
			"The consent form was not sent from this browser's consent page (or cookies are off). Nothing was done. Start again from your application.")
		return
	}
	var p pendingAuth
	if f.seal.open("pending", form.Get("request"), &p) != nil || p.Exp < f.now().Unix() {
		f.page(w, r, http.StatusBadRequest, "Expired", "This consent page has expired. Nothing was done. Start again from your application.")
		return
	}
	q, _ := url.ParseQuery(p.Query)
	switch form.Get("decision") {
	case "allow":
		set := consentSet{Clients: withConsent(f.consents(r), consentDigest(p.ClientID, p.Registered)), Exp: f.now().Add(consentTTL).Unix()}
		f.setCookie(w, "mcpgw-consent", f.seal.seal("consent", set), int(consentTTL/time.Second))
		f.authorizeRequest(w, r, q, true)
	case "deny":
		http.Redirect(w, r, clientRedirectURL(p.RedirectURI, q.Get("state"), f.issuer,
			callbackParams{Error: "access_denied", ErrorDescription: "the user denied the request"}), http.StatusSeeOther)
	default:
		f.page(w, r, http.StatusBadRequest, "Invalid request", "Choose Allow or Deny.")
	}
}

// callback receives the upstream's redirect and sends the browser on to the client. Everything that can refuse without
// memory is checked first: the state's seal and expiry, the browser that started the sign-in, and the issuer. Only then
// is the state marked used, so that no one but the browser that started a sign-in can spend its state.
func (f *facade) callback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		f.page(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Open this address in a browser.")
		return
	}
	q := r.URL.Query()
	var st pendingState
	if len(q["state"]) != 1 || f.seal.open("state", q.Get("state"), &st) != nil {
		f.page(w, r, http.StatusBadRequest, "Invalid sign-in response",
			"This sign-in response was not started by this gateway. Nothing was done. Start again from your application.")
		return
	}
	if st.Exp < f.now().Unix() {
		f.page(w, r, http.StatusBadRequest, "Sign-in expired", "This sign-in took too long and has expired. Nothing was done. Start again from your application.")
		return
	}
	// A page, never a redirect: a state opened in a browser that did not start the sign-in must not send that browser
	// to the redirect URI of whoever started it.
	if browser, ok := f.browserSecret(r); !ok || !macEqual(f.seal.mac("browser-binding", browser), st.Browser) {
		f.page(w, r, http.StatusBadRequest, "Sign-in started elsewhere",
			"This sign-in was started in another browser (or this browser's cookies were cleared). Nothing was done. "+
				"If you did not start a sign-in, close this page. Otherwise start again from your application, in this browser.",
			"cause", "state_browser_mismatch")
		return
	}
	as := f.upstream.Load()
	switch iss, n := q.Get("iss"), len(q["iss"]); {
	case n > 1 || (n == 1 && iss != f.upIssuer):
		f.page(w, r, http.StatusBadRequest, "Invalid sign-in response",
			"The sign-in response came from another authorization server. Nothing was done. Start again from your application.",
			"cause", "foreign_iss", "iss", errorDescription(iss))
		return
	case n == 0 && as != nil && as.AuthorizationResponseIssParameterSupported:
		f.page(w, r, http.StatusBadRequest, "Invalid sign-in response",
			"The sign-in response does not say which authorization server sent it, although that server says it always does. Nothing was done. Start again from your application.",
			"cause", "missing_iss")
		return
	}
	if !f.used.use(st.ID) {
		f.page(w, r, http.StatusBadRequest, "Sign-in already used",
			"This sign-in response has been used already. Nothing more was done. Start again from your application.")
		return
	}
	var p callbackParams
	switch {
	case q.Get("error") != "":
		p = callbackParams{Error: oauthErrorCode(q.Get("error")), ErrorDescription: q.Get("error_description")}
		f.refused(r, "cause", "upstream_refused", "upstream_error", p.Error, "upstream_error_description", errorDescription(p.ErrorDescription))
	case q.Get("code") == "":
		p = callbackParams{Error: "server_error", ErrorDescription: "the authorization server answered without a code"}
		f.refused(r, "cause", "upstream_without_code")
	default:
		p.Code = f.seal.seal("code", wrappedCode{Code: q.Get("code"), ClientID: st.ClientID, RedirectURI: st.RedirectURI, Exp: f.now().Add(codeTTL).Unix()})
	}
	http.Redirect(w, r, clientRedirectURL(st.RedirectURI, st.State, f.issuer, p), http.StatusFound)
}

// token authenticates the client, rewrites the request for the upstream and relays the upstream's JSON answer.
func (f *facade) token(w http.ResponseWriter, r *http.Request) {
	if !postEndpoint(w, r) {
		return
	}
	body, oe := readFacadeBody(r)
	if oe != nil {
		f.fail(w, r, oe)
		return
	}
	tr, oe := parseTokenRequest(r.Header.Get("Content-Type"), body, r.Header.Get("Authorization"))
	if oe != nil {
		f.fail(w, r, oe)
		return
	}
	reg, oe := f.seal.openClientID(tr.ClientID)
	if oe != nil {
		f.fail(w, r, oe)
		return
	}
	if reg.confidential() && !macEqual(tr.Secret, f.seal.clientSecret(tr.ClientID)) {
		f.fail(w, r, &oauthError{401, "invalid_client", "client authentication failed"})
		return
	}
	grant := tr.Params.Get("grant_type")
	switch {
	case grant == "":
		f.fail(w, r, errInvalidRequest("grant_type is missing"))
		return
	case !slices.Contains(facadeGrantTypes, grant):
		f.fail(w, r, &oauthError{400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"})
		return
	}
	if oe := checkResource(tr.Params["resource"], f.resource); oe != nil {
		f.fail(w, r, oe)
		return
	}
	if s := tr.Params.Get("scope"); s != "" {
		if _, oe := (scopePolicy{allowed: f.cfg.FacadeScopeList}).settle(s); oe != nil {
			f.fail(w, r, oe)
			return
		}
	}
	var upstreamCode string
	if grant == "authorization_code" {
		var c wrappedCode
		switch {
		case f.seal.open("code", tr.Params.Get("code"), &c) != nil:
			f.fail(w, r, &oauthError{400, "invalid_grant", "the code is not one this gateway issued"})
			return
		case c.Exp < f.now().Unix():
			f.fail(w, r, &oauthError{400, "invalid_grant", "the code has expired"})
			return
		case c.ClientID != tr.ClientID:
			f.fail(w, r, &oauthError{400, "invalid_grant", "the code was issued to another client"})
			return
		case tr.Params.Get("redirect_uri") != "" && tr.Params.Get("redirect_uri") != c.RedirectURI:
			f.fail(w, r, &oauthError{400, "invalid_grant", "redirect_uri differs from the authorization request's"})
			return
		}
		upstreamCode = c.Code
	}
	as := f.upstream.Load()
	if as == nil {
		w.Header().Set("Retry-After", "5")
		f.fail(w, r, &oauthError{503, "temporarily_unavailable", "the authorization server is not reachable yet; try again shortly"})
		return
	}
	now := f.now()
	if ok, wait := f.limits.tokensByAddr.allow(clientAddr(r, f.trusted), now); !ok {
		f.limited(w, r, wait, "token requests")
		return
	}
	if ok, wait := f.limits.tokensByClient.allow(clientDigest(tr.ClientID), now); !ok {
		f.limited(w, r, wait, "token requests")
		return
	}
	form, user, pass := upstreamTokenRequest(tr.Params, upstreamCode, f.resource, f.client)
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, as.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		f.note(r, "cause", "upstream token endpoint unusable", "endpoint", as.TokenEndpoint, "err", err.Error())
		f.fail(w, r, &oauthError{500, "server_error", "the authorization server's token endpoint is unusable"})
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := f.http.Do(req) // never retried: a refresh token may be single-use
	if err != nil {
		f.note(r, "cause", "upstream token request failed", "endpoint", as.TokenEndpoint, "err", err.Error())
		f.fail(w, r, &oauthError{502, "temporarily_unavailable", "the authorization server did not answer; try again"})
		return
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		f.note(r, "cause", "upstream token response unreadable", "endpoint", as.TokenEndpoint, "err", err.Error())
		f.fail(w, r, &oauthError{502, "temporarily_unavailable", "the authorization server's answer could not be read; try again"})
		return
	}
	var answer map[string]any
	if json.Unmarshal(out, &answer) != nil || answer == nil {
		f.refused(r, "cause", "upstream_not_json", "upstream_status", resp.StatusCode)
		f.fail(w, r, &oauthError{502, "temporarily_unavailable", "the authorization server's answer is not JSON; try again"})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if resp.StatusCode == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="token"`)
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
	if resp.StatusCode != http.StatusOK {
		code, _ := answer["error"].(string)
		f.refused(r, "cause", "upstream_refused", "upstream_status", resp.StatusCode, "upstream_error", oauthErrorCode(code), "grant_type", grant)
	}
}
