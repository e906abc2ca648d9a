package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
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

type facadeHarness struct {
	*harness
	tok    *tokenRecorder
	client *http.Client // does not follow redirects
}

const upstreamClientID = "client_UPSTREAM"

func newFacadeHarness(t *testing.T, env map[string]string) *facadeHarness {
	t.Helper()
	m := map[string]string{
		"MCP_USE_OAUTH_WORKOS_CLIENT_ID":     upstreamClientID,
		"MCP_USE_OAUTH_WORKOS_CLIENT_SECRET": "upstream secret",
		"GATEWAY_SESSION_SECRET":             strings.Repeat("s", 32),
	}
	for k, v := range env {
		m[k] = v
	}
	h := &facadeHarness{harness: newHarness(t, m, false), tok: &tokenRecorder{status: 200, body: `{"access_token":"at","token_type":"Bearer"}`}}
	tokSrv := httptest.NewServer(h.tok)
	t.Cleanup(tokSrv.Close)
	h.is.extraMeta = map[string]any{"token_endpoint": tokSrv.URL + "/oauth2/token"}
	if err := h.gw.discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return h
}

// send makes a request to the gateway with the jar's cookies, without following redirects.
func (h *facadeHarness) send(t *testing.T, method, path string, hdr http.Header, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (h *facadeHarness) register(t *testing.T, body string) map[string]any {
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
		"resource": {"http://example/mcp"}, "prompt": {"consent"}, "login_hint": {"a@example.com"},
	}
}

var (
	hiddenRE = regexp.MustCompile(`name="(request|csrf)" value="([^"]*)"`)
)

