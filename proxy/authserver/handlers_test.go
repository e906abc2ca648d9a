package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/metadata"
)

// tokenRecorder is the upstream token endpoint: it records each request and answers what the test sets.
type tokenRecorder struct {
	mu     sync.Mutex
	reqs   []recordedToken
	status int
	body   string
}

type recordedToken struct {
	form       url.Values
	user, pass string
	basic      bool
}

func (tr *tokenRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(b))
	user, pass, ok := r.BasicAuth()
	user, _ = url.QueryUnescape(user) // RFC 6749 §2.3.1: form-encoded
	pass, _ = url.QueryUnescape(pass)
	tr.mu.Lock()
	tr.reqs = append(tr.reqs, recordedToken{form: form, user: user, pass: pass, basic: ok})
	status, body := tr.status, tr.body
	tr.mu.Unlock()
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (tr *tokenRecorder) last(t *testing.T) recordedToken {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.reqs) == 0 {
		t.Fatal("the upstream token endpoint was not called")
	}
	return tr.reqs[len(tr.reqs)-1]
}

func (tr *tokenRecorder) count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.reqs)
}

// harness is an authorization server under test, served on httptest, in front of an upstream authorization server
// whose token endpoint records what it gets.
type harness struct {
	server   *Server
	srv      *httptest.Server // the server under test
	is       *httptest.Server // the upstream authorization server: its issuer is is.URL
	as       atomic.Pointer[metadata.AuthServer]
	tok      *tokenRecorder
	clock    *fakeClock
	resource string
	notes    *noteRecorder
	client   *http.Client // does not follow redirects
	// fwd, when set, is the X-Forwarded-For of requests that do not set one (with Config.TrustedProxies, the client
	// address they are counted under).
	fwd string
}

const upstreamClientID = "client_UPSTREAM"

func newHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	return newHarnessWith(t, edit, nil)
}

// newHarnessWith starts a server whose configuration edit changes, in front of an authorization server whose metadata
// editAS changes.
func newHarnessWith(t *testing.T, edit func(*Config), editAS func(*metadata.AuthServer)) *harness {
	t.Helper()
	return newHarnessOpts(t, edit, editAS, nil)
}

// newHarnessOpts is newHarnessWith whose server options editOpts changes.
func newHarnessOpts(t *testing.T, edit func(*Config), editAS func(*metadata.AuthServer), editOpts func(*Options)) *harness {
	t.Helper()
	h := &harness{tok: &tokenRecorder{status: 200, body: `{"access_token":"at","token_type":"Bearer"}`}, clock: newClock(), notes: &noteRecorder{}}
	mux := http.NewServeMux()
	mux.Handle("POST /oauth2/token", h.tok)
	h.is = httptest.NewServer(mux)
	t.Cleanup(h.is.Close)
	var handler http.Handler
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(h.srv.Close)
	h.resource = h.srv.URL + "/mcp"
	cfg := Config{
		PublicURL:        h.srv.URL,
		Resource:         h.resource,
		ResourceName:     "MCP server",
		Issuer:           h.is.URL,
		ClientID:         upstreamClientID,
		ClientSecret:     "upstream secret",
		ClientAuthMethod: "client_secret_basic",
	}
	if edit != nil {
		edit(&cfg)
	}
	as := &metadata.AuthServer{Issuer: h.is.URL, AuthorizationEndpoint: h.is.URL + "/oauth2/authorize", TokenEndpoint: h.is.URL + "/oauth2/token",
		CodeChallengeMethodsSupported: []string{"S256"}}
	if editAS != nil {
		editAS(as)
	}
	h.as.Store(as)
	var err error
	opts := Options{Key: []byte(strings.Repeat("k", 32)), Client: h.is.Client(), Now: h.clock.Now, AuthServer: h.as.Load, Note: h.notes.note}
	if editOpts != nil {
		editOpts(&opts)
	}
	h.server, err = New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := http.NewServeMux()
	for _, rt := range h.server.Routes() {
		r.Handle(rt.Path, rt.Handler)
	}
	handler = r
	h.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return h
}

// noteRecorder keeps what the server noted of its requests, as the gateway's access lines would.
type noteRecorder struct {
	mu    sync.Mutex
	notes []recordedNote
}

type recordedNote struct {
	path    string
	refused bool
	attrs   map[string]string
}

