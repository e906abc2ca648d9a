package devauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/token"
)

const resource = "http://localhost:3000/mcp"

// testKey is one RSA key for every test: generating one per server would make the tests slow.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// testServer is a devauth Server on a real loopback listener, with a settable clock.
type testServer struct {
	*Server
	url string
	now atomic.Int64 // unix nanoseconds
}

func newTestServer(t *testing.T, mod func(*Options)) *testServer {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	s := &testServer{url: "http://" + ts.Listener.Addr().String()}
	s.now.Store(time.Now().UnixNano())
	o := Options{Issuer: s.url, Resource: resource, Key: testKey(), Now: func() time.Time { return time.Unix(0, s.now.Load()) }}
	if mod != nil {
		mod(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.Server = srv
	ts.Config.Handler = srv
	ts.Start()
	t.Cleanup(ts.Close)
	return s
}

func (s *testServer) advance(d time.Duration) { s.now.Add(int64(d)) }

// browser is an HTTP client with a cookie jar that does not follow redirects.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return do(t, c, req)
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req)
}

// register registers a client with the given redirect URIs and returns its id.
func (s *testServer) register(t *testing.T, redirectURIs ...string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"redirect_uris": redirectURIs, "client_name": "Test client", "token_endpoint_auth_method": "none"})
	resp, err := http.Post(s.url+"/oauth2/register", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ClientID string `json:"client_id"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusCreated || out.ClientID == "" {
		t.Fatalf("register: got %d, client_id %q", resp.StatusCode, out.ClientID)
	}
	return out.ClientID
}

// pkce returns a code verifier and its S256 challenge, computed here rather than with the package's own function.
func pkce() (verifier, challenge string) {
	b := make([]byte, 32)
	rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(h[:])
}

// authParams are the parameters of a valid authorization request.
func authParams(clientID, redirectURI, challenge string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"st-1"}, "resource": {resource},
	}
}

// callback parses a redirect to the client.
func callback(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("got status %d, want a redirect to the client", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

var csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// signInAndConsent walks the pages in browser c as user, and returns the redirect to the client.
func (s *testServer) signInAndConsent(t *testing.T, c *http.Client, params url.Values, user, decision string) url.Values {
	t.Helper()
	resp, _ := get(t, c, s.url+"/oauth2/authorize?"+params.Encode())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize: got %d, want 303 to the sign-in page", resp.StatusCode)
	}
	page := s.url + resp.Header.Get("Location")
	resp, body := get(t, c, page)
	m := csrfField.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil || !strings.Contains(body, `value="`+user+`"`) {
		t.Fatalf("sign-in page: got %d without a form for %s:\n%s", resp.StatusCode, user, body)
	}
	resp, _ = postForm(t, c, page+"/sign-in", url.Values{"csrf_token": {m[1]}, "user": {user}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: got %d, want 303", resp.StatusCode)
	}
	resp, body = get(t, c, page)
	if resp.StatusCode != 200 || !strings.Contains(body, `value="allow"`) {
		t.Fatalf("consent page: got %d:\n%s", resp.StatusCode, body)
	}
	resp, _ = postForm(t, c, page+"/consent", url.Values{"csrf_token": {m[1]}, "decision": {decision}})
	return callback(t, resp)
}

// tokenResponse is the token endpoint's answer, success or error.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope"`
	ExpiresIn    int    `json:"expires_in"`
	Error        string `json:"error"`
	status       int
}