// consentForm fetches the consent page and returns its hidden fields and the cookies it set.
func (h *facadeHarness) consentForm(t *testing.T, q url.Values, cookies string) (url.Values, string) {
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

func joinCookie(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// allow posts the consent form and returns the response.
func (h *facadeHarness) decide(t *testing.T, form url.Values, decision, cookies string) *http.Response {
	t.Helper()
	form.Set("decision", decision)
	return h.send(t, "POST", "/authorize", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Cookie": {cookies}, "Origin": {h.srv.URL}}, form.Encode())
}

// signIn runs register → consent → upstream redirect → callback and returns the client id, secret and the query
// of the redirect to the client.
func (h *facadeHarness) signIn(t *testing.T, regBody string) (clientID, secret string, back url.Values) {
	t.Helper()
	reg := h.register(t, regBody)
	clientID, _ = reg["client_id"].(string)
	secret, _ = reg["client_secret"].(string)
	form, cookies := h.consentForm(t, authorizeQuery(clientID), "")
	resp := h.decide(t, form, "allow", cookies)
	if resp.StatusCode != 302 {
		t.Fatalf("allow: %d %s", resp.StatusCode, readBody(t, resp))
	}
	up, _ := url.Parse(resp.Header.Get("Location"))
	resp = h.send(t, "GET", "/callback?"+url.Values{"code": {"UPCODE"}, "state": {up.Query().Get("state")}, "iss": {h.is.URL}}.Encode(), nil, "")
	if resp.StatusCode != 302 {
		t.Fatalf("callback: %d %s", resp.StatusCode, readBody(t, resp))
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return clientID, secret, loc.Query()
}

const publicClient = `{"client_name":"Test <App>","redirect_uris":["http://127.0.0.1:1/callback"],"token_endpoint_auth_method":"none"}`

func TestFacadeMetadata(t *testing.T) {
	t.Parallel()
	h := newFacadeHarness(t, nil)
	var prm struct {
		AuthorizationServers []string `json:"authorization_servers"`
	}
	json.Unmarshal([]byte(readBody(t, h.send(t, "GET", "/.well-known/oauth-protected-resource/mcp", nil, ""))), &prm)
	if len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != h.srv.URL {
		t.Errorf("PRM authorization_servers: got %q, want [%s]", prm.AuthorizationServers, h.srv.URL)
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
	h := newFacadeHarness(t, nil)
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
		"code_challenge_method": "S256", "scope": "openid offline_access", "resource": "http://example/mcp", "prompt": "consent",
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
	resp = h.send(t, "GET", cb, nil, "")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	back := loc.Query()
	if resp.StatusCode != 302 || loc.Host != "127.0.0.1:8976" || back.Get("state") != "client-state" || back.Get("iss") != h.srv.URL ||
		back.Get("code") == "" || back.Get("code") == "UPCODE" {
		t.Fatalf("callback: %d %s", resp.StatusCode, loc)
	}
	if resp := h.send(t, "GET", cb, nil, ""); resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("replayed state: got %d, want 400 without a redirect", resp.StatusCode)
	}

	// Token: the upstream sees its own client, code and callback; the answer comes back untouched.
	h.tok.status, h.tok.body = 200, `{"access_token":"AT","token_type":"Bearer","refresh_token":"RT","expires_in":60}`
	tokForm := url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "redirect_uri": {clientRedirect},
		"client_id": {clientID}, "code_verifier": {"verifier"}, "resource": {"http://example/mcp"}}
	resp = h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, tokForm.Encode())
	if b := readBody(t, resp); resp.StatusCode != 200 || b != h.tok.body || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("token: %d %s", resp.StatusCode, b)
	}
	got := h.tok.last(t)
	if got.form.Get("code") != "UPCODE" || got.form.Get("redirect_uri") != h.srv.URL+"/callback" || got.form.Get("code_verifier") != "verifier" ||
		got.form.Get("resource") != "http://example/mcp" || !got.basic || got.user != upstreamClientID || got.pass != "upstream secret" {
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
			h := newFacadeHarness(t, map[string]string{"GATEWAY_CLIENT_AUTH_METHOD": "client_secret_post"})
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
	h := newFacadeHarness(t, nil)
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
	page("another issuer", h.send(t, "GET", "/callback?"+url.Values{"code": {"c"}, "state": {state}, "iss": {"https://evil.example"}}.Encode(), nil, ""), 400, "another authorization server")
	allow = h.decide(t, url.Values{"request": {form.Get("request")}, "csrf": {form.Get("csrf")}}, "allow", cookies)
	up, _ = url.Parse(allow.Header.Get("Location"))
	h.clock.Add(stateTTL + time.Second)
	page("expired state", h.send(t, "GET", "/callback?"+url.Values{"code": {"c"}, "state": {up.Query().Get("state")}}.Encode(), nil, ""), 400, "expired")
	h.clock.Add(pendingTTL)
	page("expired consent form", h.decide(t, url.Values{"request": {form.Get("request")}, "csrf": {form.Get("csrf")}}, "allow", cookies), 400, "expired")
}

func TestFacadeTokenRefusals(t *testing.T) {
	t.Parallel()
	h := newFacadeHarness(t, nil)
	clientID, _, back := h.signIn(t, publicClient)
	otherID := h.register(t, publicClient)["client_id"].(string)
	token := func(form url.Values) (int, string) {
		resp := h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form.Encode())
		var e errorBody
		json.Unmarshal([]byte(readBody(t, resp)), &e)
		return resp.StatusCode, e.Error
	}
	for _, tc := range []struct {
		name       string
		form       url.Values
		status     int
		code       string
		reachesAS  bool
		secretSent bool
	}{
		{"another client's code", url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {otherID}}, 400, "invalid_grant", false, false},
		{"forged code", url.Values{"grant_type": {"authorization_code"}, "code": {"UPCODE"}, "client_id": {clientID}}, 400, "invalid_grant", false, false},
		{"a state as a code", url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("state")}, "client_id": {clientID}}, 400, "invalid_grant", false, false},
		{"other redirect_uri", url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {clientID}, "redirect_uri": {"http://127.0.0.1:8976/other"}}, 400, "invalid_grant", false, false},
		{"forged client id", url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {clientID + "x"}}, 401, "invalid_client", false, false},
		{"client_credentials", url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}}, 200, "", true, false},
	} {
		n := h.tok.count()
		status, code := token(tc.form)
		if status != tc.status || code != tc.code {
			t.Errorf("%s: got %d %q, want %d %q", tc.name, status, code, tc.status, tc.code)
		}
		if reached := h.tok.count() > n; reached != tc.reachesAS {
			t.Errorf("%s: reached the authorization server: %t", tc.name, reached)
		}
		if tc.reachesAS {
			if got := h.tok.last(t); got.basic || got.form.Has("client_secret") || got.form.Get("client_id") != upstreamClientID {
				t.Errorf("%s: the secret was added: %+v", tc.name, got)
			}
		}
	}
	h.clock.Add(codeTTL + time.Second)
	if status, code := token(url.Values{"grant_type": {"authorization_code"}, "code": {back.Get("code")}, "client_id": {clientID}}); status != 400 || code != "invalid_grant" {
		t.Errorf("expired code: got %d %q", status, code)
	}
}