func (n *noteRecorder) note(r *http.Request, refused bool, attrs ...slog.Attr) {
	m := map[string]string{}
	for _, a := range attrs {
		m[a.Key] = a.Value.String()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notes = append(n.notes, recordedNote{path: r.URL.Path, refused: refused, attrs: m})
}

// last returns the last note.
func (n *noteRecorder) last(t *testing.T) recordedNote {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.notes) == 0 {
		t.Fatal("nothing was noted")
	}
	return n.notes[len(n.notes)-1]
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func readBody(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// send makes a request to the gateway with the jar's cookies, without following redirects.
func (h *harness) send(t *testing.T, method, path string, hdr http.Header, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if h.fwd != "" && req.Header.Get("X-Forwarded-For") == "" {
		req.Header.Set("X-Forwarded-For", h.fwd)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (h *harness) register(t *testing.T, body string) map[string]any {
	t.Helper()
	resp := h.send(t, "POST", "/register", http.Header{"Content-Type": {"application/json"}}, body)
	b := readBody(t, resp)
	if resp.StatusCode != 201 {
		t.Fatalf("register: %d %s", resp.StatusCode, b)
	}
	var m map[string]any
	json.Unmarshal([]byte(b), &m)
	return m
}

const clientRedirect = "http://127.0.0.1:8976/callback"

func authorizeQuery(clientID string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {clientRedirect}, "state": {"client-state"},
		"code_challenge": {"challenge"}, "code_challenge_method": {"S256"}, "scope": {"openid offline_access"},
		"prompt": {"consent"}, "login_hint": {"a@example.com"},
	}
}

var (
	hiddenRE = regexp.MustCompile(`name="(request|csrf)" value="([^"]*)"`)
)

// consentForm fetches the consent page and returns its hidden fields and the cookies it set.
func (h *harness) consentForm(t *testing.T, q url.Values, cookies string) (url.Values, string) {
	t.Helper()
	resp := h.send(t, "GET", "/authorize?"+q.Encode(), http.Header{"Cookie": {cookies}}, "")
	b := readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("consent page: %d %s", resp.StatusCode, b)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("consent page CSP: %q", csp)
	}
	form := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(b, -1) {
		form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
	}
	for _, c := range resp.Cookies() {
		cookies = joinCookie(cookies, c.Name+"="+c.Value)
	}
	return form, cookies
}

// joinCookie adds or replaces the cookie name=value b in the Cookie header a.
func joinCookie(a, b string) string {
	name, _, _ := strings.Cut(b, "=")
	var out []string
	for _, c := range strings.Split(a, "; ") {
		if n, _, _ := strings.Cut(c, "="); c != "" && n != name {
			out = append(out, c)
		}
	}
	return strings.Join(append(out, b), "; ")
}

// withCookies returns the Cookie header a with the cookies resp set.
func withCookies(a string, resp *http.Response) string {
	for _, c := range resp.Cookies() {
		a = joinCookie(a, c.Name+"="+c.Value)
	}
	return a
}

// allow posts the consent form and returns the response.
func (h *harness) decide(t *testing.T, form url.Values, decision, cookies string) *http.Response {
	t.Helper()
	form.Set("decision", decision)
	return h.send(t, "POST", "/authorize", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Cookie": {cookies}, "Origin": {h.srv.URL}}, form.Encode())
}

// signIn runs register → consent → upstream redirect → callback and returns the client id, secret and the query
// of the redirect to the client.
func (h *harness) signIn(t *testing.T, regBody string) (clientID, secret string, back url.Values) {
	t.Helper()
	reg := h.register(t, regBody)
	clientID, _ = reg["client_id"].(string)
	secret, _ = reg["client_secret"].(string)
	form, cookies := h.consentForm(t, authorizeQuery(clientID), "")
	resp := h.decide(t, form, "allow", cookies)
	if resp.StatusCode != 302 {
		t.Fatalf("allow: %d %s", resp.StatusCode, readBody(t, resp))
	}
	cookies = withCookies(cookies, resp)
	up, _ := url.Parse(resp.Header.Get("Location"))
	resp = h.send(t, "GET", "/callback?"+url.Values{"code": {"UPCODE"}, "state": {up.Query().Get("state")}, "iss": {h.is.URL}}.Encode(), http.Header{"Cookie": {cookies}}, "")
	if resp.StatusCode != 302 {
		t.Fatalf("callback: %d %s", resp.StatusCode, readBody(t, resp))
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return clientID, secret, loc.Query()
}

const publicClient = `{"client_name":"Test <App>","redirect_uris":["http://127.0.0.1:1/callback"],"token_endpoint_auth_method":"none"}`

func TestFacadeMetadata(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	if h.server.Issuer() != h.srv.URL || h.server.Callback() != h.srv.URL+"/callback" {
		t.Errorf("issuer %q, callback %q; want %s and its /callback", h.server.Issuer(), h.server.Callback(), h.srv.URL)
	}
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp := h.send(t, "GET", p, nil, "")
		var doc map[string]any
		json.Unmarshal([]byte(readBody(t, resp)), &doc)
		if resp.StatusCode != 200 || doc["issuer"] != h.srv.URL || doc["authorization_endpoint"] != h.srv.URL+"/authorize" ||
			doc["token_endpoint"] != h.srv.URL+"/token" || doc["registration_endpoint"] != h.srv.URL+"/register" ||
			doc["authorization_response_iss_parameter_supported"] != true {
			t.Errorf("%s: %d %v", p, resp.StatusCode, doc)
		}
		if m, _ := doc["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
			t.Errorf("%s: code_challenge_methods_supported %v", p, doc["code_challenge_methods_supported"])
		}
		if _, ok := doc["jwks_uri"]; ok {
			t.Errorf("%s advertises a jwks_uri the gateway does not serve", p)
		}
	}
}

func TestFacadeFlow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	reg := h.register(t, `{"client_name":"Test <App>","redirect_uris":["http://127.0.0.1:1/callback"],"token_endpoint_auth_method":"none","scope":"openid"}`)
	clientID := reg["client_id"].(string)
	if uris, _ := reg["redirect_uris"].([]any); len(uris) != 1 || uris[0] != "http://127.0.0.1:1/callback" || reg["scope"] != "openid" {
		t.Errorf("registration echo: %v", reg)
	}
	if _, ok := reg["client_secret"]; ok {
		t.Error("a public client got a secret")
	}

	// Consent page: names the client (escaped) and the redirect URI.
	q := authorizeQuery(clientID)
	resp := h.send(t, "GET", "/authorize?"+q.Encode(), nil, "")
	page := readBody(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(page, "Test &lt;App&gt;") || !strings.Contains(page, clientRedirect) {
		t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("consent page headers: %v", resp.Header)
	}
	form, cookies := h.consentForm(t, q, "")
	resp = h.decide(t, form, "allow", cookies)
	if resp.StatusCode != 302 {
		t.Fatalf("allow: %d %s", resp.StatusCode, readBody(t, resp))
	}
	var consent *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "mcpgw-consent" {
			consent = c
		}
	}
	if consent == nil || !consent.HttpOnly || consent.SameSite != http.SameSiteLaxMode || consent.Path != "/" {
		t.Fatalf("consent cookie: %+v", consent)
	}
	up, _ := url.Parse(resp.Header.Get("Location"))
	uq := up.Query()
	if up.Host != strings.TrimPrefix(h.is.URL, "http://") || up.Path != "/oauth2/authorize" {
		t.Errorf("upstream: %s", up)
	}
	want := map[string]string{"client_id": upstreamClientID, "redirect_uri": h.srv.URL + "/callback", "code_challenge": "challenge",
		"code_challenge_method": "S256", "scope": "openid offline_access", "resource": h.resource, "prompt": "consent",
		"login_hint": "a@example.com", "response_type": "code"}
	for k, v := range want {
		if uq.Get(k) != v {
			t.Errorf("upstream %s: got %q, want %q", k, uq.Get(k), v)
		}
	}
	state := uq.Get("state")
	if state == "" || state == "client-state" {
		t.Errorf("upstream state: %q", state)
	}

	// With the consent cookie, the next authorization goes straight to the upstream.
	resp = h.send(t, "GET", "/authorize?"+q.Encode(), http.Header{"Cookie": {consent.Name + "=" + consent.Value}}, "")
	if loc := resp.Header.Get("Location"); resp.StatusCode != 302 || !strings.HasPrefix(loc, h.is.URL+"/oauth2/authorize?") {
		t.Errorf("remembered consent: %d %s", resp.StatusCode, loc)
	}

	// Callback → client, with the client's state and the gateway's iss.
	cb := "/callback?" + url.Values{"code": {"UPCODE"}, "state": {state}, "iss": {h.is.URL}}.Encode()
	inBrowser := http.Header{"Cookie": {cookies}}
	resp = h.send(t, "GET", cb, inBrowser, "")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	back := loc.Query()
	if resp.StatusCode != 302 || loc.Host != "127.0.0.1:8976" || back.Get("state") != "client-state" || back.Get("iss") != h.srv.URL ||
		back.Get("code") == "" || back.Get("code") == "UPCODE" {
		t.Fatalf("callback: %d %s", resp.StatusCode, loc)
	}
	if resp := h.send(t, "GET", cb, inBrowser, ""); resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("replayed state: got %d, want 400 without a redirect", resp.StatusCode)
	}

	// Token: the upstream sees its own client, code and callback; the answer comes back untouched.
	h.tok.status, h.tok.body = 200, `{"access_token":"AT","token_type":"Bearer","refresh_token":"RT","expires_in":60}`
	tokForm := url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "redirect_uri": {clientRedirect},
		"client_id": {clientID}, "code_verifier": {"verifier"}, "resource": {h.resource}}
	resp = h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, tokForm.Encode())
	if b := readBody(t, resp); resp.StatusCode != 200 || b != h.tok.body || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("token: %d %s", resp.StatusCode, b)
	}
	got := h.tok.last(t)
	if got.form.Get("code") != "UPCODE" || got.form.Get("redirect_uri") != h.srv.URL+"/callback" || got.form.Get("code_verifier") != "verifier" ||
		got.form.Get("resource") != h.resource || !got.basic || got.user != upstreamClientID || got.pass != "upstream secret" {
		t.Errorf("upstream token request: %+v", got)
	}

	// Refresh, as JSON: passed through with the secret; the upstream's refusal comes back untouched, once.
	h.tok.status, h.tok.body = 400, `{"error":"invalid_grant","error_description":"grant request is invalid"}`
	n := h.tok.count()
	resp = h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/json"}}, `{"grant_type":"refresh_token","refresh_token":"RT","client_id":"`+clientID+`"}`)
	if b := readBody(t, resp); resp.StatusCode != 400 || b != h.tok.body {
		t.Errorf("refresh: %d %s", resp.StatusCode, b)
	}
	if got := h.tok.last(t); h.tok.count() != n+1 || got.form.Get("refresh_token") != "RT" || got.user != upstreamClientID {
		t.Errorf("refresh upstream: %d calls, %+v", h.tok.count()-n, got)
	}
}