func (s *testServer) token(t *testing.T, form url.Values) tokenResponse {
	t.Helper()
	resp, body := postForm(t, http.DefaultClient, s.url+"/oauth2/token", form)
	var tr tokenResponse
	if err := json.Unmarshal([]byte(body), &tr); err != nil {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	tr.status = resp.StatusCode
	return tr
}

// autoCode gets a code through AutoLogin.
func (s *testServer) autoCode(t *testing.T, params url.Values) string {
	t.Helper()
	resp, _ := get(t, browser(t), s.url+"/oauth2/authorize?"+params.Encode())
	q := callback(t, resp)
	if q.Get("code") == "" {
		t.Fatalf("no code in %v", q)
	}
	return q.Get("code")
}

// verifier is the real gateway verifier, configured for s.
func (s *testServer) verifier(t *testing.T, audiences ...string) *token.Verifier {
	t.Helper()
	ks := token.NewKeySet(token.KeySetOptions{URL: s.url + "/oauth2/jwks", Algs: []string{"RS256"}})
	if err := ks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return token.NewVerifier(token.VerifierOptions{Keys: ks, Issuer: s.url, Audiences: audiences, Skew: time.Minute})
}

func TestNewRefusesNonLoopbackIssuer(t *testing.T) {
	t.Parallel()
	for _, iss := range []string{"https://auth.example.com", "http://10.0.0.1:3002", "http://0.0.0.0:3002", "http://127.0.0.1:3002/path", ""} {
		if _, err := New(Options{Issuer: iss, Resource: resource, Key: testKey()}); err == nil {
			t.Errorf("New with issuer %q: got nil error", iss)
		}
	}
	if _, err := New(Options{Issuer: "http://127.0.0.1:3002", Resource: resource, Key: testKey(), AutoLogin: "nobody@example.com"}); err == nil {
		t.Error("New with an unknown autologin user: got nil error")
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp, body := get(t, http.DefaultClient, s.url+path)
		var m map[string]any
		json.Unmarshal([]byte(body), &m)
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: got %d, CORS %q", path, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		for k, want := range map[string]any{
			"issuer": s.url, "registration_endpoint": s.url + "/oauth2/register", "jwks_uri": s.url + "/oauth2/jwks",
			"code_challenge_methods_supported": []any{"S256"}, "authorization_response_iss_parameter_supported": true,
			"token_endpoint_auth_methods_supported": []any{"none"},
		} {
			if got, _ := json.Marshal(m[k]); string(got) != mustJSON(want) {
				t.Errorf("%s %s: got %s, want %s", path, k, got, mustJSON(want))
			}
		}
		if _, ok := m["client_id_metadata_document_supported"]; ok {
			t.Errorf("%s advertises CIMD, which needs fetching https documents", path)
		}
	}
}

func TestRefusesOtherHosts(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	_, port, _ := strings.Cut(strings.TrimPrefix(s.url, "http://"), ":")
	for _, tc := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:" + port, 200},
		{"localhost:" + port, 200},
		{"[::1]:" + port, 200},
		{"attacker.example.com:" + port, http.StatusMisdirectedRequest}, // DNS rebinding
		{"127.0.0.1:1", http.StatusMisdirectedRequest},
		{"localhost", http.StatusMisdirectedRequest},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/.well-known/oauth-authorization-server", nil)
		req.Host = tc.host
		if resp, _ := do(t, http.DefaultClient, req); resp.StatusCode != tc.want {
			t.Errorf("Host %s: got %d, want %d", tc.host, resp.StatusCode, tc.want)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRegistration(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	for _, tc := range []struct {
		name string
		body string
		code int
		err  string
	}{
		{"loopback http", `{"redirect_uris":["http://localhost:6274/oauth/callback"],"token_endpoint_auth_method":"none"}`, 201, ""},
		{"ipv6 loopback", `{"redirect_uris":["http://[::1]:8080/cb"]}`, 201, ""},
		{"https and custom scheme", `{"redirect_uris":["https://app.example.com/cb","com.example.app:/oauth"]}`, 201, ""},
		{"confidential request gets a public client", `{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}`, 201, ""},
		{"no redirect uris", `{"client_name":"x"}`, 400, "invalid_redirect_uri"},
		{"http on another host", `{"redirect_uris":["http://evil.example.com/cb"]}`, 400, "invalid_redirect_uri"},
		{"javascript scheme", `{"redirect_uris":["javascript:alert(1)"]}`, 400, "invalid_redirect_uri"},
		{"fragment", `{"redirect_uris":["http://localhost/cb#x"]}`, 400, "invalid_redirect_uri"},
		{"relative", `{"redirect_uris":["/cb"]}`, 400, "invalid_redirect_uri"},
		{"client credentials grant", `{"redirect_uris":["http://localhost/cb"],"grant_types":["client_credentials"]}`, 400, "invalid_client_metadata"},
		{"not json", `redirect_uris=x`, 400, "invalid_client_metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(s.url+"/oauth2/register", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var out map[string]any
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode != tc.code || (tc.err != "" && out["error"] != tc.err) {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, out, tc.code, tc.err)
			}
			if tc.code != 201 {
				return
			}
			var req map[string]any
			json.Unmarshal([]byte(tc.body), &req)
			if mustJSON(out["redirect_uris"]) != mustJSON(req["redirect_uris"]) {
				t.Errorf("redirect_uris: got %v, want the request's %v", out["redirect_uris"], req["redirect_uris"])
			}
			if out["token_endpoint_auth_method"] != "none" || !strings.HasPrefix(out["client_id"].(string), "client_") {
				t.Errorf("got %v, want a public client with a client_… id", out)
			}
		})
	}

	// Preflight for browser clients.
	req, _ := http.NewRequest(http.MethodOptions, s.url+"/oauth2/register", nil)
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, _ := do(t, http.DefaultClient, req)
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Allow-Headers") != "content-type" {
		t.Errorf("preflight: got %d %v", resp.StatusCode, resp.Header)
	}
}

func TestRedirectMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		registered, requested string
		want                  bool
	}{
		{"http://localhost:6274/oauth/callback", "http://localhost:6274/oauth/callback", true},
		{"http://localhost:6274/oauth/callback", "http://localhost:51234/oauth/callback", true},
		{"http://localhost/callback", "http://localhost:51234/callback", true},
		{"http://127.0.0.1:1/cb", "http://127.0.0.1:2/cb", true},
		{"http://[::1]:1/cb", "http://[::1]:2/cb", true},
		{"http://localhost:1/cb", "http://127.0.0.1:1/cb", false},
		{"http://localhost:1/cb", "http://localhost:1/other", false},
		{"http://localhost:1/cb", "http://localhost:1/cb?x=1", false},
		{"http://localhost:1/cb", "https://localhost:1/cb", false},
		{"https://app.example.com/cb", "https://app.example.com:8443/cb", false},
		{"https://app.example.com/cb", "https://app.example.com/cb/", false},
		{"com.example.app:/oauth", "com.example.app:/oauth", true},
	} {
		if got := redirectMatches(tc.registered, tc.requested); got != tc.want {
			t.Errorf("redirectMatches(%q, %q): got %t, want %t", tc.registered, tc.requested, got, tc.want)
		}
	}
}

func TestAuthorizeErrors(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	id := s.register(t, "http://localhost:8080/cb")
	_, challenge := pkce()
	for _, tc := range []struct {
		name     string
		change   func(url.Values)
		page     bool // shown to the user, not sent to the client
		wantCode string
	}{
		{"unknown client", func(q url.Values) { q.Set("client_id", "client_nope") }, true, ""},
		{"redirect uri not registered", func(q url.Values) { q.Set("redirect_uri", "http://localhost:8080/other") }, true, ""},
		{"redirect uri on another host", func(q url.Values) { q.Set("redirect_uri", "http://evil.example.com/cb") }, true, ""},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, false, "invalid_request"},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") }, false, "invalid_request"},
		{"PKCE method missing", func(q url.Values) { q.Del("code_challenge_method") }, false, "invalid_request"},
		{"malformed challenge", func(q url.Values) { q.Set("code_challenge", "short") }, false, "invalid_request"},
		{"implicit flow", func(q url.Values) { q.Set("response_type", "token") }, false, "unsupported_response_type"},
		{"another resource", func(q url.Values) { q.Set("resource", "https://other.example.com/mcp") }, false, "invalid_target"},
		{"repeated state", func(q url.Values) { q.Add("state", "again") }, false, "invalid_request"},
		{"prompt none without a session", func(q url.Values) { q.Set("prompt", "none") }, false, "login_required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := authParams(id, "http://localhost:8080/cb", challenge)
			tc.change(q)
			resp, body := get(t, browser(t), s.url+"/oauth2/authorize?"+q.Encode())
			if tc.page {
				if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
					t.Fatalf("got %d Location %q, want a 400 page and no redirect", resp.StatusCode, resp.Header.Get("Location"))
				}
				if strings.Contains(body, "href=") {
					t.Error("the error page links somewhere; it must not send the user to an untrusted redirect URI")
				}
				return
			}
			cb := callback(t, resp)
			wantState := q.Get("state")
			if len(q["state"]) > 1 {
				wantState = "" // which one?
			}
			if cb.Get("error") != tc.wantCode || cb.Get("state") != wantState || cb.Get("iss") != s.url {
				t.Errorf("got %v, want error=%s with state and iss", cb, tc.wantCode)
			}
			if !strings.HasPrefix(resp.Header.Get("Location"), "http://localhost:8080/cb?") {
				t.Errorf("redirected to %q, want the registered redirect URI", resp.Header.Get("Location"))
			}
		})
	}
}

