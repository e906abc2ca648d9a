package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/identity"
	"github.com/mcp-gateway/gateway/proxy/token"
	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
)

// upstreamRecorder is an upstream that records what reached it.
type upstreamRecorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	// handler answers; nil answers 200 {"ok":true}.
	handler http.HandlerFunc
}

func (u *upstreamRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.reqs = append(u.reqs, r.Clone(context.Background()))
	h := u.handler
	u.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`)
}

func (u *upstreamRecorder) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstreamRecorder) last(t *testing.T) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("no request reached the upstream")
	}
	return u.reqs[len(u.reqs)-1]
}

type harness struct {
	is       *tokentest.Issuer
	key      tokentest.Key
	up       *upstreamRecorder
	upSrv    *httptest.Server
	gw       *Gateway
	srv      *httptest.Server
	clock    *tokentest.Clock
	reg      *prometheus.Registry
	resource string
	logs     *logBuffer
}

// logBuffer collects a gateway's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the lines logged so far, decoded.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// linesOf returns the lines logged with the request id.
func (b *logBuffer) linesOf(t *testing.T, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range b.lines(t) {
		if l["request_id"] == id {
			out = append(out, l)
		}
	}
	return out
}

// newHarness starts an issuer, a recording upstream and a gateway in front of it. env adds to or overrides the
// configuration; discover loads the keys before returning.
func newHarness(t *testing.T, env map[string]string, discover bool) *harness {
	t.Helper()
	return newHarnessWith(t, env, discover, nil)
}

// newHarnessWith is newHarness with opts changing the gateway's options.
func newHarnessWith(t *testing.T, env map[string]string, discover bool, opts func(*Options)) *harness {
	t.Helper()
	h := &harness{key: tokentest.NewKey(t, "k1", 0), up: &upstreamRecorder{}, clock: tokentest.NewClock(), reg: prometheus.NewRegistry(), logs: &logBuffer{}}
	h.is = tokentest.NewIssuer(t, h.key)
	h.upSrv = httptest.NewServer(h.up)
	t.Cleanup(h.upSrv.Close)
	var handler http.Handler
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(h.srv.Close)
	m := map[string]string{
		"GATEWAY_ISSUER_URL":   h.is.URL,
		"GATEWAY_UPSTREAM_URL": h.upSrv.URL + "/upstream/mcp",
		"GATEWAY_PUBLIC_URL":   h.srv.URL,
	}
	for k, v := range env {
		m[k] = strings.ReplaceAll(v, "$ISSUER", h.is.URL) // a list of issuers names the harness's as $ISSUER
	}
	cfg, err := config.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	h.resource = cfg.Resource
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := Options{Reg: h.reg, Now: h.clock.Now, ASClient: h.is.Client(), Logger: log}
	if opts != nil {
		opts(&o)
	}
	h.gw, err = New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	handler = h.gw.Handler()
	if discover {
		if err := h.gw.discover(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *harness) token(t *testing.T, sub string, mod ...func(map[string]any)) string {
	c := h.is.Claims(h.resource, sub, h.clock.Now())
	for _, f := range mod {
		f(c)
	}
	return h.key.Sign(t, c)
}

func (h *harness) do(t *testing.T, method, path, token string, hdr map[string]string, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestForwardSetsIdentityAndStripsForgeries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	tok := h.token(t, "user_1", func(m map[string]any) { m["email"] = "ada@example.com"; m["roles"] = []string{"admin"} })
	resp := h.do(t, "POST", "/mcp?x=1", tok, map[string]string{
		"X-Auth-User-Id":       "user_evil",
		"x_auth_user_id":       "user_evil",
		"X-Auth-Email":         "evil@example.com",
		"X-Forwarded-User":     "evil",
		"X_Forwarded_User":     "evil",
		"X-Auth-Request-Email": "evil@example.com",
		"Cookie":               "session=secret",
		"Proxy-Authorization":  "Basic eA==",
		"X-Request-Id":         "client-chosen",
		"Mcp-Protocol-Version": "2025-06-18",
		"Mcp-Method":           "tools/call",
		"Mcp-Param-City":       "Paris",
	}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status: got %d, want 200 (%s)", resp.StatusCode, readBody(t, resp))
	}
	r := h.up.last(t)
	if r.URL.Path != "/upstream/mcp" || r.URL.RawQuery != "x=1" {
		t.Errorf("upstream URL: got %s?%s, want /upstream/mcp?x=1", r.URL.Path, r.URL.RawQuery)
	}
	if r.Host != strings.TrimPrefix(h.upSrv.URL, "http://") {
		t.Errorf("upstream Host: got %q, want the upstream's", r.Host)
	}
	for _, name := range []string{"Authorization", "Cookie", "Proxy-Authorization", "X_auth_user_id", "x_auth_user_id", "X_Forwarded_User", "X-Auth-Request-Email", "X-Auth-Org-Id-Unset"} {
		if v, ok := r.Header[name]; ok {
			t.Errorf("upstream got %s: %q", name, v)
		}
	}
	for name, want := range map[string]string{
		"X-Auth-User-Id":       "user_1",
		"X-Auth-Email":         "ada@example.com",
		"X-Forwarded-User":     "user_1",
		"X-Forwarded-Email":    "ada@example.com",
		"X-Auth-Roles":         "admin",
		"X-Auth-Org-Id":        "org_1",
		"X-Auth-Client-Id":     "client_123",
		"X-Auth-Scopes":        "openid email",
		"Mcp-Protocol-Version": "2025-06-18",
		"Mcp-Method":           "tools/call",
		"Mcp-Param-City":       "Paris",
		"X-Request-Id":         resp.Header.Get("X-Request-Id"),
	} {
		if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s: got %q, want [%q]", name, got, want)
		}
	}
	if resp.Header.Get("X-Request-Id") == "client-chosen" {
		t.Error("the client's X-Request-Id was trusted")
	}
	claims, err := identity.FromHeader(r.Header)
	if err != nil || !strings.Contains(string(claims.Claims), `"sub":"user_1"`) {
		t.Errorf("X-Auth-Claims: got %s, %v", claims.Claims, err)
	}
}

func TestEveryOtherPathIsAuthenticated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	for _, p := range []string{"/sse", "/messages?sessionId=1", "/", "/healthz/", "/readyz/x", "/mcp/", "/MCP", "/.well-knownx"} {
		resp := h.do(t, "GET", p, "", nil, "")
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("GET %s without a token: got %d %q, want 401 with a challenge", p, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := h.up.count(); n != 0 {
		t.Fatalf("%d unauthenticated requests reached the upstream", n)
	}
	resp := h.do(t, "GET", "/sse", h.token(t, "user_1"), nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /sse with a token: got %d", resp.StatusCode)
	}
	if got := h.up.last(t).URL.Path; got != "/sse" {
		t.Errorf("upstream path: got %q, want /sse (path unchanged on the upstream origin)", got)
	}
}

// TestMethodsNoRouteServesAreAuthenticated: a request no route matches by its method (one chi does not know, such as
// PROPFIND or a lower-case get) or its target ("*") gets the challenge like any other path without a token, and goes
// to the upstream's origin, path unchanged, with one; chi's own bare 405 or text 404 would tell a client nothing.
func TestMethodsNoRouteServesAreAuthenticated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	tok := h.token(t, "user_1")
	for _, tt := range []struct{ method, path string }{{"PROPFIND", "/"}, {"FOO", "/mcp"}, {"get", "/healthz"}, {"FOO", "/token"}} {
		resp := h.do(t, tt.method, tt.path, "", nil, "")
		body := readBody(t, resp)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") || !strings.Contains(body, `"error":"unauthorized"`) {
			t.Errorf("%s %s without a token: got %d %q %q, want 401 with a challenge", tt.method, tt.path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
		n := h.up.count()
		if resp := h.do(t, tt.method, tt.path, tok, nil, ""); resp.StatusCode != 200 {
			t.Errorf("%s %s with a token: got %d, want 200", tt.method, tt.path, resp.StatusCode)
			continue
		}
		if h.up.count() != n+1 || h.up.last(t).Method != tt.method || h.up.last(t).URL.Path != tt.path {
			t.Errorf("%s %s with a token: upstream got %s %s, want it on the upstream's origin", tt.method, tt.path, h.up.last(t).Method, h.up.last(t).URL.Path)
		}
	}
	_, br := h.rawRequest(t, "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Errorf("GET * without a token: got %d %q, want 401 with a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestChallengesOverHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_REQUIRED_SCOPES": "mcp:tools"}, true)
	prm := h.srv.URL + "/.well-known/oauth-protected-resource/mcp"
	tests := []struct {
		name   string
		token  string
		hdr    map[string]string
		status int
		www    string
	}{
		{"no token", "", nil, 401, `Bearer scope="mcp:tools", resource_metadata="` + prm + `"`},
		{"basic auth", "", map[string]string{"Authorization": "Basic dTpw"}, 401, `Bearer scope="mcp:tools", resource_metadata="` + prm + `"`},
		{"token in query is ignored", "", nil, 401, ""},
		{"malformed", "not a token", nil, 401, `Bearer error="invalid_token", error_description="the access token is malformed", scope="mcp:tools", resource_metadata="` + prm + `"`},
		{"expired", h.token(t, "u", func(m map[string]any) { m["exp"] = h.clock.Now().Add(-time.Hour).Unix(); m["scope"] = "mcp:tools" }), nil, 401,
			`Bearer error="invalid_token", error_description="the access token has expired", scope="mcp:tools", resource_metadata="` + prm + `"`},
		{"wrong audience", h.token(t, "u", func(m map[string]any) { m["aud"] = "client_x"; m["scope"] = "mcp:tools" }), nil, 401,
			`Bearer error="invalid_token", error_description="the access token was not issued for this resource", scope="mcp:tools", resource_metadata="` + prm + `"`},
		{"missing scope", h.token(t, "u"), nil, 403,
			`Bearer error="insufficient_scope", error_description="the access token lacks a required scope", scope="mcp:tools", resource_metadata="` + prm + `"`},
		{"scope present", h.token(t, "u", func(m map[string]any) { m["scope"] = "openid mcp:tools" }), nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/mcp"
			if tt.name == "token in query is ignored" {
				path += "?access_token=" + h.token(t, "u", func(m map[string]any) { m["scope"] = "mcp:tools" })
			}
			resp := h.do(t, "POST", path, tt.token, tt.hdr, "{}")
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.status)
			}
			got := resp.Header.Get("WWW-Authenticate")
			if tt.status == 401 && got == "" {
				t.Fatal("a 401 without WWW-Authenticate")
			}
			if tt.www != "" && got != tt.www {
				t.Errorf("WWW-Authenticate:\ngot  %s\nwant %s", got, tt.www)
			}
			if tt.status >= 400 {
				var body errorBody
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
					t.Errorf("body: got %+v, %v; want a JSON error", body, err)
				}
			}
		})
	}
}

func TestNotReadyAnswers503(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, false)
	resp := h.do(t, "POST", "/mcp", h.token(t, "u"), nil, "{}")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("before keys are loaded: got %d Retry-After=%q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := h.do(t, "GET", "/readyz", "", nil, ""); resp.StatusCode != 503 {
		t.Errorf("/readyz before keys: got %d, want 503", resp.StatusCode)
	}
	if resp := h.do(t, "GET", "/healthz", "", nil, ""); resp.StatusCode != 200 {
		t.Errorf("/healthz: got %d, want 200", resp.StatusCode)
	}
	if err := h.gw.discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resp := h.do(t, "POST", "/mcp", h.token(t, "u"), nil, "{}"); resp.StatusCode != 200 {
		t.Errorf("after keys are loaded: got %d, want 200", resp.StatusCode)
	}
	if resp := h.do(t, "GET", "/readyz", "", nil, ""); resp.StatusCode != 200 {
		t.Errorf("/readyz after keys: got %d, want 200", resp.StatusCode)
	}
}

func TestRunRetriesUntilIssuerAnswers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, false)
	h.is.MetadataDown.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); h.gw.Run(ctx) }()
	// Run logs and backs off; once the issuer answers, keys load. Wait on the observable effect.
	for h.is.MetadataHits.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	h.is.MetadataDown.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for !h.gw.Ready() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !h.gw.Ready() {
		t.Fatal("keys not loaded 10s after the issuer came back")
	}
	cancel()
	<-done
}

func TestPublicRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_REQUIRED_SCOPES": "mcp:tools"}, true)
	for _, p := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		resp := h.do(t, "GET", p, "", map[string]string{"Origin": "https://evil.example"}, "")
		var doc map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", p, resp.StatusCode, err)
		}
		if doc["resource"] != h.srv.URL+"/mcp" || doc["authorization_servers"].([]any)[0] != h.is.URL {
			t.Errorf("GET %s: got %v", p, doc)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("GET %s: CORS %q, want *", p, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	for _, p := range []string{"/.well-known/oauth-protected-resource-evil", "/.well-known/unknown", "/.well-known/oauth-protected-resource/other"} {
		resp := h.do(t, "GET", p, "", nil, "")
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: got %d %s, want a JSON 404", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	resp := h.do(t, "GET", "/.well-known/oauth-authorization-server", "", nil, "")
	var as map[string]any
	json.NewDecoder(resp.Body).Decode(&as)
	if as["issuer"] != h.is.URL {
		t.Errorf("AS metadata pass-through: got %v", as)
	}
	if h.up.count() != 0 {
		t.Error("a public route reached the upstream")
	}
}

func TestOriginAndCORS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_ALLOWED_ORIGINS": "http://localhost:6274"}, true)
	tok := h.token(t, "u")
	resp := h.do(t, "POST", "/mcp", tok, map[string]string{"Origin": "http://evil.example"}, "{}")
	if resp.StatusCode != 403 {
		t.Errorf("disallowed origin with a valid token: got %d, want 403", resp.StatusCode)
	}
	resp = h.do(t, "DELETE", "/mcp", "", map[string]string{"Origin": "http://localhost:6275"}, "")
	if resp.StatusCode != 403 {
		t.Errorf("disallowed origin without a token: got %d, want 403 before authentication", resp.StatusCode)
	}
	if h.up.count() != 0 {
		t.Fatal("a request from a disallowed origin reached the upstream")
	}
	resp = h.do(t, "OPTIONS", "/mcp", "", map[string]string{"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization, content-type, mcp-param-city"}, "")
	if resp.StatusCode != 204 {
		t.Fatalf("preflight: got %d, want 204 without authentication", resp.StatusCode)
	}
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin": "http://localhost:6274",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
	if got := resp.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(got, "Last-Event-ID") || !strings.Contains(got, "mcp-param-city") {
		t.Errorf("Allow-Headers: got %q", got)
	}
	resp = h.do(t, "POST", "/mcp", "", map[string]string{"Origin": "http://localhost:6274"}, "{}")
	if got := resp.Header.Get("Access-Control-Expose-Headers"); !strings.Contains(got, "WWW-Authenticate") || !strings.Contains(got, "Mcp-Session-Id") || !strings.Contains(got, "MCP-Protocol-Version") {
		t.Errorf("Expose-Headers on a 401: got %q", got)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_MAX_BODY_BYTES": "2048"}, true)
	tok := h.token(t, "u")
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"bad"}}`, http.StatusBadRequest)
	}
	if resp := h.do(t, "POST", "/mcp", tok, nil, "{}"); resp.StatusCode != 400 || !strings.Contains(readBody(t, resp), "-32600") {
		t.Errorf("upstream 400: got %d, want passed through", resp.StatusCode)
	}
	if resp := h.do(t, "POST", "/mcp", tok, nil, strings.Repeat("x", 4096)); resp.StatusCode != 413 {
		t.Errorf("oversized body: got %d, want 413", resp.StatusCode)
	}
	h.upSrv.Close()
	resp := h.do(t, "POST", "/mcp", tok, nil, "{}")
	body := readBody(t, resp)
	if resp.StatusCode != 502 || !strings.Contains(body, `"error":"bad_gateway"`) || strings.Contains(body, "127.0.0.1") {
		t.Errorf("upstream down: got %d %s, want 502 with a generic JSON body", resp.StatusCode, body)
	}
	if got := testutil.ToFloat64(h.gw.metrics.UpstreamErrors.WithLabelValues("unreachable")); got != 1 {
		t.Errorf("upstream error metric: got %v, want 1", got)
	}
}