func TestFacadeConfidentialClient(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"client_secret_basic", "client_secret_post"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *Config) { c.ClientAuthMethod = "client_secret_post" })
			clientID, secret, back := h.signIn(t, `{"client_name":"c","redirect_uris":["http://127.0.0.1:1/callback"],"token_endpoint_auth_method":"`+method+`"}`)
			if secret == "" {
				t.Fatal("no client_secret issued")
			}
			tokenReq := func(secret string, basicAuth bool) *http.Response {
				form := url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "code_verifier": {"v"}}
				hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
				if basicAuth {
					hdr.Set("Authorization", basic(clientID, secret))
				} else {
					form.Set("client_id", clientID)
					form.Set("client_secret", secret)
				}
				return h.send(t, "POST", "/token", hdr, form.Encode())
			}
			for _, basicAuth := range []bool{true, false} {
				if resp := tokenReq("wrong", basicAuth); resp.StatusCode != 401 {
					t.Errorf("wrong secret (basic %t): got %d, want 401", basicAuth, resp.StatusCode)
				}
				if resp := h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
					url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {clientID}}.Encode()); resp.StatusCode != 401 {
					t.Errorf("no secret: got %d, want 401", resp.StatusCode)
				}
			}
			if h.tok.count() != 0 {
				t.Fatal("the upstream was asked for a client that failed authentication")
			}
			for _, basicAuth := range []bool{true, false} {
				if resp := tokenReq(secret, basicAuth); resp.StatusCode != 200 {
					t.Errorf("right secret (basic %t): got %d %s", basicAuth, resp.StatusCode, readBody(t, resp))
				}
				got := h.tok.last(t)
				if got.basic || got.form.Get("client_secret") != "upstream secret" || got.form.Get("client_id") != upstreamClientID {
					t.Errorf("upstream got %+v: the client's credentials must never be forwarded", got)
				}
			}
		})
	}
}

func TestFacadeRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	clientID := h.register(t, publicClient)["client_id"].(string)

	page := func(name string, resp *http.Response, status int, text string) {
		t.Helper()
		b := readBody(t, resp)
		if resp.StatusCode != status || resp.Header.Get("Location") != "" || !strings.Contains(b, text) {
			t.Errorf("%s: got %d %q, want %d without a redirect, mentioning %q", name, resp.StatusCode, b, status, text)
		}
	}
	q := authorizeQuery(clientID)
	q.Set("redirect_uri", "http://127.0.0.1:1/other")
	page("wrong redirect URI", h.send(t, "GET", "/authorize?"+q.Encode(), nil, ""), 400, "did not register")
	q = authorizeQuery(clientID + "x")
	page("forged client id", h.send(t, "GET", "/authorize?"+q.Encode(), nil, ""), 400, "Unknown application")
	q = authorizeQuery("client_01SOMEONEELSE")
	page("foreign client id", h.send(t, "GET", "/authorize?"+q.Encode(), nil, ""), 400, "Unknown application")

	// Errors after the redirect URI is known: a page while this browser has not allowed the client (no open
	// redirector), a redirect to the client once it has.
	noPKCE := authorizeQuery(clientID)
	noPKCE.Del("code_challenge")
	page("no PKCE, no consent", h.send(t, "GET", "/authorize?"+noPKCE.Encode(), nil, ""), 400, "PKCE is required")
	q = authorizeQuery(clientID)
	q.Set("prompt", "none")
	page("prompt=none, no consent", h.send(t, "GET", "/authorize?"+q.Encode(), nil, ""), 400, "has not allowed")
	f, c := h.consentForm(t, authorizeQuery(clientID), "")
	allowed := h.decide(t, f, "allow", c)
	consentCookie := c
	for _, ck := range allowed.Cookies() {
		consentCookie = joinCookie(consentCookie, ck.Name+"="+ck.Value)
	}
	resp := h.send(t, "GET", "/authorize?"+noPKCE.Encode(), http.Header{"Cookie": {consentCookie}}, "")
	if loc, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != 302 || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "client-state" {
		t.Errorf("no PKCE, consented: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Consent CSRF.
	form, cookies := h.consentForm(t, authorizeQuery(clientID), "")
	bad := url.Values{"request": {form.Get("request")}, "csrf": {"forged"}}
	page("forged CSRF token", h.decide(t, bad, "allow", cookies), 403, "not sent from this browser")
	page("no CSRF cookie", h.decide(t, url.Values{"request": {form.Get("request")}, "csrf": {form.Get("csrf")}}, "allow", ""), 403, "not sent from this browser")
	_, otherCookies := h.consentForm(t, authorizeQuery(clientID), "")
	page("another browser's CSRF cookie", h.decide(t, url.Values{"request": {form.Get("request")}, "csrf": {form.Get("csrf")}}, "allow", otherCookies), 403, "not sent from this browser")
	cross := h.send(t, "POST", "/authorize", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Cookie": {cookies}, "Origin": {"https://evil.example"}},
		url.Values{"request": {form.Get("request")}, "csrf": {form.Get("csrf")}, "decision": {"allow"}}.Encode())
	page("cross-site form", cross, 403, "another site")
	page("forged request", h.decide(t, url.Values{"request": {"x"}, "csrf": {form.Get("csrf")}}, "allow", cookies), 400, "expired")

	// Deny.
	resp = h.decide(t, url.Values{"request": {form.Get("request")}, "csrf": {form.Get("csrf")}}, "deny", cookies)
	if loc, _ := url.Parse(resp.Header.Get("Location")); resp.StatusCode != 303 || loc.Query().Get("error") != "access_denied" ||
		loc.Query().Get("state") != "client-state" || loc.Query().Get("iss") != h.srv.URL {
		t.Errorf("deny: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// State: forged, expired, from another issuer.
	page("forged state", h.send(t, "GET", "/callback?code=c&state=forged", nil, ""), 400, "not started by this gateway")
	allow := h.decide(t, url.Values{"request": {form.Get("request")}, "csrf": {form.Get("csrf")}}, "allow", cookies)
	up, _ := url.Parse(allow.Header.Get("Location"))
	state := up.Query().Get("state")
	inBrowser := http.Header{"Cookie": {cookies}}
	page("another issuer", h.send(t, "GET", "/callback?"+url.Values{"code": {"c"}, "state": {state}, "iss": {"https://evil.example"}}.Encode(), inBrowser, ""), 400, "another authorization server")
	page("two issuers", h.send(t, "GET", "/callback?"+url.Values{"code": {"c"}, "state": {state}, "iss": {h.is.URL, "https://evil.example"}}.Encode(), inBrowser, ""), 400, "another authorization server")
	allow = h.decide(t, url.Values{"request": {form.Get("request")}, "csrf": {form.Get("csrf")}}, "allow", cookies)
	up, _ = url.Parse(allow.Header.Get("Location"))
	h.clock.Add(stateTTL + time.Second)
	page("expired state", h.send(t, "GET", "/callback?"+url.Values{"code": {"c"}, "state": {up.Query().Get("state")}}.Encode(), inBrowser, ""), 400, "expired")
	h.clock.Add(pendingTTL)
	page("expired consent form", h.decide(t, url.Values{"request": {form.Get("request")}, "csrf": {form.Get("csrf")}}, "allow", cookies), 400, "expired")
}

func TestFacadeTokenRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	clientID, _, back := h.signIn(t, publicClient)
	otherID := h.register(t, publicClient)["client_id"].(string)
	token := func(form url.Values) (int, string) {
		resp := h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form.Encode())
		var e errorBody
		json.Unmarshal([]byte(readBody(t, resp)), &e)
		return resp.StatusCode, e.Error
	}
	for _, tc := range []struct {
		name      string
		form      url.Values
		status    int
		code      string
		reachesAS bool
	}{
		{"another client's code", url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {otherID}}, 400, "invalid_grant", false},
		{"forged code", url.Values{"grant_type": {"authorization_code"}, "code": {"UPCODE"}, "client_id": {clientID}}, 400, "invalid_grant", false},
		{"a state as a code", url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("state")}, "client_id": {clientID}}, 400, "invalid_grant", false},
		{"other redirect_uri", url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {clientID}, "redirect_uri": {"http://127.0.0.1:8976/other"}}, 400, "invalid_grant", false},
		{"forged client id", url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {clientID + "x"}}, 401, "invalid_client", false},
		{"client_credentials", url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}}, 400, "unsupported_grant_type", false},
		{"token exchange", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "client_id": {clientID}, "subject_token": {"x"}}, 400, "unsupported_grant_type", false},
		{"no grant_type", url.Values{"code": {back.Get("code")}, "client_id": {clientID}}, 400, "invalid_request", false},
		{"another resource", url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {clientID}, "resource": {"https://graph.example.com/"}}, 400, "invalid_target", false},
		{"refresh for another resource", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"RT"}, "client_id": {clientID}, "resource": {"https://graph.example.com/"}}, 400, "invalid_target", false},
	} {
		n := h.tok.count()
		status, code := token(tc.form)
		if status != tc.status || code != tc.code {
			t.Errorf("%s: got %d %q, want %d %q", tc.name, status, code, tc.status, tc.code)
		}
		if reached := h.tok.count() > n; reached != tc.reachesAS {
			t.Errorf("%s: reached the authorization server: %t", tc.name, reached)
		}
	}
	h.clock.Add(codeTTL + time.Second)
	if status, code := token(url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {clientID}}); status != 400 || code != "invalid_grant" {
		t.Errorf("expired code: got %d %q", status, code)
	}
}

