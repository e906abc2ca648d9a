package proxy

import (
	"context"
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-gateway/gateway/proxy/config"
)

// Option B as the gateway serves it: the authorization server's routes mounted, the protected resource metadata
// pointing at the gateway, and its refusals on the access line. The authorization server itself is tested in package
// authserver.

// newOptionBHarness starts a gateway in Option B (a pre-registered client) whose authorization server's metadata has
// meta added, and runs discovery.
func newOptionBHarness(t *testing.T, env map[string]string, meta map[string]any) *harness {
	t.Helper()
	m := map[string]string{
		"MCP_USE_OAUTH_WORKOS_CLIENT_ID":     "client_UPSTREAM",
		"MCP_USE_OAUTH_WORKOS_CLIENT_SECRET": "upstream secret",
		"GATEWAY_SESSION_SECRET":             strings.Repeat("s", 32),
	}
	maps.Copy(m, env)
	h := newHarness(t, m, false)
	h.is.ExtraMetadata = meta
	if err := h.gw.discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestFacadeOwnsItsPathsOnlyInOptionB(t *testing.T) {
	t.Parallel()
	a := newHarness(t, nil, true)
	for _, p := range []string{"/authorize", "/token", "/register", "/callback"} {
		if resp := a.do(t, "GET", p, "", nil, ""); resp.StatusCode != 401 {
			t.Errorf("Option A %s: got %d, want 401 (forwarded, authenticated)", p, resp.StatusCode)
		}
	}
	if _, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "MCP_USE_OAUTH_WORKOS_CLIENT_ID": "c", "GATEWAY_MCP_PATH": "/token"}); err == nil ||
		!strings.Contains(err.Error(), "GATEWAY_MCP_PATH") {
		t.Errorf("MCP path /token in Option B: got %v", err)
	}
	if _, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "MCP_USE_OAUTH_WORKOS_CLIENT_SECRET": "s"}); err == nil ||
		!strings.Contains(err.Error(), "MCP_USE_OAUTH_WORKOS_CLIENT_SECRET") {
		t.Errorf("a secret without a client id: got %v", err)
	}
	if _, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "MCP_USE_OAUTH_WORKOS_CLIENT_ID": "c", "GATEWAY_CLIENT_AUTH_METHOD": "private_key_jwt"}); err == nil {
		t.Error("GATEWAY_CLIENT_AUTH_METHOD private_key_jwt accepted")
	}
	b := newOptionBHarness(t, nil, nil)
	if resp := b.do(t, "POST", "/mcp", "", nil, "{}"); resp.StatusCode != 401 {
		t.Errorf("Option B MCP path: got %d, want 401", resp.StatusCode)
	}
	if resp := b.do(t, "OPTIONS", "/token", "", map[string]string{"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST"}, ""); resp.StatusCode != 204 ||
		resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("token preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestOptionBMetadata: the protected resource metadata names the gateway as the authorization server, with the
// authorization server's resource scopes for the metadata discovered; the gateway serves the authorization server's own
// metadata at both well-known paths.
func TestOptionBMetadata(t *testing.T) {
	t.Parallel()
	upstreamScopes := []string{"openid", "profile", "email", "offline_access"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantPRM []string
	}{
		{"the authorization server's", nil, []string{"openid", "profile", "email"}},
		{"GATEWAY_FACADE_SCOPES", map[string]string{"GATEWAY_FACADE_SCOPES": "openid email offline_access"}, []string{"openid", "email"}},
		{"GATEWAY_FACADE_DEFAULT_SCOPE", map[string]string{"GATEWAY_FACADE_DEFAULT_SCOPE": "openid offline_access"}, []string{"openid", "profile", "email"}},
		{"GATEWAY_REQUIRED_SCOPES", map[string]string{"GATEWAY_REQUIRED_SCOPES": "mcp:tools"}, []string{"openid", "profile", "email", "mcp:tools"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newOptionBHarness(t, tc.env, map[string]any{"scopes_supported": upstreamScopes})
			var prm struct {
				AuthorizationServers []string `json:"authorization_servers"`
				ScopesSupported      []string `json:"scopes_supported"`
			}
			json.Unmarshal([]byte(readBody(t, h.do(t, "GET", "/.well-known/oauth-protected-resource/mcp", "", nil, ""))), &prm)
			if !slices.Equal(prm.AuthorizationServers, []string{h.srv.URL}) || !slices.Equal(prm.ScopesSupported, tc.wantPRM) {
				t.Errorf("PRM: authorization_servers %q, scopes_supported %v; want [%s], %v", prm.AuthorizationServers, prm.ScopesSupported, h.srv.URL, tc.wantPRM)
			}
		})
	}
	h := newOptionBHarness(t, nil, nil)
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		var doc map[string]any
		resp := h.do(t, "GET", p, "", nil, "")
		json.Unmarshal([]byte(readBody(t, resp)), &doc)
		if resp.StatusCode != 200 || doc["issuer"] != h.srv.URL || doc["token_endpoint"] != h.srv.URL+"/token" {
			t.Errorf("%s: %d %v", p, resp.StatusCode, doc)
		}
	}
}