func TestSessionsAreBoundToUsers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mcp-Session-Id") == "" {
			w.Header().Set("Mcp-Session-Id", "up-session-1")
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}
	alice, bob := h.token(t, "user_alice"), h.token(t, "user_bob")
	resp := h.do(t, "POST", "/mcp", alice, nil, "{}")
	sid := resp.Header.Get("Mcp-Session-Id")
	if !strings.HasPrefix(sid, "up-session-1.") {
		t.Fatalf("session id given to the client: got %q", sid)
	}
	if resp := h.do(t, "POST", "/mcp", alice, map[string]string{"Mcp-Session-Id": sid}, "{}"); resp.StatusCode != 200 {
		t.Fatalf("owner's request: got %d", resp.StatusCode)
	}
	if got := h.up.last(t).Header.Get("Mcp-Session-Id"); got != "up-session-1" {
		t.Errorf("upstream session id: got %q, want up-session-1", got)
	}
	n := h.up.count()
	for name, hdr := range map[string]string{"another user": sid, "raw upstream id": "up-session-1", "forged tag": "up-session-1.AAAAAAAAAAAAAAAAAAAAAA"} {
		tok := bob
		if name != "another user" {
			tok = alice
		}
		resp := h.do(t, "POST", "/mcp", tok, map[string]string{"Mcp-Session-Id": hdr}, "{}")
		if resp.StatusCode != 404 {
			t.Errorf("%s: got %d, want 404", name, resp.StatusCode)
		}
	}
	if h.up.count() != n {
		t.Error("a refused session request reached the upstream")
	}
}