// exampleServer is a server for https://mcp.example.com in front of https://as.example.com, whose metadata is as, and
// a handler serving its routes.
func exampleServer(t *testing.T, as *metadata.AuthServer) (*Server, http.Handler) {
	t.Helper()
	s, err := New(Config{PublicURL: "https://mcp.example.com", Resource: "https://mcp.example.com/mcp", ResourceName: "MCP server",
		Issuer: "https://as.example.com", ClientID: upstreamClientID},
		Options{Key: []byte(strings.Repeat("k", 32)), AuthServer: func() *metadata.AuthServer { return as }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, rt := range s.Routes() {
		mux.Handle(rt.Path, rt.Handler)
	}
	return s, mux
}

func TestFacadeMetadataGolden(t *testing.T) {
	t.Parallel()
	_, h := exampleServer(t, &metadata.AuthServer{Issuer: "https://as.example.com", ScopesSupported: []string{"email", "offline_access", "openid", "profile"}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-authorization-server", nil))
	if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("got %d %v", rec.Code, rec.Header())
	}
	golden(t, "metadata.golden", rec.Body.String())
}

func TestFacadeCookiesOnHTTPS(t *testing.T) {
	t.Parallel()
	s, h := exampleServer(t, &metadata.AuthServer{Issuer: "https://as.example.com", AuthorizationEndpoint: "https://as.example.com/authorize"})
	reg := s.seal.clientID(registration{Name: "c", RedirectURIs: []string{"http://127.0.0.1:1/cb"}, AuthMethod: "none"})
	q := authorizeQuery(reg)
	q.Set("redirect_uri", "http://127.0.0.1:1/cb")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "https://mcp.example.com/authorize?"+q.Encode(), nil))
	cookies := rec.Result().Cookies()
	if rec.Code != 200 || len(cookies) != 1 || cookies[0].Name != "__Host-mcpgw-browser" || !cookies[0].Secure || !cookies[0].HttpOnly ||
		cookies[0].Path != "/" || cookies[0].Domain != "" || cookies[0].SameSite != http.SameSiteLaxMode {
		t.Errorf("got %d, cookies %+v", rec.Code, cookies)
	}
}

// consented returns a browser's cookies after it allowed clientID for q's redirect URI.
func (h *harness) consented(t *testing.T, q url.Values) string {
	t.Helper()
	form, cookies := h.consentForm(t, q, "")
	resp := h.decide(t, form, "allow", cookies)
	if resp.StatusCode != 302 {
		t.Fatalf("allow: %d %s", resp.StatusCode, readBody(t, resp))
	}
	return withCookies(cookies, resp)
}

// startSignIn sends a consented browser through /authorize and returns the state the gateway sent upstream and the
// browser's cookies (the response may set the browser cookie).
func (h *harness) startSignIn(t *testing.T, q url.Values, cookies string, hdr http.Header) (*http.Response, string, string) {
	t.Helper()
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr.Set("Cookie", cookies)
	resp := h.send(t, "GET", "/authorize?"+q.Encode(), hdr, "")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return resp, loc.Query().Get("state"), withCookies(cookies, resp)
}

// TestFacadeNotLockable: a party that loops /authorize and /callback in its own browser cannot stop anyone else from
// signing in: states are limited per client id and per address, a full replay memory forgets its oldest entries instead
// of refusing, and a state presented by another browser is refused before the replay memory is touched.
func TestFacadeNotLockable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} })
	h.server.used = newUsedSet(8)
	from := func(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }
	attacker := h.register(t, publicClient)["client_id"].(string)
	aq := authorizeQuery(attacker)
	aq.Set("redirect_uri", "http://127.0.0.1:1/callback")
	acookies := h.consented(t, aq)

	// The attacker's loop: every state is its own browser's, so the callback accepts it, and the replay memory (8 here)
	// overflows many times without refusing.
	minted := 1 // the consent decision minted one
	for ; minted < statesPerClient; minted++ {
		resp, state, c := h.startSignIn(t, aq, acookies, from("203.0.113.66"))
		acookies = c
		if resp.StatusCode != 302 {
			t.Fatalf("state %d: %d", minted, resp.StatusCode)
		}
		cb := h.send(t, "GET", "/callback?"+url.Values{"code": {"c"}, "state": {state}, "iss": {h.is.URL}}.Encode(), http.Header{"Cookie": {acookies}}, "")
		if cb.StatusCode != 302 {
			t.Fatalf("callback %d with a full replay memory: got %d, want 302", minted, cb.StatusCode)
		}
	}
	// Over the per-client limit: a page with Retry-After, and no state.
	resp, state, _ := h.startSignIn(t, aq, acookies, from("203.0.113.66"))
	if b := readBody(t, resp); resp.StatusCode != 429 || state != "" || resp.Header.Get("Retry-After") == "" || !strings.Contains(b, "Too many sign-ins") {
		t.Errorf("over the per-client limit: got %d, Retry-After %q, state %q", resp.StatusCode, resp.Header.Get("Retry-After"), state)
	}

	// Someone else, from another address, signs in as usual; their state cannot be spent by the attacker.
	victim := h.register(t, publicClient)["client_id"].(string)
	vq := authorizeQuery(victim)
	vq.Set("redirect_uri", "http://127.0.0.1:1/callback")
	vcookies := h.consented(t, vq)
	resp, vstate, vcookies := h.startSignIn(t, vq, vcookies, from("198.51.100.7"))
	if resp.StatusCode != 302 {
		t.Fatalf("another client: got %d, want 302", resp.StatusCode)
	}
	cb := "/callback?" + url.Values{"code": {"c"}, "state": {vstate}, "iss": {h.is.URL}}.Encode()
	if resp := h.send(t, "GET", cb, http.Header{"Cookie": {acookies}}, ""); resp.StatusCode != 400 {
		t.Errorf("the victim's state in the attacker's browser: got %d, want 400", resp.StatusCode)
	}
	if resp := h.send(t, "GET", cb, http.Header{"Cookie": {vcookies}}, ""); resp.StatusCode != 302 {
		t.Errorf("the victim's callback after the attacker tried its state: got %d, want 302", resp.StatusCode)
	}

	// One address with many clients: limited per address; another address is not.
	for i := 0; ; i++ {
		h.fwd = "198.51.100." + strconv.Itoa(i) // registration and consent from elsewhere
		c := h.register(t, publicClient)["client_id"].(string)
		q := authorizeQuery(c)
		q.Set("redirect_uri", "http://127.0.0.1:1/callback")
		resp, _, _ := h.startSignIn(t, q, h.consented(t, q), from("192.0.2.1"))
		if resp.StatusCode == 429 {
			if i < statesPerAddr-1 {
				t.Fatalf("limited after %d states from one address", i)
			}
			break
		}
		if i > statesPerAddr {
			t.Fatal("no per-address limit")
		}
	}
	h.fwd = ""
	if resp, _, _ := h.startSignIn(t, vq, vcookies, from("198.51.100.8")); resp.StatusCode != 302 {
		t.Errorf("another address after one was limited: got %d", resp.StatusCode)
	}
}