func TestSignInConsentAndToken(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	id := s.register(t, "http://127.0.0.1/callback")
	verifier, challenge := pkce()
	params := authParams(id, "http://127.0.0.1:49152/callback", challenge) // another port than registered
	params.Set("scope", "openid email")
	params.Set("nonce", "n-1")
	cb := s.signInAndConsent(t, browser(t), params, "user_dev_admin", "allow")
	if cb.Get("code") == "" || cb.Get("state") != "st-1" || cb.Get("iss") != s.url {
		t.Fatalf("callback: got %v, want code, state and iss", cb)
	}
	tr := s.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {cb.Get("code")}, "code_verifier": {verifier},
		"client_id": {id}, "redirect_uri": {"http://127.0.0.1:49152/callback"}, "resource": {resource}})
	if tr.status != 200 || tr.TokenType != "Bearer" || tr.RefreshToken == "" || tr.IDToken == "" || tr.Scope != "openid email" {
		t.Fatalf("token: got %+v", tr)
	}

	// The real gateway verifier accepts the token and reads an AuthKit-shaped identity from it.
	p, err := s.verifier(t, resource).Verify(context.Background(), tr.AccessToken)
	if err != nil {
		t.Fatalf("gateway verifier: %v", err)
	}
	got := p.Identity
	if got.UserID != "user_dev_admin" || got.Email != "admin@example.com" || got.Name != "Ada Admin" || got.OrgID != "org_dev_acme" ||
		!strings.HasPrefix(got.SessionID, "session_") || got.ClientID != id || !slices.Equal(got.Roles, []string{"admin"}) ||
		!slices.Contains(got.Permissions, "users:write") || !slices.Equal(got.Scopes, []string{"openid", "email"}) {
		t.Errorf("identity: got %+v", got)
	}
	var claims map[string]any
	json.Unmarshal(got.Claims, &claims)
	if claims["aud"] != resource || claims["jti"] == "" || claims["iss"] != s.url {
		t.Errorf("claims: got %v", claims)
	}
	// A gateway for another resource refuses it.
	if _, err := s.verifier(t, "https://other.example.com/mcp").Verify(context.Background(), tr.AccessToken); err == nil {
		t.Error("a verifier for another audience accepted the token")
	}
}

func TestConsentDenied(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	id := s.register(t, "http://localhost:1/cb")
	_, challenge := pkce()
	cb := s.signInAndConsent(t, browser(t), authParams(id, "http://localhost:1/cb", challenge), "user_dev_member", "deny")
	if cb.Get("error") != "access_denied" || cb.Get("code") != "" || cb.Get("iss") != s.url || cb.Get("state") != "st-1" {
		t.Errorf("got %v, want access_denied with state and iss", cb)
	}
}

func TestFormsAreCSRFProtected(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	id := s.register(t, "http://localhost:1/cb")
	_, challenge := pkce()
	victim := browser(t)
	resp, _ := get(t, victim, s.url+"/oauth2/authorize?"+authParams(id, "http://localhost:1/cb", challenge).Encode())
	page := s.url + resp.Header.Get("Location")
	resp, body := get(t, victim, page)
	for k, want := range map[string]string{
		"Content-Security-Policy": "frame-ancestors 'none'",
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-store",
	} {
		if !strings.Contains(resp.Header.Get(k), want) {
			t.Errorf("sign-in page %s: got %q, want %q", k, resp.Header.Get(k), want)
		}
	}
	if strings.Contains(body, "<script") {
		t.Error("the sign-in page has a script; it must work without JavaScript")
	}
	token := csrfField.FindStringSubmatch(body)[1]

	// An attacker's own, valid interaction, in the attacker's browser.
	attacker := browser(t)
	resp, _ = get(t, attacker, s.url+"/oauth2/authorize?"+authParams(id, "http://localhost:1/cb", challenge).Encode())
	attackerPage := s.url + resp.Header.Get("Location")
	_, attackerBody := get(t, attacker, attackerPage)
	attackerToken := csrfField.FindStringSubmatch(attackerBody)[1]

	for _, tc := range []struct {
		name   string
		client *http.Client
		page   string
		token  string
	}{
		{"no cookie (another site's form)", &http.Client{CheckRedirect: victim.CheckRedirect}, page, token},
		{"no csrf_token", victim, page, ""},
		{"wrong csrf_token", victim, page, attackerToken},
		{"attacker's interaction in the victim's browser", victim, attackerPage, attackerToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"user": {"user_dev_admin"}}
			if tc.token != "" {
				form.Set("csrf_token", tc.token)
			}
			if resp, _ := postForm(t, tc.client, tc.page+"/sign-in", form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("sign-in: got %d, want 403", resp.StatusCode)
			}
			form.Set("decision", "allow")
			if resp, _ := postForm(t, tc.client, tc.page+"/consent", form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("consent: got %d, want 403", resp.StatusCode)
			}
		})
	}
	// The victim's own form still works.
	if resp, _ := postForm(t, victim, page+"/sign-in", url.Values{"csrf_token": {token}, "user": {"user_dev_admin"}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the genuine form: got %d, want 303", resp.StatusCode)
	}
}