// TestEventStreamIsNotBuffered checks that an event stream answering a POST, which the reverse proxy carries (GET
// streams take the relay: see stream_test.go), reaches the client event by event.
func TestEventStreamIsNotBuffered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	release := make(chan struct{})
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message\ndata: {\"first\":true}\n\n")
		w.(http.Flusher).Flush()
		<-release // the handler has not returned while the client reads the first event
		io.WriteString(w, "event: message\ndata: {\"last\":true}\n\n")
	}
	resp := h.do(t, "POST", "/mcp", h.token(t, "u"), map[string]string{"Accept": "application/json, text/event-stream"}, "{}")
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "event: message\n" {
		t.Fatalf("first line: %q, %v", line, err)
	}
	if got := testutil.ToFloat64(h.gw.metrics.OpenStreams); got != 1 {
		t.Errorf("open streams: got %v, want 1", got)
	}
	if got := h.gw.relayedStreams(); got != 0 {
		t.Errorf("relayed streams: got %d, want 0 (a POST goes through the reverse proxy)", got)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), `"last":true`) {
		t.Errorf("rest of stream: %q", rest)
	}
}

func TestIdentitySignature(t *testing.T) {
	t.Parallel()
	secret := "0123456789abcdef0123456789abcdef"
	h := newHarness(t, map[string]string{"GATEWAY_IDENTITY_SECRET": secret}, true)
	h.do(t, "POST", "/mcp", h.token(t, "user_1"), map[string]string{"X-Auth-Signature": "t=1,v1=forged"}, "{}")
	if err := identity.Verify(h.up.last(t), []byte(secret), h.clock.Now(), time.Minute); err != nil {
		t.Errorf("upstream could not verify the identity signature: %v", err)
	}
}