// TestFacadeCallbackInAnotherBrowser: a state opened in a browser that did not start the sign-in ends on a page, never
// a redirect, whatever error the query carries; and it does not spend the state.
func TestFacadeCallbackInAnotherBrowser(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c := h.register(t, publicClient)["client_id"].(string)
	q := authorizeQuery(c)
	q.Set("redirect_uri", "http://127.0.0.1:1/callback")
	cookies := h.consented(t, q)
	_, state, cookies := h.startSignIn(t, q, cookies, nil)
	_, otherCookies := h.consentForm(t, q, "") // another browser, with a browser cookie of its own
	for _, tc := range []struct {
		name   string
		cookie string
		query  url.Values
	}{
		{"no cookie, code", "", url.Values{"code": {"c"}, "state": {state}, "iss": {h.is.URL}}},
		{"no cookie, error", "", url.Values{"error": {"access_denied"}, "error_description": {"Your account is locked: call +1 555 0100"},
			"error_uri": {"https://attacker.example/help"}, "state": {state}, "iss": {h.is.URL}}},
		{"another browser", otherCookies, url.Values{"error": {"x"}, "error_uri": {"https://attacker.example/"}, "state": {state}, "iss": {h.is.URL}}},
		{"a forged browser cookie", "mcpgw-browser=AAAAAAAAAAAAAAAAAAAAAA", url.Values{"code": {"c"}, "state": {state}, "iss": {h.is.URL}}},
	} {
		resp := h.send(t, "GET", "/callback?"+tc.query.Encode(), http.Header{"Cookie": {tc.cookie}}, "")
		b := readBody(t, resp)
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(b, "another browser") ||
			strings.Contains(b, "attacker") || strings.Contains(b, "555") {
			t.Errorf("%s: got %d Location %q", tc.name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp := h.send(t, "GET", "/callback?"+url.Values{"error": {"access_denied"}, "error_description": {"no \"thanks\""}, "error_uri": {"https://as.example/e"},
		"state": {state}, "iss": {h.is.URL}}.Encode(), http.Header{"Cookie": {cookies}}, "")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 302 || loc.Query().Get("error") != "access_denied" || loc.Query().Get("error_description") != "no  thanks" || loc.Query().Has("error_uri") {
		t.Errorf("the browser that started it: got %d %s", resp.StatusCode, loc)
	}
}

// TestFacadeConsentPerRedirectURI: consent covers one (client, redirect URI) pair, and the page names the URI.
func TestFacadeConsentPerRedirectURI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c := h.register(t, `{"client_name":"Mixed","redirect_uris":["http://127.0.0.1/callback","https://attacker.example/steal?x=1&y=2","cursor://anysphere.cursor-mcp/oauth/callback"],"token_endpoint_auth_method":"none"}`)["client_id"].(string)
	loopback := authorizeQuery(c)
	loopback.Set("redirect_uri", "http://127.0.0.1:4711/callback")
	cookies := h.consented(t, loopback)

	// The same pair on another loopback port: remembered.
	loopback.Set("redirect_uri", "http://127.0.0.1:4712/callback")
	if resp, state, _ := h.startSignIn(t, loopback, cookies, nil); resp.StatusCode != 302 || state == "" {
		t.Errorf("the allowed redirect URI on another port: got %d", resp.StatusCode)
	}
	// Another registered URI of the same client: a new consent page naming it in full, never a redirect.
	for _, uri := range []string{"https://attacker.example/steal?x=1&y=2", "cursor://anysphere.cursor-mcp/oauth/callback"} {
		q := authorizeQuery(c)
		q.Set("redirect_uri", uri)
		resp := h.send(t, "GET", "/authorize?"+q.Encode(), http.Header{"Cookie": {cookies}}, "")
		b := readBody(t, resp)
		if resp.StatusCode != 200 || resp.Header.Get("Location") != "" || !strings.Contains(b, `<code id="redirect-uri">`+template.HTMLEscapeString(uri)+`</code>`) {
			t.Errorf("%s: got %d, want the consent page naming it: %s", uri, resp.StatusCode, b)
		}
		// Its errors stay on a page too.
		q.Del("code_challenge")
		if resp := h.send(t, "GET", "/authorize?"+q.Encode(), http.Header{"Cookie": {cookies}}, ""); resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
			t.Errorf("%s without PKCE: got %d %q, want a page", uri, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestFacadePinsResourceAndScopes: resource is the gateway's, at /authorize and /token; GATEWAY_FACADE_SCOPES refuses
// other scopes; the consent page lists the scopes.
func TestFacadePinsResourceAndScopes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Scopes = []string{"openid", "profile", "email", "offline_access"} })
	c := h.register(t, publicClient)["client_id"].(string)
	q := authorizeQuery(c)
	q.Set("redirect_uri", "http://127.0.0.1:1/callback")

	graph := url.Values{}
	for k, v := range q {
		graph[k] = v
	}
	graph.Set("resource", "https://graph.example.com/")
	graph.Set("scope", "Mail.ReadWrite Directory.ReadWrite.All")
	resp := h.send(t, "GET", "/authorize?"+graph.Encode(), nil, "")
	if b := readBody(t, resp); resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(b, "tokens for resource "+h.resource+" only") {
		t.Errorf("another resource, no consent: got %d %s", resp.StatusCode, b)
	}
	graph.Set("resource", h.resource)
	if b := readBody(t, h.send(t, "GET", "/authorize?"+graph.Encode(), nil, "")); !strings.Contains(b, "a requested scope is not available here") || strings.Contains(b, "Mail.ReadWrite") {
		t.Errorf("a scope off the list, no consent: %s", b)
	}

	// The consent page shows the scopes; after Allow the upstream gets them and exactly this resource.
	q.Set("scope", "openid email")
	resp = h.send(t, "GET", "/authorize?"+q.Encode(), nil, "")
	if b := readBody(t, resp); !strings.Contains(b, `<ul id="scopes"><li><code>openid</code></li><li><code>email</code></li></ul>`) || !strings.Contains(b, h.resource) {
		t.Errorf("consent page without the scopes: %s", b)
	}
	cookies := h.consented(t, q)
	for _, tc := range []struct {
		name, resource, scope, code string
	}{
		{"another resource", "https://graph.example.com/", "openid", "invalid_target"},
		{"a resource with a trailing slash", h.resource + "/", "openid", "invalid_target"},
		{"a scope off the list", h.resource, "openid Mail.ReadWrite", "invalid_scope"},
	} {
		bad := url.Values{}
		for k, v := range q {
			bad[k] = v
		}
		bad.Set("resource", tc.resource)
		bad.Set("scope", tc.scope)
		resp := h.send(t, "GET", "/authorize?"+bad.Encode(), http.Header{"Cookie": {cookies}}, "")
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != 302 || loc.Host != "127.0.0.1:1" || loc.Query().Get("error") != tc.code {
			t.Errorf("%s, consented: got %d %s, want an %s redirect to the client", tc.name, resp.StatusCode, loc, tc.code)
		}
	}
	resp, _, _ = h.startSignIn(t, q, cookies, nil)
	up, _ := url.Parse(resp.Header.Get("Location"))
	if up.Query().Get("resource") != h.resource || up.Query().Get("scope") != "openid email" || len(up.Query()["resource"]) != 1 {
		t.Errorf("upstream: %s", up)
	}

	// /token: the same pin, before the authorization server is asked.
	n := h.tok.count()
	for _, tc := range []struct {
		name string
		form url.Values
		code string
	}{
		{"another resource", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"RT"}, "resource": {"https://graph.example.com/"}}, "invalid_target"},
		{"a scope off the list", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"RT"}, "scope": {"Directory.ReadWrite.All"}}, "invalid_scope"},
	} {
		tc.form.Set("client_id", c)
		resp := h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, tc.form.Encode())
		var e errorBody
		json.Unmarshal([]byte(readBody(t, resp)), &e)
		if resp.StatusCode != 400 || e.Error != tc.code {
			t.Errorf("token, %s: got %d %q, want 400 %s", tc.name, resp.StatusCode, e.Error, tc.code)
		}
	}
	if h.tok.count() != n {
		t.Error("the authorization server was asked")
	}
}

