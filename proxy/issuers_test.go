package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/proxy/identity"
	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
)

// twoIssuers is a gateway that accepts the tokens of its harness's issuer (A, first) and of a second one (B), whose key
// set uses the same kid with another key.
type twoIssuers struct {
	*harness
	b    *tokentest.Issuer
	bKey tokentest.Key
}

func newTwoIssuers(t *testing.T, env map[string]string, discover bool) *twoIssuers {
	t.Helper()
	bKey := tokentest.NewKey(t, "k1", 1) // the kid of A's key, another key
	b := tokentest.NewIssuer(t, bKey)
	m := map[string]string{"GATEWAY_ISSUER_URL": "$ISSUER," + b.URL}
	for k, v := range env {
		m[k] = v
	}
	ti := &twoIssuers{harness: newHarness(t, m, false), b: b, bKey: bKey}
	if discover {
		if err := ti.gw.discover(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return ti
}

// tokenOf returns a token of issuer is for sub, signed with key.
func (ti *twoIssuers) tokenOf(t *testing.T, is *tokentest.Issuer, key tokentest.Key, sub string) string {
	return key.Sign(t, is.Claims(ti.resource, sub, ti.clock.Now()))
}

func TestSeveralIssuers(t *testing.T) {
	t.Parallel()
	ti := newTwoIssuers(t, nil, true)
	a, b := ti.is, ti.b
	tests := []struct {
		name  string
		token string
		want  int
		user  string
	}{
		{"A's token", ti.tokenOf(t, a, ti.key, "alice"), 200, "alice"},
		{"B's token", ti.tokenOf(t, b, ti.bKey, "bob"), 200, "bob"},
		{"iss A, B's key and kid", ti.tokenOf(t, a, ti.bKey, "mallory"), 401, ""},
		{"iss B, A's key and kid", ti.tokenOf(t, b, ti.key, "mallory"), 401, ""},
		{"another issuer", ti.key.Sign(t, map[string]any{"iss": "https://evil.example.com", "sub": "m", "aud": ti.resource, "exp": ti.clock.Now().Unix() + 60}), 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ti.up.count()
			resp := ti.do(t, "POST", "/mcp", tt.token, nil, "{}")
			readBody(t, resp)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want != 200 {
				if ti.up.count() != before {
					t.Errorf("a refused token reached the upstream")
				}
				if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate %q, want invalid_token", got)
				}
				return
			}
			if got := ti.up.last(t).Header.Get(identity.HeaderUserID); got != tt.user {
				t.Errorf("%s %q, want %q", identity.HeaderUserID, got, tt.user)
			}
		})
	}

	resp := ti.do(t, "GET", "/.well-known/oauth-protected-resource/mcp", "", nil, "")
	var prm struct {
		AuthorizationServers []string `json:"authorization_servers"`
	}
	json.Unmarshal([]byte(readBody(t, resp)), &prm)
	if want := []string{a.URL, b.URL}; !slices.Equal(prm.AuthorizationServers, want) {
		t.Errorf("authorization_servers %q, want %q in the order of GATEWAY_ISSUER_URL", prm.AuthorizationServers, want)
	}
}

// The same sub at two issuers is two users: a session of one is not the other's, and each has its own rate limit.
func TestSeveralIssuersKeyOnIssuerAndSub(t *testing.T) {
	t.Parallel()
	ti := newTwoIssuers(t, map[string]string{"GATEWAY_RATE_LIMIT_USER": "1/m,burst=2"}, true)
	ti.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Mcp-Session-Id", "upstream-1")
		w.Write([]byte(`{}`))
	}
	atA, atB := ti.tokenOf(t, ti.is, ti.key, "alice"), ti.tokenOf(t, ti.b, ti.bKey, "alice")
	resp := ti.do(t, "POST", "/mcp", atA, nil, "{}")
	readBody(t, resp)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize at A: %d, session %q", resp.StatusCode, sid)
	}
	resp = ti.do(t, "POST", "/mcp", atB, map[string]string{"Mcp-Session-Id": sid}, "{}")
	readBody(t, resp)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("B's alice with A's alice's session: %d, want 404", resp.StatusCode)
	}
	resp = ti.do(t, "POST", "/mcp", atA, map[string]string{"Mcp-Session-Id": sid}, "{}")
	readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Errorf("A's alice with her session: %d, want 200", resp.StatusCode)
	}
	// A's alice has used her burst of 2 (B's refused request was not counted: it failed at the session after the limit
	// counted it, so it is B's).
	resp = ti.do(t, "POST", "/mcp", atA, nil, "{}")
	readBody(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("A's alice's third request: %d, want 429", resp.StatusCode)
	}
	resp = ti.do(t, "POST", "/mcp", atB, nil, "{}")
	readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Errorf("B's alice's second request: %d, want 200: her limit is her own", resp.StatusCode)
	}
}

