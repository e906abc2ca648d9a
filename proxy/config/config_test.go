package config

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIssuerFromSubdomain(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"my-app-54":                      "https://my-app-54.authkit.app",
		"my-app-54.authkit.app":          "https://my-app-54.authkit.app",
		"My-App-54.AuthKit.app.":         "https://my-app-54.authkit.app",
		"auth.example.com":               "https://auth.example.com",
		"https://my-app-54.authkit.app/": "https://my-app-54.authkit.app",
		"https://auth.example.com/t":     "https://auth.example.com/t",
		"http://127.0.0.1:9000":          "http://127.0.0.1:9000",
	} {
		got, err := IssuerFromSubdomain(in)
		if err != nil || got != want {
			t.Errorf("IssuerFromSubdomain(%q): got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "my_app", "-x", "a..b", "http://auth.example.com", "https://x.authkit.app?x=1", "my app"} {
		if got, err := IssuerFromSubdomain(in); err == nil {
			t.Errorf("IssuerFromSubdomain(%q): got %q, want an error", in, got)
		}
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(map[string]string{"MCP_USE_OAUTH_WORKOS_SUBDOMAIN": "my-app-54"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, got, want string }{
		{"Issuer", c.Issuer, "https://my-app-54.authkit.app"},
		{"Resource", c.Resource, "http://localhost:3000/mcp"},
		{"ListenAddr", c.ListenAddr, ":3000"},
		{"Upstream", c.Upstream.String(), "http://127.0.0.1:3001/mcp"},
		{"Audiences", strings.Join(c.AudienceList, ","), "http://localhost:3000/mcp"},
		{"Origins", strings.Join(c.OriginList, ","), "http://localhost:3000"},
		{"MetricsAddr", c.MetricsAddr, "127.0.0.1:9090"},
		{"Scopes", strings.Join(c.ScopeList, ","), ""},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	if c.ClockSkew != 30*time.Second {
		t.Errorf("ClockSkew: got %s", c.ClockSkew)
	}
}

func TestLoadConfigPrecedenceAndAliases(t *testing.T) {
	t.Parallel()
	c, err := Load(map[string]string{
		"MCP_USE_OAUTH_WORKOS_SUBDOMAIN": "ignored",
		"GATEWAY_ISSUER_URL":             "http://localhost:9000/tenant",
		"MCP_URL":                        "https://MCP.Example.com/",
		"PORT":                           "8080",
		"HOST":                           "127.0.0.1",
		"GATEWAY_REQUIRED_SCOPES":        "mcp:tools, mcp:read",
		"GATEWAY_AUDIENCES":              "https://mcp.example.com/mcp,api://mcp",
		"GATEWAY_ALLOWED_ORIGINS":        "http://localhost:6274",
		"GATEWAY_METRICS_ADDR":           "off",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, got, want string }{
		{"Issuer", c.Issuer, "http://localhost:9000/tenant"},
		{"Resource", c.Resource, "https://mcp.example.com/mcp"},
		{"ListenAddr", c.ListenAddr, "127.0.0.1:8080"},
		{"Scopes", strings.Join(c.ScopeList, " "), "mcp:tools mcp:read"},
		{"Audiences", strings.Join(c.AudienceList, " "), "https://mcp.example.com/mcp api://mcp"},
		{"Origins", strings.Join(c.OriginList, " "), "http://localhost:6274"},
		{"MetricsAddr", c.MetricsAddr, ""},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	c, err = Load(map[string]string{"WORKOS_SUBDOMAIN": "alias-app", "GATEWAY_PUBLIC_URL": "https://a.example.com", "MCP_URL": "https://b.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://alias-app.authkit.app" || c.Resource != "https://a.example.com/mcp" {
		t.Errorf("aliases: got issuer %q resource %q", c.Issuer, c.Resource)
	}
}

// TestLoadConfigReportsEveryProblem checks that one run names every bad variable.
func TestLoadConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := Load(map[string]string{
		"GATEWAY_ISSUER_URL":            "http://auth.example.com",
		"GATEWAY_PUBLIC_URL":            "https://mcp.example.com/base",
		"GATEWAY_MCP_PATH":              "/.well-known/x",
		"GATEWAY_UPSTREAM_URL":          "ftp://x",
		"GATEWAY_LISTEN_ADDR":           "3000",
		"GATEWAY_METRICS_ADDR":          "nope",
		"GATEWAY_REQUIRED_SCOPES":       `a"b`,
		"GATEWAY_ALLOWED_ORIGINS":       "localhost:6274",
		"GATEWAY_IDENTITY_SECRET":       "short",
		"GATEWAY_SESSION_SECRET":        "short",
		"GATEWAY_LOG_LEVEL":             "loud",
		"GATEWAY_SIGNING_ALGS":          "RS256,HS256,none",
		"GATEWAY_CLOCK_SKEW":            "1h",
		"GATEWAY_JWKS_REFRESH_INTERVAL": "soon",
		"GATEWAY_MAX_BODY_BYTES":        "10",
	})
	if err == nil {
		t.Fatal("got nil error")
	}
	msg := err.Error()
	for _, name := range []string{"GATEWAY_ISSUER_URL", "GATEWAY_PUBLIC_URL", "GATEWAY_MCP_PATH", "GATEWAY_UPSTREAM_URL",
		"GATEWAY_LISTEN_ADDR", "GATEWAY_METRICS_ADDR", "GATEWAY_REQUIRED_SCOPES", "GATEWAY_ALLOWED_ORIGINS",
		"GATEWAY_IDENTITY_SECRET", "GATEWAY_SESSION_SECRET", "GATEWAY_LOG_LEVEL", "GATEWAY_CLOCK_SKEW",
		"GATEWAY_JWKS_REFRESH_INTERVAL", "GATEWAY_MAX_BODY_BYTES"} {
		if !strings.Contains(msg, name+":") {
			t.Errorf("error does not name %s:\n%s", name, msg)
		}
	}
	if !strings.Contains(msg, `"HS256" is not allowed`) || !strings.Contains(msg, `"none" is not allowed`) {
		t.Errorf("error does not refuse HS256 and none:\n%s", msg)
	}
	if strings.Count(msg, "GATEWAY_JWKS_REFRESH_INTERVAL") != 1 {
		t.Errorf("a variable that failed to parse is reported twice:\n%s", msg)
	}
}

func TestLoadConfigNeedsAnIssuer(t *testing.T) {
	t.Parallel()
	_, err := Load(nil)
	if err == nil || !strings.Contains(err.Error(), "MCP_USE_OAUTH_WORKOS_SUBDOMAIN") {
		t.Errorf("got %v, want an error naming how to set the issuer", err)
	}
}

func TestLoadConfigFacadeScopesAndProxies(t *testing.T) {
	t.Parallel()
	base := func(kv ...string) map[string]string {
		m := map[string]string{"GATEWAY_ISSUER_URL": "https://as.example.com", "MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_1"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c, err := Load(base("GATEWAY_FACADE_SCOPES", "openid, email offline_access", "GATEWAY_FACADE_DEFAULT_SCOPE", "openid email",
		"GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7 ::1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.FacadeScopeList, " "); got != "openid email offline_access" {
		t.Errorf("FacadeScopeList: %q", got)
	}
	if got := strings.Join(c.FacadeDefaultScopeList, " "); got != "openid email" {
		t.Errorf("FacadeDefaultScopeList: %q", got)
	}
	if got := fmt.Sprint(c.TrustedProxyList); got != "[10.0.0.0/8 192.168.1.7/32 ::1/128]" {
		t.Errorf("TrustedProxyList: %s", got)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"default scope off the list", base("GATEWAY_FACADE_SCOPES", "openid", "GATEWAY_FACADE_DEFAULT_SCOPE", "openid email"), []string{"GATEWAY_FACADE_DEFAULT_SCOPE"}},
		{"required scope off the list", base("GATEWAY_FACADE_SCOPES", "openid", "GATEWAY_REQUIRED_SCOPES", "mcp:tools"), []string{"GATEWAY_REQUIRED_SCOPES"}},
		{"malformed scopes", base("GATEWAY_FACADE_SCOPES", `a"b`, "GATEWAY_FACADE_DEFAULT_SCOPE", `c\d`), []string{"GATEWAY_FACADE_SCOPES", "GATEWAY_FACADE_DEFAULT_SCOPE"}},
		{"Option A", map[string]string{"GATEWAY_ISSUER_URL": "https://as.example.com", "GATEWAY_FACADE_SCOPES": "openid", "GATEWAY_FACADE_DEFAULT_SCOPE": "openid"},
			[]string{"GATEWAY_FACADE_SCOPES", "GATEWAY_FACADE_DEFAULT_SCOPE"}},
		{"bad proxy", base("GATEWAY_TRUSTED_PROXIES", "10.0.0.0/33, proxy.internal"), []string{"GATEWAY_TRUSTED_PROXIES: \"10.0.0.0/33\"", "GATEWAY_TRUSTED_PROXIES: \"proxy.internal\""}},
	} {
		_, err := Load(tc.env)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: got %v, want an error naming %s", tc.name, err, w)
			}
		}
	}
}

// TestLoadConfigAliases checks the variables of the mcp-use example: each is read when the gateway's own is unset or
// empty, never over it, and a problem with a value read from one names it.
func TestLoadConfigAliases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ map[string]string
		check   func(*Config) string // what is wrong, or ""
		wantErr string               // a piece of the error, when loading fails
	}{
		{name: "client id alias", environ: map[string]string{"WORKOS_CLIENT_ID": "client_alias"}, check: func(c *Config) string {
			if c.StaticClientID != "client_alias" || !c.OptionB() || c.Variable("MCP_USE_OAUTH_WORKOS_CLIENT_ID") != "WORKOS_CLIENT_ID" {
				return fmt.Sprintf("StaticClientID %q from %s", c.StaticClientID, c.Variable("MCP_USE_OAUTH_WORKOS_CLIENT_ID"))
			}
			return ""
		}},
		{name: "client id over its alias", environ: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_1", "WORKOS_CLIENT_ID": "client_alias"},
			check: func(c *Config) string {
				if c.StaticClientID != "client_1" || c.Variable("MCP_USE_OAUTH_WORKOS_CLIENT_ID") != "MCP_USE_OAUTH_WORKOS_CLIENT_ID" {
					return fmt.Sprintf("StaticClientID %q from %s", c.StaticClientID, c.Variable("MCP_USE_OAUTH_WORKOS_CLIENT_ID"))
				}
				return ""
			}},
		{name: "empty public URL falls back", environ: map[string]string{"GATEWAY_PUBLIC_URL": "", "MCP_URL": "https://mcp.example.com"},
			check: func(c *Config) string {
				if c.Resource != "https://mcp.example.com/mcp" || c.Variable("GATEWAY_PUBLIC_URL") != "MCP_URL" {
					return "resource " + c.Resource + " from " + c.Variable("GATEWAY_PUBLIC_URL")
				}
				return ""
			}},
		{name: "HOST alone", environ: map[string]string{"HOST": "127.0.0.1"}, check: func(c *Config) string {
			if c.ListenAddr != "127.0.0.1:3000" {
				return "ListenAddr " + c.ListenAddr
			}
			return ""
		}},
		{name: "no client id", environ: map[string]string{}, check: func(c *Config) string {
			if c.OptionB() || c.Variable("MCP_USE_OAUTH_WORKOS_CLIENT_ID") != "MCP_USE_OAUTH_WORKOS_CLIENT_ID" {
				return "Option B without a client id"
			}
			return ""
		}},
		{name: "bad alias value names the alias", environ: map[string]string{"MCP_URL": "http://mcp.example.com"}, wantErr: "MCP_URL: must use https"},
		{name: "bad subdomain alias", environ: map[string]string{"GATEWAY_ISSUER_URL": "", "WORKOS_SUBDOMAIN": "my_app"}, wantErr: "WORKOS_SUBDOMAIN: "},
		{name: "client id alias with white space", environ: map[string]string{"WORKOS_CLIENT_ID": "a b"}, wantErr: "MCP_USE_OAUTH_WORKOS_CLIENT_ID: must not contain white space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			environ := map[string]string{"GATEWAY_ISSUER_URL": "https://auth.example.com"}
			maps.Copy(environ, tt.environ)
			c, err := Load(environ)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("LoadConfig: got %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if problem := tt.check(c); problem != "" {
				t.Error(problem)
			}
		})
	}
}

// TestLoadConfigParsesTypedValues checks what caarlos0/env parses through encoding.TextUnmarshaler and its own
// parsers: lists split at commas and white space, levels, durations; and that a value that does not parse is named once
// with the problem.
func TestLoadConfigParsesTypedValues(t *testing.T) {
	t.Parallel()
	c, err := Load(map[string]string{"GATEWAY_ISSUER_URL": "https://auth.example.com", "GATEWAY_SIGNING_ALGS": " RS256,\tES256  EdDSA,",
		"GATEWAY_LOG_LEVEL": "WARN", "GATEWAY_CLOCK_SKEW": "1m30s", "GATEWAY_METRICS_ADDR": "off"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.AlgList, []string{"RS256", "ES256", "EdDSA"}; !slices.Equal(got, want) {
		t.Errorf("AlgList: got %q, want %q", got, want)
	}
	if c.Level != slog.LevelWarn || c.ClockSkew != 90*time.Second || c.MetricsAddr != "" {
		t.Errorf("got level %s, clock skew %s, metrics address %q", c.Level, c.ClockSkew, c.MetricsAddr)
	}
	_, err = Load(map[string]string{"GATEWAY_ISSUER_URL": "https://auth.example.com", "GATEWAY_LOG_LEVEL": "loud",
		"GATEWAY_MAX_BODY_BYTES": "lots", "GATEWAY_SHUTDOWN_TIMEOUT": "-1s"})
	want := []string{
		`GATEWAY_LOG_LEVEL: must be debug, info, warn or error (got "loud")`,
		`GATEWAY_MAX_BODY_BYTES: strconv.ParseInt: parsing "lots": invalid syntax`,
		`GATEWAY_SHUTDOWN_TIMEOUT: must be positive (got -1s)`,
	}
	if err == nil || !slices.Equal(strings.Split(err.Error(), "\n"), want) {
		t.Errorf("LoadConfig: got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

// TestLoadConfigIgnoresProcessEnvironment guards against caarlos0/env's fallback to the process environment when it
// is given a nil map.
func TestLoadConfigIgnoresProcessEnvironment(t *testing.T) {
	t.Setenv("GATEWAY_ISSUER_URL", "https://from-the-process.example.com")
	t.Setenv("GATEWAY_LOG_LEVEL", "loud")
	for _, environ := range []map[string]string{nil, {}} {
		if _, err := Load(environ); err == nil || strings.Contains(err.Error(), "GATEWAY_LOG_LEVEL") {
			t.Errorf("Load(%v): got %v, want only the missing issuer", environ, err)
		}
	}
}

// TestLoadConfigLimits checks the limits' variables: their defaults, the rate syntax, and what is refused.
func TestLoadConfigLimits(t *testing.T) {
	t.Parallel()
	c, err := Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example"})
	if err != nil {
		t.Fatal(err)
	}
	if c.RateLimitUser.On() || c.MaxStreamsUser != 16 || c.RateLimitAnonymous != (Rate{PerSecond: 20, Burst: 200}) {
		t.Errorf("defaults: got %+v, %d, %+v", c.RateLimitUser, c.MaxStreamsUser, c.RateLimitAnonymous)
	}
	for in, want := range map[string]Rate{
		"20/s,burst=40":   {PerSecond: 20, Burst: 40},
		"20/s":            {PerSecond: 20, Burst: 20},
		"30/m":            {PerSecond: 0.5, Burst: 1},
		"7200/h, burst=3": {PerSecond: 2, Burst: 3},
		"off":             {},
		"":                {},
	} {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err != nil || r != want {
			t.Errorf("%q: got %+v, %v, want %+v", in, r, err, want)
		}
	}
	for _, in := range []string{"20", "20/d", "0/s", "-1/s", "x/s", "20/s,burst=0", "20/s,40", "20/s,burst=x"} {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q: got %+v, want an error", in, r)
		}
	}
	_, err = Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "GATEWAY_RATE_LIMIT_USER": "lots",
		"GATEWAY_MAX_STREAMS_USER": "-1"})
	for _, name := range []string{"GATEWAY_RATE_LIMIT_USER", "GATEWAY_MAX_STREAMS_USER"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error: got %v, want one naming %s", err, name)
		}
	}
}