// TestFacadeScopesForClientsThatSendNone: the metadata advertise scopes, and a client that sends no scope gets the
// default sent upstream; an upstream refusal at the callback is logged.
func TestFacadeScopesForClientsThatSendNone(t *testing.T) {
	t.Parallel()
	upstreamScopes := []string{"openid", "profile", "email", "offline_access"}
	for _, tc := range []struct {
		name             string
		edit             func(*Config)
		wantAS, wantPRM  []string
		wantDefaultScope string
	}{
		{"the authorization server's", nil, upstreamScopes, []string{"openid", "profile", "email"}, "openid profile email"},
		{"GATEWAY_FACADE_SCOPES", func(c *Config) { c.Scopes = []string{"openid", "email", "offline_access"} },
			[]string{"openid", "email", "offline_access"}, []string{"openid", "email"}, "openid email"},
		{"GATEWAY_FACADE_DEFAULT_SCOPE", func(c *Config) { c.DefaultScope = []string{"openid", "offline_access"} },
			upstreamScopes, []string{"openid", "profile", "email"}, "openid offline_access"},
		{"GATEWAY_REQUIRED_SCOPES", func(c *Config) { c.RequiredScopes = []string{"mcp:tools"} },
			upstreamScopes, []string{"openid", "profile", "email", "mcp:tools"}, "openid profile email mcp:tools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessWith(t, tc.edit, withScopes(upstreamScopes))
			var as struct {
				ScopesSupported []string `json:"scopes_supported"`
			}
			json.Unmarshal([]byte(readBody(t, h.send(t, "GET", "/.well-known/oauth-authorization-server", nil, ""))), &as)
			prm := h.server.ResourceScopes(h.as.Load()) // the protected resource metadata's, which the gateway serves
			if !slices.Equal(as.ScopesSupported, tc.wantAS) || !slices.Equal(prm, tc.wantPRM) {
				t.Errorf("scopes_supported: AS %v, PRM %v; want %v, %v", as.ScopesSupported, prm, tc.wantAS, tc.wantPRM)
			}
			c := h.register(t, publicClient)["client_id"].(string)
			q := authorizeQuery(c)
			q.Set("redirect_uri", "http://127.0.0.1:1/callback")
			q.Del("scope")
			q.Del("resource")
			cookies := h.consented(t, q)
			resp, _, _ := h.startSignIn(t, q, cookies, nil)
			up, _ := url.Parse(resp.Header.Get("Location"))
			if up.Query().Get("scope") != tc.wantDefaultScope || up.Query().Get("resource") != h.resource {
				t.Errorf("upstream without a scope from the client: scope %q resource %q, want %q %q", up.Query().Get("scope"), up.Query().Get("resource"), tc.wantDefaultScope, h.resource)
			}
		})
	}

	// The upstream refused: its reason is noted (sanitized) for the callback's access line, and the client gets it.
	h := newHarnessWith(t, nil, withScopes(upstreamScopes))
	c := h.register(t, publicClient)["client_id"].(string)
	q := authorizeQuery(c)
	q.Set("redirect_uri", "http://127.0.0.1:1/callback")
	cookies := h.consented(t, q)
	_, state, cookies := h.startSignIn(t, q, cookies, nil)
	resp := h.send(t, "GET", "/callback?"+url.Values{"error": {"access_denied"}, "error_description": {"scope must be requested\n"}, "state": {state}, "iss": {h.is.URL}}.Encode(),
		http.Header{"Cookie": {cookies}}, "")
	if resp.StatusCode != 302 {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	if n := h.notes.last(t); n.path != "/callback" || !n.refused || n.attrs["upstream_error"] != "access_denied" ||
		n.attrs["upstream_error_description"] != "scope must be requested" {
		t.Errorf("the upstream's reason is not noted: %+v", n)
	}
}

// withScopes sets the authorization server's scopes_supported.
func withScopes(scopes []string) func(*metadata.AuthServer) {
	return func(as *metadata.AuthServer) { as.ScopesSupported = scopes }
}