func TestPKCEEnforcedAtTokenEndpoint(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(o *Options) { o.AutoLogin = "member@example.com" })
	id := s.register(t, "http://localhost:1/cb")
	verifier, challenge := pkce()
	other, _ := pkce()
	base := func(code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {id}, "redirect_uri": {"http://localhost:1/cb"}}
	}
	for _, tc := range []struct {
		name     string
		verifier string
		wantErr  string
	}{
		{"missing verifier", "", "invalid_request"},
		{"wrong verifier", other, "invalid_grant"},
		{"the challenge as verifier (plain)", challenge, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := base(s.autoCode(t, authParams(id, "http://localhost:1/cb", challenge)))
			if tc.verifier != "" {
				form.Set("code_verifier", tc.verifier)
			}
			if tr := s.token(t, form); tr.Error != tc.wantErr || tr.AccessToken != "" {
				t.Errorf("got %+v, want %s", tr, tc.wantErr)
			}
		})
	}

	code := s.autoCode(t, authParams(id, "http://localhost:1/cb", challenge))
	form := base(code)
	form.Set("code_verifier", verifier)
	first := s.token(t, form)
	if first.status != 200 {
		t.Fatalf("right verifier: got %+v", first)
	}
	// The code works once; its second use also revokes the refresh token it produced.
	if tr := s.token(t, form); tr.Error != "invalid_grant" {
		t.Errorf("code used twice: got %+v, want invalid_grant", tr)
	}
	if tr := s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}, "client_id": {id}}); tr.Error != "invalid_grant" {
		t.Errorf("refresh after code reuse: got %+v, want invalid_grant", tr)
	}
}

func TestTokenRequestChecks(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(o *Options) { o.AutoLogin = "user_dev_admin" })
	id := s.register(t, "http://localhost:1/cb")
	otherClient := s.register(t, "http://localhost:2/cb")
	verifier, challenge := pkce()
	for _, tc := range []struct {
		name    string
		change  func(url.Values)
		wantErr string
	}{
		{"another client", func(f url.Values) { f.Set("client_id", otherClient) }, "invalid_grant"},
		{"unknown client", func(f url.Values) { f.Set("client_id", "client_nope") }, "invalid_client"},
		{"another redirect uri", func(f url.Values) { f.Set("redirect_uri", "http://localhost:1/other") }, "invalid_grant"},
		{"another resource", func(f url.Values) { f.Set("resource", "https://other.example.com/mcp") }, "invalid_target"},
		{"unknown grant type", func(f url.Values) { f.Set("grant_type", "password") }, "unsupported_grant_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"authorization_code"}, "code": {s.autoCode(t, authParams(id, "http://localhost:1/cb", challenge))},
				"code_verifier": {verifier}, "client_id": {id}, "redirect_uri": {"http://localhost:1/cb"}}
			tc.change(form)
			if tr := s.token(t, form); tr.Error != tc.wantErr {
				t.Errorf("got %+v, want %s", tr, tc.wantErr)
			}
		})
	}
	t.Run("expired code", func(t *testing.T) {
		s := newTestServer(t, func(o *Options) { o.AutoLogin = "user_dev_admin" })
		id := s.register(t, "http://localhost:1/cb")
		code := s.autoCode(t, authParams(id, "http://localhost:1/cb", challenge))
		s.advance(DefaultCodeTTL + time.Second)
		tr := s.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "client_id": {id}, "redirect_uri": {"http://localhost:1/cb"}})
		if tr.Error != "invalid_grant" {
			t.Errorf("got %+v, want invalid_grant", tr)
		}
	})
}

