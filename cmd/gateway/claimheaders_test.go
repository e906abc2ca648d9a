package main

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// TestClaimHeadersReachAnUpstreamThatReadsThem runs the gateway with GATEWAY_CLAIM_HEADERS in front of an upstream
// that reads X-Tenant only after checking the signature and that it covers X-Tenant, as a Go upstream should. A client
// that sends its own X-Tenant, X-Groups or X-Plan in any spelling reaches the upstream with the token's values only.
func TestClaimHeadersReachAnUpstreamThatReadsThem(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	type seen struct {
		header http.Header
		err    error
		covers bool
	}
	got := make(chan seen, 10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(identity.HeaderUserID) == "" {
			return // the gateway's readiness probe
		}
		err := identity.Verify(r, []byte(secret), time.Now(), time.Minute)
		got <- seen{header: r.Header.Clone(), err: err, covers: identity.Covers(r, "X-Tenant")}
		if err != nil || !identity.Covers(r, "X-Tenant") {
			http.Error(w, "unsigned tenant", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tenant":"` + r.Header.Get("X-Tenant") + `"}}`))
	}))
	t.Cleanup(up.Close)
	base, _ := startGateway(t, map[string]string{
		"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp", "GATEWAY_IDENTITY_SECRET": secret,
		"GATEWAY_CLAIM_HEADERS": "X-Tenant=org_id, X-Groups=groups, X-Plan=billing.plan",
	})
	post := func(token string, forged map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range forged {
			req.Header[k] = []string{v} // raw keys: sent in exactly this spelling
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	forged := map[string]string{
		"X-Tenant": "org_evil", "x-tenant": "org_evil2", "X_Tenant": "org_evil3", "x_TENANT": "org_evil4",
		"X-Groups": "admin", "x_groups": "admin", "X-PLAN": "enterprise", "X_Plan": "enterprise",
	}
	resp := post(is.token(t, "user1", map[string]any{"billing": map[string]any{"plan": "pro"}}), forged)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := <-got
	if s.err != nil || !s.covers {
		t.Errorf("upstream: Verify %v, Covers %v", s.err, s.covers)
	}
	if v := s.header["X-Tenant"]; !slices.Equal(v, []string{"org_user1"}) {
		t.Errorf("X-Tenant: got %q, want the token's org_user1 only", v)
	}
	if v := s.header["X-Plan"]; !slices.Equal(v, []string{"pro"}) {
		t.Errorf("X-Plan: got %q, want the token's billing.plan", v)
	}
	for name, v := range s.header {
		if identity.SameName(name, "x-groups") || (identity.SameName(name, "x-tenant") || identity.SameName(name, "x-plan")) && name != "X-Tenant" && name != "X-Plan" {
			t.Errorf("the upstream received %s: %q", name, v)
		}
	}
	if sig := s.header.Get(identity.HeaderSignature); !strings.Contains(sig, ",h=X-Tenant;X-Groups;X-Plan,v3=") {
		t.Errorf("signature: %s", sig)
	}

	// A claim that cannot travel as its header makes the token invalid, as a bad role does.
	resp = post(is.token(t, "user2", map[string]any{"groups": []string{"eng,admin"}}), nil)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("group with a comma: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp = post(is.token(t, "user3", map[string]any{"org_id": "org\r\nX-Evil: 1"}), nil)
	if resp.StatusCode != 401 {
		t.Errorf("org_id with CR LF: %d", resp.StatusCode)
	}
	select {
	case s := <-got:
		t.Errorf("a refused token reached the upstream: %v", s.header)
	default:
	}
}

// TestClaimHeadersRefusedAtStart: a mapping that names a header the gateway sets, strips or relies on stops the
// gateway with the reason, naming the variable.
func TestClaimHeadersRefusedAtStart(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"Authorization=sub", "X-Auth-User-Id=sub", "Connection=sub", "Content-Type=sub", "traceparent=sub", "Host=sub", "X-Forwarded-User=sub"} {
		err := run(t.Context(), nil, map[string]string{"GATEWAY_ISSUER_URL": "https://issuer.example", "GATEWAY_CLAIM_HEADERS": spec,
			"GATEWAY_LISTEN_ADDR": "127.0.0.1:0", "GATEWAY_PUBLIC_URL": publicURL}, nil, &logBuffer{})
		if err == nil || !strings.Contains(err.Error(), "GATEWAY_CLAIM_HEADERS") || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: got %v", spec, err)
		}
	}
}