func TestMetricsAndAuthFailureReasons(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	h.do(t, "POST", "/mcp", "", nil, "{}")
	h.do(t, "POST", "/mcp", h.token(t, "u", func(m map[string]any) { m["aud"] = "x" }), nil, "{}")
	h.do(t, "POST", "/mcp", h.token(t, "u"), nil, "{}")
	for reason, want := range map[token.Reason]float64{token.ReasonNoToken: 1, token.ReasonAudience: 1, token.ReasonExpired: 0} {
		if got := testutil.ToFloat64(h.gw.metrics.AuthFailures.WithLabelValues(string(reason))); got != want {
			t.Errorf("auth failures %s: got %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(h.gw.metrics.Requests.WithLabelValues("mcp", "POST", "200")); got != 1 {
		t.Errorf("requests mcp POST 200: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.gw.metrics.KeysLoaded); got != 1 {
		t.Errorf("keys loaded gauge: got %v", got)
	}
}

func TestTransportHeadersAndMethodsPassThrough(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("MCP-Protocol-Version", "2025-11-25")
		w.Header().Set("X-Upstream-Custom", "kept")
		w.WriteHeader(http.StatusAccepted)
	}
	tok := h.token(t, "u")
	resp := h.do(t, "GET", "/mcp", tok, map[string]string{"Last-Event-ID": "ev-42", "Accept": "text/event-stream"}, "")
	if got := h.up.last(t).Header.Get("Last-Event-ID"); got != "ev-42" {
		t.Errorf("Last-Event-ID upstream: got %q", got)
	}
	if resp.StatusCode != 202 || resp.Header.Get("MCP-Protocol-Version") != "2025-11-25" || resp.Header.Get("X-Upstream-Custom") != "kept" {
		t.Errorf("response: got %d %v", resp.StatusCode, resp.Header)
	}
	h.do(t, "DELETE", "/mcp", tok, nil, "")
	if got := h.up.last(t).Method; got != "DELETE" {
		t.Errorf("method upstream: got %s, want DELETE", got)
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	started, canceled := make(chan struct{}), make(chan struct{})
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
		close(canceled)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+h.token(t, "u"))
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	cancel()
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not cancelled 10s after the client went away")
	}
}

// TestRoutes: where each path goes, the status a method the route does not serve gets, and the route each request is
// counted under, which is the pattern routing matched (not a path, and not a label set beside routing).
func TestRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	tok := h.token(t, "user_1")
	for _, tt := range []struct {
		method, path, token string
		status              int
		route, upstreamPath string // upstreamPath "": not forwarded
	}{
		{"GET", "/healthz", "", 200, "healthz", ""},
		{"HEAD", "/healthz", "", 200, "healthz", ""},
		{"POST", "/healthz", tok, 405, "healthz", ""},
		{"DELETE", "/readyz", "", 405, "readyz", ""},
		{"GET", "/.well-known/oauth-protected-resource/mcp", "", 200, "prm", ""},
		{"GET", "/.well-known/nothing-here", "", 404, "well_known", ""},
		{"POST", "/mcp", tok, 200, "mcp", "/upstream/mcp"},
		{"POST", "/mcp", "", 401, "mcp", ""},
		{"GET", "/assets/app.js", tok, 200, "forward", "/assets/app.js"},
		{"PUT", "/", tok, 200, "forward", "/"},
	} {
		before := testutil.ToFloat64(h.gw.metrics.Requests.WithLabelValues(tt.route, tt.method, strconv.Itoa(tt.status)))
		n := h.up.count()
		resp := h.do(t, tt.method, tt.path, tt.token, nil, "")
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: got %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
		if tt.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q, want GET, HEAD", tt.method, tt.path, resp.Header.Get("Allow"))
		}
		forwarded := h.up.count() > n
		if forwarded != (tt.upstreamPath != "") {
			t.Errorf("%s %s: forwarded %t, want %t", tt.method, tt.path, forwarded, tt.upstreamPath != "")
		} else if forwarded && h.up.last(t).URL.Path != tt.upstreamPath {
			t.Errorf("%s %s: upstream path %s, want %s", tt.method, tt.path, h.up.last(t).URL.Path, tt.upstreamPath)
		}
		if got := testutil.ToFloat64(h.gw.metrics.Requests.WithLabelValues(tt.route, tt.method, strconv.Itoa(tt.status))); got != before+1 {
			t.Errorf("%s %s: not counted under route %q", tt.method, tt.path, tt.route)
		}
	}
}