func TestRefreshTokenRotation(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(o *Options) { o.AutoLogin = "user_dev_member" })
	id := s.register(t, "http://localhost:1/cb")
	verifier, challenge := pkce()
	first := s.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {s.autoCode(t, authParams(id, "http://localhost:1/cb", challenge))},
		"code_verifier": {verifier}, "client_id": {id}, "redirect_uri": {"http://localhost:1/cb"}})
	refresh := func(rt string) tokenResponse {
		return s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {id}, "resource": {resource}})
	}
	second := refresh(first.RefreshToken)
	if second.status != 200 || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.IDToken != "" {
		t.Fatalf("refresh: got %+v, want a new refresh token", second)
	}
	if _, err := s.verifier(t, resource).Verify(context.Background(), second.AccessToken); err != nil {
		t.Errorf("refreshed access token: %v", err)
	}
	// The first refresh token is spent; presenting it again revokes the whole authorization, the new one included.
	if tr := refresh(first.RefreshToken); tr.Error != "invalid_grant" {
		t.Errorf("spent refresh token: got %+v, want invalid_grant", tr)
	}
	if tr := refresh(second.RefreshToken); tr.Error != "invalid_grant" {
		t.Errorf("refresh token after reuse was detected: got %+v, want invalid_grant", tr)
	}

	// Another client cannot use a refresh token, and does not burn it.
	other := s.register(t, "http://localhost:2/cb")
	third := s.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {s.autoCode(t, authParams(id, "http://localhost:1/cb", challenge))},
		"code_verifier": {verifier}, "client_id": {id}, "redirect_uri": {"http://localhost:1/cb"}})
	if tr := s.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {third.RefreshToken}, "client_id": {other}}); tr.Error != "invalid_grant" {
		t.Errorf("another client's refresh: got %+v, want invalid_grant", tr)
	}
	if tr := refresh(third.RefreshToken); tr.status != 200 {
		t.Errorf("refresh by its own client after another client tried: got %+v", tr)
	}
}

func TestResourceBecomesAudience(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(o *Options) { o.AutoLogin = "user_dev_guest" })
	id := s.register(t, "http://localhost:1/cb")
	verifier, challenge := pkce()
	for _, tc := range []struct {
		name     string
		resource []string
	}{
		{"resource requested", []string{resource}},
		{"no resource: the gateway's resource", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := authParams(id, "http://localhost:1/cb", challenge)
			q["resource"] = tc.resource
			tr := s.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {s.autoCode(t, q)}, "code_verifier": {verifier}, "client_id": {id}, "redirect_uri": {"http://localhost:1/cb"}})
			p, err := s.verifier(t, resource).Verify(context.Background(), tr.AccessToken)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if !slices.Equal(p.Audience, []string{resource}) || p.Identity.OrgID != "" || len(p.Identity.Roles) != 0 {
				t.Errorf("got aud %v and identity %+v, want aud %s and a user without organization", p.Audience, p.Identity, resource)
			}
		})
	}
}

func TestAutoLoginSkipsPages(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(o *Options) { o.AutoLogin = "ADMIN@example.com" })
	if u, ok := s.AutoLogin(); !ok || u.ID != "user_dev_admin" {
		t.Fatalf("AutoLogin: got %+v %t", u, ok)
	}
	id := s.register(t, "http://localhost:1/cb")
	_, challenge := pkce()
	resp, _ := get(t, browser(t), s.url+"/oauth2/authorize?"+authParams(id, "http://localhost:1/cb", challenge).Encode())
	cb := callback(t, resp)
	if cb.Get("code") == "" || cb.Get("state") != "st-1" || cb.Get("iss") != s.url || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("got %d %v, want a code without pages or cookies", resp.StatusCode, cb)
	}
}

func TestWorkOSUserStandIn(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(o *Options) { o.APIKey = "sk_test_dev_key" })
	for _, tc := range []struct {
		name, key, id string
		status        int
	}{
		{"known user", "sk_test_dev_key", "user_dev_member", 200},
		{"no key", "", "user_dev_member", 401},
		{"wrong key", "sk_test_other", "user_dev_member", 401},
		{"unknown user", "sk_test_dev_key", "user_nobody", 404},
		{"email is not an id", "sk_test_dev_key", "member@example.com", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, s.url+"/user_management/users/"+url.PathEscape(tc.id), nil)
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, body := do(t, http.DefaultClient, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status != 200 {
				return
			}
			var u map[string]any
			json.Unmarshal([]byte(body), &u)
			if u["object"] != "user" || u["id"] != tc.id || u["email"] != "member@example.com" || u["first_name"] != "Max" || u["email_verified"] != true {
				t.Errorf("got %v", u)
			}
		})
	}
}