// TestFacadeCallbackRequiresIss: with authorization_response_iss_parameter_supported upstream, a response without iss
// is refused.
func TestFacadeCallbackRequiresIss(t *testing.T) {
	t.Parallel()
	for _, advertised := range []bool{true, false} {
		h := newHarnessWith(t, nil, func(as *metadata.AuthServer) { as.AuthorizationResponseIssParameterSupported = advertised })
		c := h.register(t, publicClient)["client_id"].(string)
		q := authorizeQuery(c)
		q.Set("redirect_uri", "http://127.0.0.1:1/callback")
		cookies := h.consented(t, q)
		_, state, cookies := h.startSignIn(t, q, cookies, nil)
		resp := h.send(t, "GET", "/callback?"+url.Values{"code": {"c"}, "state": {state}}.Encode(), http.Header{"Cookie": {cookies}}, "")
		if want := map[bool]int{true: 400, false: 302}[advertised]; resp.StatusCode != want {
			t.Errorf("advertised %t, no iss: got %d, want %d", advertised, resp.StatusCode, want)
		}
		if advertised {
			if resp := h.send(t, "GET", "/callback?"+url.Values{"code": {"c"}, "state": {state}, "iss": {h.is.URL}}.Encode(), http.Header{"Cookie": {cookies}}, ""); resp.StatusCode != 302 {
				t.Errorf("the refusal spent the state: then with iss got %d", resp.StatusCode)
			}
		}
	}
}

// TestFacadeTokenAnswersJSON: whatever content type the upstream sends, /token answers application/json with nosniff;
// a body that is not JSON becomes a 502.
func TestFacadeTokenAnswersJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c, _, _ := h.signIn(t, publicClient)
	for _, tc := range []struct {
		name, ct, body string
		status         int
		wantBody       bool
	}{
		{"JSON sent as HTML", "text/html", `{"access_token":"<script>alert(1)</script>","token_type":"Bearer"}`, 200, true},
		{"an HTML error page", "text/html", `<html><script>alert(1)</script></html>`, 502, false},
		{"a JSON array", "application/json", `[1]`, 502, false},
	} {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", tc.ct)
			io.WriteString(w, tc.body)
		}))
		t.Cleanup(up.Close)
		h.as.Store(&metadata.AuthServer{Issuer: h.is.URL, AuthorizationEndpoint: h.is.URL + "/oauth2/authorize", TokenEndpoint: up.URL})
		resp := h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"RT"}, "client_id": {c}}.Encode())
		b := readBody(t, resp)
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
			(b == tc.body) != tc.wantBody || !json.Valid([]byte(b)) {
			t.Errorf("%s: got %d %q nosniff=%q %s", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-Content-Type-Options"), b)
		}
	}
}

// TestFacadeAPILimits: registrations and token requests are limited per address (and token requests per client) with
// 429, Retry-After and a JSON error; another address is not affected.
func TestFacadeAPILimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	from := func(addr string) http.Header {
		return http.Header{"Content-Type": {"application/json"}, "X-Forwarded-For": {addr}}
	}
	var last *http.Response
	for i := 0; i <= registersPerAddr; i++ {
		last = h.send(t, "POST", "/register", from("203.0.113.9"), publicClient)
	}
	var e errorBody
	json.Unmarshal([]byte(readBody(t, last)), &e)
	if last.StatusCode != 429 || last.Header.Get("Retry-After") == "" || e.Error == "" || last.Header.Get("Content-Type") != "application/json" {
		t.Errorf("registrations over the limit: got %d %q %+v", last.StatusCode, last.Header.Get("Retry-After"), e)
	}
	if resp := h.send(t, "POST", "/register", from("203.0.113.10"), publicClient); resp.StatusCode != 201 {
		t.Errorf("another address: got %d", resp.StatusCode)
	}

	c := h.register(t, publicClient)["client_id"].(string)
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"RT"}, "client_id": {c}}.Encode()
	n := h.tok.count()
	for i := 0; i <= tokensPerClient; i++ {
		last = h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Forwarded-For": {"198.51.100." + strconv.Itoa(i)}}, refresh)
	}
	if last.StatusCode != 429 || last.Header.Get("Retry-After") == "" || h.tok.count()-n != tokensPerClient {
		t.Errorf("token requests over the per-client limit: got %d, %d reached the authorization server", last.StatusCode, h.tok.count()-n)
	}
}

// failingStore is a replay memory that can be made to fail, as a shared store does while it is unreachable.
type failingStore struct {
	mu   sync.Mutex
	down bool
	set  *usedSet
	ttls []time.Duration
}

func (f *failingStore) Use(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ttls = append(f.ttls, ttl)
	if f.down {
		return false, errors.New("store unreachable")
	}
	return f.set.Use(ctx, id, ttl)
}

func (f *failingStore) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// TestFacadeCallbackFailsClosed: while the replay memory cannot answer, a callback is refused with a 503 page and
// Retry-After (never accepted: it could be a replay), the state is not spent, and the same callback completes once the
// memory answers again. The state is kept for its remaining lifetime plus a margin for clocks.
func TestFacadeCallbackFailsClosed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	store := &failingStore{set: newUsedSet(8), down: true}
	h.server.used = store
	c := h.register(t, publicClient)["client_id"].(string)
	q := authorizeQuery(c)
	q.Set("redirect_uri", "http://127.0.0.1:1/callback")
	_, state, cookies := h.startSignIn(t, q, h.consented(t, q), nil)
	cb := "/callback?" + url.Values{"code": {"c"}, "state": {state}, "iss": {h.is.URL}}.Encode()
	resp := h.send(t, "GET", cb, http.Header{"Cookie": {cookies}}, "")
	if b := readBody(t, resp); resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(b, "Reload this page") {
		t.Errorf("callback while the memory is down: got %d, Retry-After %q, want a 503 page with Retry-After 1\n%s",
			resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	store.setDown(false)
	if resp := h.send(t, "GET", cb, http.Header{"Cookie": {cookies}}, ""); resp.StatusCode != 302 {
		t.Errorf("the same callback once the memory answers: got %d, want 302", resp.StatusCode)
	}
	if resp := h.send(t, "GET", cb, http.Header{"Cookie": {cookies}}, ""); resp.StatusCode != 400 {
		t.Errorf("its replay: got %d, want 400", resp.StatusCode)
	}
	for _, ttl := range store.ttls {
		if ttl < stateTTL || ttl > stateTTL+time.Minute {
			t.Errorf("TTL asked of the store: got %s, want the state's lifetime plus at most a minute", ttl)
		}
	}
}
