package main

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/cmd/internal/envname"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	defaults := config{
		ListenAddr:     "127.0.0.1:3001",
		WorkOSAPIURL:   "https://api.workos.com",
		IdentityMaxAge: 60 * time.Second,
		Stateless:      true,
		LogLevel:       slog.LevelInfo,
	}
	secret := strings.Repeat("s", minSecretLen)
	tests := []struct {
		name       string
		environ    map[string]string
		want       config
		wantAPIKey string
	}{
		{name: "defaults", environ: map[string]string{}, want: defaults},
		{
			name: "every variable",
			environ: map[string]string{
				"TOOLS_LISTEN_ADDR":            ":8080",
				"WORKOS_API_URL":               "http://127.0.0.1:9999/workos",
				"MCP_USE_OAUTH_WORKOS_API_KEY": "sk_primary",
				"GATEWAY_IDENTITY_SECRET":      secret,
				"TOOLS_IDENTITY_MAX_AGE":       "2m",
				"TOOLS_STATELESS":              "false",
				"TOOLS_JSON_RESPONSE":          "1",
				"TOOLS_LOG_LEVEL":              "DEBUG",
			},
			want: config{
				ListenAddr: ":8080", WorkOSAPIURL: "http://127.0.0.1:9999/workos", WorkOSAPIKey: "sk_primary",
				IdentitySecret: secret, IdentityMaxAge: 2 * time.Minute, Stateless: false, JSONResponse: true, LogLevel: slog.LevelDebug,
			},
			wantAPIKey: "sk_primary",
		},
		{
			name:       "API key: MCP_USE_OAUTH_WORKOS_API_KEY wins over WORKOS_API_KEY",
			environ:    map[string]string{"MCP_USE_OAUTH_WORKOS_API_KEY": "sk_primary", "WORKOS_API_KEY": "sk_alias"},
			want:       with(defaults, func(c *config) { c.WorkOSAPIKey = "sk_primary" }),
			wantAPIKey: "sk_primary",
		},
		{
			name:       "API key: WORKOS_API_KEY alone",
			environ:    map[string]string{"WORKOS_API_KEY": "sk_alias"},
			want:       with(defaults, func(c *config) { c.WorkOSAPIKey = "sk_alias" }),
			wantAPIKey: "sk_alias",
		},
		{
			name:       "API key: empty MCP_USE_OAUTH_WORKOS_API_KEY falls back",
			environ:    map[string]string{"MCP_USE_OAUTH_WORKOS_API_KEY": " ", "WORKOS_API_KEY": "sk_alias"},
			want:       with(defaults, func(c *config) { c.WorkOSAPIKey = "sk_alias" }),
			wantAPIKey: "sk_alias",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := loadConfig(tt.environ)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("config = %+v, want %+v", got, tt.want)
			}
			if got := got.apiKey(); got != tt.wantAPIKey {
				t.Errorf("apiKey() = %q, want %q", got, tt.wantAPIKey)
			}
		})
	}
}

func with(c config, f func(*config)) config {
	f(&c)
	return c
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ map[string]string
		want    []string // variables named in the error, each exactly once
	}{
		{
			name: "all at once",
			environ: map[string]string{
				"TOOLS_LISTEN_ADDR":       "localhost",
				"WORKOS_API_URL":          "ftp://api.workos.com",
				"GATEWAY_IDENTITY_SECRET": "tooshortsecret",
				"TOOLS_IDENTITY_MAX_AGE":  "soon",
				"TOOLS_STATELESS":         "maybe",
				"TOOLS_JSON_RESPONSE":     "perhaps",
				"TOOLS_LOG_LEVEL":         "verbose",
			},
			want: []string{"TOOLS_LISTEN_ADDR", "WORKOS_API_URL", "GATEWAY_IDENTITY_SECRET", "TOOLS_IDENTITY_MAX_AGE",
				"TOOLS_STATELESS", "TOOLS_JSON_RESPONSE", "TOOLS_LOG_LEVEL"},
		},
		{name: "relative URL", environ: map[string]string{"WORKOS_API_URL": "/workos"}, want: []string{"WORKOS_API_URL"}},
		{name: "URL with a query", environ: map[string]string{"WORKOS_API_URL": "https://api.workos.com/?k=v"}, want: []string{"WORKOS_API_URL"}},
		{name: "URL with credentials", environ: map[string]string{"WORKOS_API_URL": "https://u:p@api.workos.com"}, want: []string{"WORKOS_API_URL"}},
		{name: "unparsable URL", environ: map[string]string{"WORKOS_API_URL": "http://[::1"}, want: []string{"WORKOS_API_URL"}},
		{name: "port without colon", environ: map[string]string{"TOOLS_LISTEN_ADDR": "3001"}, want: []string{"TOOLS_LISTEN_ADDR"}},
		{name: "negative max age", environ: map[string]string{"TOOLS_IDENTITY_MAX_AGE": "-1s"}, want: []string{"TOOLS_IDENTITY_MAX_AGE"}},
		{name: "zero max age", environ: map[string]string{"TOOLS_IDENTITY_MAX_AGE": "0s"}, want: []string{"TOOLS_IDENTITY_MAX_AGE"}},
	}
	all := []string{"TOOLS_LISTEN_ADDR", "WORKOS_API_URL", "MCP_USE_OAUTH_WORKOS_API_KEY", "WORKOS_API_KEY",
		"GATEWAY_IDENTITY_SECRET", "TOOLS_IDENTITY_MAX_AGE", "TOOLS_STATELESS", "TOOLS_JSON_RESPONSE", "TOOLS_LOG_LEVEL"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig(tt.environ)
			if err == nil {
				t.Fatal("loadConfig: got no error")
			}
			msg := err.Error()
			lines := strings.Split(msg, "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(lines), len(tt.want), msg)
			}
			for _, name := range all {
				got, want := 0, 0
				for _, line := range lines {
					if strings.HasPrefix(line, name+": ") {
						got++
					}
				}
				for _, w := range tt.want {
					if w == name {
						want++
					}
				}
				if got != want {
					t.Errorf("%s named by %d problems, want %d:\n%s", name, got, want, msg)
				}
			}
			if strings.Contains(msg, "tooshortsecret") {
				t.Errorf("error repeats the secret:\n%s", msg)
			}
		})
	}
}