// One issuer down: the gateway is ready with the other, /readyz names the one that is not, and its tokens get 503.
func TestSeveralIssuersOneDown(t *testing.T) {
	t.Parallel()
	ti := newTwoIssuers(t, nil, false)
	ti.b.MetadataDown.Store(true)
	if err := ti.gw.discover(context.Background()); err == nil {
		t.Fatal("discovery with B down: no error")
	}
	resp := ti.do(t, "GET", "/readyz", "", nil, "")
	body := readBody(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, `"issuers_not_ready":["`+ti.b.URL+`"]`) {
		t.Errorf("/readyz: %d %s, want 200 naming B as not ready", resp.StatusCode, body)
	}
	resp = ti.do(t, "POST", "/mcp", ti.tokenOf(t, ti.is, ti.key, "alice"), nil, "{}")
	readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Errorf("A's token: %d, want 200", resp.StatusCode)
	}
	resp = ti.do(t, "POST", "/mcp", ti.tokenOf(t, ti.b, ti.bKey, "bob"), nil, "{}")
	readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("B's token: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func introspectionEnv(extra map[string]string) map[string]string {
	m := map[string]string{
		"GATEWAY_INTROSPECTION_CLIENT_ID":     tokentest.IntrospectionClientID,
		"GATEWAY_INTROSPECTION_CLIENT_SECRET": tokentest.IntrospectionClientSecret,
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestIntrospectedTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t, introspectionEnv(map[string]string{"GATEWAY_CLAIM_HEADERS": "X-Tenant=org_id"}), true)
	claims := func(mod func(map[string]any)) map[string]any {
		c := h.is.Claims(h.resource, "alice", h.clock.Now())
		c["email"] = "alice@example.com"
		if mod != nil {
			mod(c)
		}
		return c
	}
	good := h.is.Opaque(claims(nil))
	tests := []struct {
		name  string
		token string
		want  int
	}{
		{"active", good, 200},
		{"unknown", "not-a-token-we-issued", 401},
		{"another audience", h.is.Opaque(claims(func(c map[string]any) { c["aud"] = "https://other.example.com/mcp" })), 401},
		{"another issuer", h.is.Opaque(claims(func(c map[string]any) { c["iss"] = "https://evil.example.com" })), 401},
		{"JWT still verified by signature", h.token(t, "bob"), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.do(t, "POST", "/mcp", tt.token, nil, "{}")
			readBody(t, resp)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	resp := h.do(t, "POST", "/mcp", good, map[string]string{identity.HeaderEmail: "forged@example.com"}, "{}")
	readBody(t, resp)
	up := h.up.last(t)
	if up.Header.Get(identity.HeaderUserID) != "alice" || up.Header.Get(identity.HeaderEmail) != "alice@example.com" ||
		up.Header.Get("X-Tenant") != "org_1" {
		t.Errorf("identity headers %v, want alice's from the introspection answer, the mapped claim header too", up.Header)
	}
	if strings.Contains(h.logs.String(), good) || strings.Contains(h.logs.String(), tokentest.IntrospectionClientSecret) {
		t.Error("the log holds a token or the introspection secret")
	}

	// The endpoint goes down: a token in the cache still passes, a new one gets 503 (never a pass).
	h.is.IntrospectionDown.Store(true)
	resp = h.do(t, "POST", "/mcp", good, nil, "{}")
	readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Errorf("cached token with the endpoint down: %d, want 200", resp.StatusCode)
	}
	resp = h.do(t, "POST", "/mcp", h.is.Opaque(claims(nil)), nil, "{}")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" || !strings.Contains(body, "temporarily_unavailable") {
		t.Errorf("new token with the endpoint down: %d, Retry-After %q, %s; want 503, 5, temporarily_unavailable", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// Random opaque tokens from one address are counted against the anonymous limit before they are introspected: past it,
// they get 429 without an introspection call. A cached token is never counted.
func TestIntrospectionFloodIsLimited(t *testing.T) {
	t.Parallel()
	h := newHarness(t, introspectionEnv(map[string]string{"GATEWAY_RATE_LIMIT_ANONYMOUS": "1/m,burst=3"}), true)
	for i := range 5 {
		resp := h.do(t, "POST", "/mcp", "random-"+string(rune('a'+i)), nil, "{}")
		readBody(t, resp)
		want := 401
		if i >= 3 {
			want = 429
		}
		if resp.StatusCode != want {
			t.Fatalf("random token %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
	if n := h.is.IntrospectionHits.Load(); n != 3 {
		t.Errorf("%d introspection calls for 5 random tokens with a burst of 3, want 3", n)
	}
}

// A valid token is counted once, when it is introspected; then it is cached, and its requests pass over the limit.
func TestIntrospectionLimitSparesCachedTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t, introspectionEnv(map[string]string{"GATEWAY_RATE_LIMIT_ANONYMOUS": "1/m,burst=1"}), true)
	good := h.is.Opaque(h.is.Claims(h.resource, "alice", h.clock.Now()))
	for i := range 3 {
		resp := h.do(t, "POST", "/mcp", good, nil, "{}")
		readBody(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d with a valid token: %d, want 200", i, resp.StatusCode)
		}
	}
	resp := h.do(t, "POST", "/mcp", "random", nil, "{}")
	readBody(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || h.is.IntrospectionHits.Load() != 1 {
		t.Errorf("random token after the valid one used the burst: %d, %d calls; want 429, 1 call", resp.StatusCode, h.is.IntrospectionHits.Load())
	}
}