func TestFacadeOwnsItsPathsOnlyInOptionB(t *testing.T) {
	t.Parallel()
	a := newHarness(t, nil, true)
	for _, p := range []string{"/authorize", "/token", "/register", "/callback"} {
		if resp := a.do(t, "GET", p, "", nil, ""); resp.StatusCode != 401 {
			t.Errorf("Option A %s: got %d, want 401 (forwarded, authenticated)", p, resp.StatusCode)
		}
	}
	if _, err := LoadConfig(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "MCP_USE_OAUTH_WORKOS_CLIENT_ID": "c", "GATEWAY_MCP_PATH": "/token"}); err == nil ||
		!strings.Contains(err.Error(), "GATEWAY_MCP_PATH") {
		t.Errorf("MCP path /token in Option B: got %v", err)
	}
	if _, err := LoadConfig(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "MCP_USE_OAUTH_WORKOS_CLIENT_SECRET": "s"}); err == nil ||
		!strings.Contains(err.Error(), "MCP_USE_OAUTH_WORKOS_CLIENT_SECRET") {
		t.Errorf("a secret without a client id: got %v", err)
	}
	if _, err := LoadConfig(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "MCP_USE_OAUTH_WORKOS_CLIENT_ID": "c", "GATEWAY_CLIENT_AUTH_METHOD": "private_key_jwt"}); err == nil {
		t.Error("GATEWAY_CLIENT_AUTH_METHOD private_key_jwt accepted")
	}
	b := newFacadeHarness(t, nil)
	if resp := b.send(t, "POST", "/mcp", nil, "{}"); resp.StatusCode != 401 {
		t.Errorf("Option B MCP path: got %d, want 401", resp.StatusCode)
	}
	if resp := b.send(t, "OPTIONS", "/token", http.Header{"Origin": {"http://localhost:6274"}, "Access-Control-Request-Method": {"POST"}}, ""); resp.StatusCode != 204 ||
		resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("token preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestFacadeMetadataGolden(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example.com", "GATEWAY_PUBLIC_URL": "https://mcp.example.com",
		"MCP_USE_OAUTH_WORKOS_CLIENT_ID": upstreamClientID})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-authorization-server", nil))
	if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("got %d %v", rec.Code, rec.Header())
	}
	golden(t, "facade_metadata.golden", rec.Body.String())
}

func TestFacadeCookiesOnHTTPS(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example.com", "GATEWAY_PUBLIC_URL": "https://mcp.example.com",
		"MCP_USE_OAUTH_WORKOS_CLIENT_ID": upstreamClientID})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := g.facade.seal.clientID(registration{Name: "c", RedirectURIs: []string{"http://127.0.0.1:1/cb"}, AuthMethod: "none"})
	g.upstreamAS.Store(&metadata.AuthServer{Issuer: "https://as.example.com", AuthorizationEndpoint: "https://as.example.com/authorize"})
	q := authorizeQuery(reg)
	q.Set("redirect_uri", "http://127.0.0.1:1/cb")
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "https://mcp.example.com/authorize?"+q.Encode(), nil))
	cookies := rec.Result().Cookies()
	if rec.Code != 200 || len(cookies) != 1 || cookies[0].Name != "__Host-mcpgw-csrf" || !cookies[0].Secure || !cookies[0].HttpOnly ||
		cookies[0].Path != "/" || cookies[0].Domain != "" || cookies[0].SameSite != http.SameSiteLaxMode {
		t.Errorf("got %d, cookies %+v", rec.Code, cookies)
	}
}
