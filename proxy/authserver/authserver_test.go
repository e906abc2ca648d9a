package authserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/metadata"
)

// TestNewFailsClosed: a server is not built without what it needs, and the error names every problem at once.
func TestNewFailsClosed(t *testing.T) {
	t.Parallel()
	as := func() *metadata.AuthServer { return nil }
	good := Config{PublicURL: "https://mcp.example.com", Resource: "https://mcp.example.com/mcp", Issuer: "https://as.example.com", ClientID: "c"}
	key := []byte(strings.Repeat("k", 32))
	if _, err := New(good, Options{Key: key, AuthServer: as}); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config, *Options)
		want string
	}{
		{"public URL with a path", func(c *Config, _ *Options) { c.PublicURL = "https://mcp.example.com/x" }, "public URL"},
		{"public URL with a trailing slash", func(c *Config, _ *Options) { c.PublicURL = "https://mcp.example.com/" }, "public URL"},
		{"public URL not http", func(c *Config, _ *Options) { c.PublicURL = "ftp://mcp.example.com" }, "public URL"},
		{"no resource", func(c *Config, _ *Options) { c.Resource = "" }, "resource"},
		{"no issuer", func(c *Config, _ *Options) { c.Issuer = "" }, "issuer"},
		{"no client id", func(c *Config, _ *Options) { c.ClientID = "" }, "client id"},
		{"private_key_jwt", func(c *Config, _ *Options) { c.ClientAuthMethod = "private_key_jwt" }, "client auth method"},
		{"short key", func(_ *Config, o *Options) { o.Key = key[:31] }, "key"},
		{"no metadata", func(_ *Config, o *Options) { o.AuthServer = nil }, "metadata"},
	} {
		c, o := good, Options{Key: key, AuthServer: as}
		tc.edit(&c, &o)
		if _, err := New(c, o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	c := good
	c.Issuer, c.ClientID = "", ""
	if _, err := New(c, Options{AuthServer: as}); err == nil || !strings.Contains(err.Error(), "issuer") ||
		!strings.Contains(err.Error(), "client id") || !strings.Contains(err.Error(), "key") {
		t.Errorf("three problems: got %v, want all three named", err)
	}
}

// TestRoutes: the server lists every path it answers, under the names the gateway's metrics use, and OwnsPath says so
// for each of them and for no other.
func TestRoutes(t *testing.T) {
	t.Parallel()
	s, _ := exampleServer(t, nil)
	want := map[string]string{
		"/.well-known/oauth-authorization-server": "as_metadata",
		"/.well-known/openid-configuration":       "oidc_metadata",
		"/register":                               "oauth_register",
		"/authorize":                              "oauth_authorize",
		"/callback":                               "oauth_callback",
		"/token":                                  "oauth_token",
	}
	routes := s.Routes()
	if len(routes) != len(want) {
		t.Errorf("got %d routes, want %d", len(routes), len(want))
	}
	for _, rt := range routes {
		if want[rt.Path] != rt.Name || rt.Handler == nil {
			t.Errorf("route %s: name %q, want %q", rt.Path, rt.Name, want[rt.Path])
		}
		if !OwnsPath(rt.Path) {
			t.Errorf("OwnsPath(%q) = false for a route", rt.Path)
		}
	}
	for _, p := range []string{"/", "/mcp", "/token/", "/authorize/x", "/.well-known/oauth-protected-resource", "/Token"} {
		if OwnsPath(p) {
			t.Errorf("OwnsPath(%q) = true", p)
		}
	}
	routes[0].Name = "changed"
	if s.Routes()[0].Name == "changed" {
		t.Error("Routes returned the server's own slice")
	}
}

// TestRefusalsAreNoted: every refusal, whatever answers it (a JSON error, a page, a redirect to the client), is noted
// as refused with what was refused; a registration is noted without being a refusal; and without Note nothing breaks.
func TestRefusalsAreNoted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c := h.register(t, publicClient)["client_id"].(string)
	if n := h.notes.last(t); n.refused || n.attrs["client_name"] != "Test <App>" || n.attrs["auth_method"] != "none" {
		t.Errorf("registration: %+v", n)
	}
	h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "grant_type=password&client_id="+c)
	if n := h.notes.last(t); !n.refused || n.attrs["error"] != "unsupported_grant_type" || n.attrs["error_description"] == "" {
		t.Errorf("JSON error: %+v", n)
	}
	h.send(t, "GET", "/callback?state=forged", nil, "")
	if n := h.notes.last(t); !n.refused || n.attrs["status"] != "400" || n.attrs["page"] != "Invalid sign-in response" {
		t.Errorf("page: %+v", n)
	}
	q := authorizeQuery(c)
	q.Set("redirect_uri", "http://127.0.0.1:1/callback")
	cookies := h.consented(t, q)
	q.Del("code_challenge")
	h.send(t, "GET", "/authorize?"+q.Encode(), http.Header{"Cookie": {cookies}}, "")
	if n := h.notes.last(t); !n.refused || n.attrs["error"] != "invalid_request" || n.attrs["answered_at"] != "redirect_uri" {
		t.Errorf("redirect to the client: %+v", n)
	}

	s, err := New(h.server.cfg, Options{Key: []byte(strings.Repeat("k", 32)), AuthServer: h.as.Load})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.api(s.token).ServeHTTP(rec, httptest.NewRequest("POST", "/token", strings.NewReader("grant_type=password")))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("without Note: got %d, want 401", rec.Code)
	}
}