// TestOptionBRefusalOnTheAccessLine: a request the authorization server refuses writes one access line, with reason
// oauth_refused and what was refused, and is counted under the route's name.
func TestOptionBRefusalOnTheAccessLine(t *testing.T) {
	t.Parallel()
	h := newOptionBHarness(t, nil, nil)
	resp := h.do(t, "POST", "/token", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "grant_type=refresh_token")
	readBody(t, resp)
	lines := h.logs.linesOf(t, resp.Header.Get("X-Request-Id"))
	if len(lines) != 1 {
		t.Fatalf("lines for a refused token request: got %d, want 1: %v", len(lines), lines)
	}
	if l := lines[0]; l["reason"] != string(ReasonOAuth) || l["route"] != "oauth_token" || l["error"] != "invalid_client" ||
		l["error_description"] != "client_id is missing" || l["level"] != "WARN" {
		t.Errorf("access line: %v", l)
	}
	if got := testutil.ToFloat64(h.gw.metrics.Requests.WithLabelValues("oauth_token", "POST", "401")); got != 1 {
		t.Errorf("oauth_token requests counted: got %v, want 1", got)
	}
	resp = h.do(t, "POST", "/register", "", map[string]string{"Content-Type": "application/json"},
		`{"client_name":"c","redirect_uris":["http://127.0.0.1:1/cb"],"token_endpoint_auth_method":"none"}`)
	readBody(t, resp)
	if lines := h.logs.linesOf(t, resp.Header.Get("X-Request-Id")); len(lines) != 1 || lines[0]["reason"] != nil || lines[0]["client_name"] != "c" {
		t.Errorf("a registration's access line: %v", lines)
	}
}

// TestSessionsAndClientsFromBeforeStillOpen: with the same GATEWAY_SESSION_SECRET, an MCP session id and an Option B
// client id issued by the gateway at 9d926a4 still open: clients keep both across an upgrade (and across replicas of
// two versions during one), so the keys derived from the secret must stay the same.
func TestSessionsAndClientsFromBeforeStillOpen(t *testing.T) {
	t.Parallel()
	const (
		session  = "upstream-1.ykkBCn48DPOnmXXI-j51zr"                                                                                                     // upstream-1, bound to user_1
		clientID = "mcpgw_2hdue3ypgYEpbDQ_DswmzzsHUZYAk5ofXC5jzOmelSgASl1Z3_MxcOKhcL2v0y5z-FEL1fp_rTOjpE2XxyF_M1Eszl_LL3Dj3tbGohzRF_dvo_rDH0OwnTp7RrBTTxg" // a public client, redirect URI http://127.0.0.1:1/cb
	)
	h := newOptionBHarness(t, nil, nil) // GATEWAY_SESSION_SECRET: 32 times "s"
	resp := h.do(t, "POST", "/mcp", h.token(t, "user_1"), map[string]string{"Mcp-Session-Id": session}, "{}")
	if resp.StatusCode != 200 {
		t.Errorf("a session id issued before: got %d, want 200", resp.StatusCode)
	} else if got := h.up.last(t).Header.Get("Mcp-Session-Id"); got != "upstream-1" {
		t.Errorf("upstream session id: got %q, want upstream-1", got)
	}
	q := url.Values{"client_id": {clientID}, "redirect_uri": {"http://127.0.0.1:1/cb"}, "response_type": {"code"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}, "state": {"s1"}}
	resp = h.do(t, "GET", "/authorize?"+q.Encode(), "", nil, "")
	if body := readBody(t, resp); resp.StatusCode != 200 || strings.Contains(body, "Unknown application") {
		t.Errorf("a client id issued before: got %d %.120q, want the consent page", resp.StatusCode, body)
	}
}