// TestListenBeyondLoopbackNeedsSecret checks that the service refuses to listen beyond loopback unless identity
// signatures are checked, naming both variables.
func TestListenBeyondLoopbackNeedsSecret(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("s", minSecretLen)
	for _, tt := range []struct {
		addr     string
		loopback bool
	}{
		{"127.0.0.1:3001", true},
		{"127.0.0.2:0", true},
		{"localhost:3001", true},
		{"LocalHost:3001", true},
		{"[::1]:3001", true},
		{":3001", false},
		{"0.0.0.0:3001", false},
		{"[::]:3001", false},
		{"192.0.2.10:3001", false},
		{"tools:3001", false},
		{"localhost.example.com:3001", false},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig(map[string]string{"TOOLS_LISTEN_ADDR": tt.addr})
			switch {
			case tt.loopback && err != nil:
				t.Errorf("without a secret: got %v, want nil", err)
			case !tt.loopback && err == nil:
				t.Error("without a secret: got nil, want an error")
			case !tt.loopback:
				msg := err.Error()
				if !strings.HasPrefix(msg, "TOOLS_LISTEN_ADDR: ") || !strings.Contains(msg, "GATEWAY_IDENTITY_SECRET") ||
					!strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "\n") {
					t.Errorf("without a secret: got %q, want one problem naming TOOLS_LISTEN_ADDR and GATEWAY_IDENTITY_SECRET and both fixes", msg)
				}
			}
			if _, err := loadConfig(map[string]string{"TOOLS_LISTEN_ADDR": tt.addr, "GATEWAY_IDENTITY_SECRET": secret}); err != nil {
				t.Errorf("with a secret: got %v, want nil", err)
			}
		})
	}
	// A secret that is set but too short is reported as such, not as a missing one.
	_, err := loadConfig(map[string]string{"TOOLS_LISTEN_ADDR": ":3001", "GATEWAY_IDENTITY_SECRET": "short"})
	if err == nil || strings.Contains(err.Error(), "TOOLS_LISTEN_ADDR") || !strings.Contains(err.Error(), "GATEWAY_IDENTITY_SECRET") {
		t.Errorf("short secret: got %v, want one problem naming GATEWAY_IDENTITY_SECRET", err)
	}
}

func TestUnknownVariables(t *testing.T) {
	t.Parallel()
	environ := map[string]string{
		"TOOLS_LOG_LEVL":               "debug",
		"TOOLS_STATELES":               "false",
		"TOOLS_LISTEN_ADDR":            "127.0.0.1:3001",
		"GATEWAY_IDENTITY_SECRET":      "read by the gateway too",
		"GATEWAY_ANYTHING":             "the gateway's business",
		"MCP_USE_OAUTH_WORKOS_API_KEY": "sk",
		"WORKOS_API_URL":               "https://api.workos.com",
		"HOME":                         "/root",
	}
	got := unknownVariables(environ)
	want := []envname.Unknown{
		{Name: "TOOLS_LOG_LEVL", Suggestion: "TOOLS_LOG_LEVEL"},
		{Name: "TOOLS_STATELES", Suggestion: "TOOLS_STATELESS"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("unknownVariables = %+v, want %+v", got, want)
	}
	// Every name config reads is known.
	all := map[string]string{}
	for f := range reflect.TypeFor[config]().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" {
			all[name] = "x"
		}
	}
	if got := unknownVariables(all); len(got) != 0 {
		t.Errorf("unknownVariables of config's own names = %+v, want none", got)
	}
}

// TestLoadConfigIgnoresProcessEnvironment guards against caarlos0/env's fallback to the real environment when it is
// given a nil map.
func TestLoadConfigIgnoresProcessEnvironment(t *testing.T) {
	t.Setenv("TOOLS_LOG_LEVEL", "not-a-level")
	t.Setenv("MCP_USE_OAUTH_WORKOS_API_KEY", "sk_from_process")
	for _, environ := range []map[string]string{nil, {}} {
		cfg, err := loadConfig(environ)
		if err != nil {
			t.Fatalf("loadConfig(%v): %v", environ, err)
		}
		if cfg.LogLevel != slog.LevelInfo || cfg.apiKey() != "" {
			t.Errorf("loadConfig(%v) read the process environment: %+v", environ, cfg)
		}
	}
}

// TestLoadConfigTraces: the OTEL_* variables are read from the environment map, off by default, and their problems
// are reported with the service's own.
func TestLoadConfigTraces(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.traces.Enabled || c.traces.Endpoint != "http://collector:4318/v1/traces" {
		t.Errorf("got traces %+v, want on, to http://collector:4318/v1/traces", c.traces)
	}
	_, err = loadConfig(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318", "TOOLS_IDENTITY_MAX_AGE": "0s"})
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "TOOLS_IDENTITY_MAX_AGE"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("the error does not name %s: %v", name, err)
		}
	}
}
