package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/cmd/internal/envname"
	"github.com/mcp-gateway/gateway/proxy/config"
)

func TestUnknownVariables(t *testing.T) {
	t.Parallel()
	environ := map[string]string{
		"GATEWAY_REQUIRED_SCOPE":       "admin",
		"GATEWAY_ISSUER_URL":           "https://auth.example.com",
		"GATEWAY_DEV_AUTOLOGN":         "admin@example.com",
		"GATEWAY_DEV":                  "false",
		"gateway_log_level":            "debug",
		"MCP_USE_OAUTH_WORKOS_API_KEY": "sk_for_the_tool_service",
		"TOOLS_STATELESS":              "true",
		"PORT":                         "3000",
	}
	want := []envname.Unknown{
		{Name: "GATEWAY_DEV_AUTOLOGN", Suggestion: "GATEWAY_DEV_AUTOLOGIN"},
		{Name: "GATEWAY_REQUIRED_SCOPE", Suggestion: "GATEWAY_REQUIRED_SCOPES"},
		{Name: "gateway_log_level", Suggestion: "GATEWAY_LOG_LEVEL"},
	}
	if got := unknownVariables(environ); !slices.Equal(got, want) {
		t.Errorf("UnknownVariables = %+v, want %+v", got, want)
	}

	// Every variable Env reads is known.
	all := map[string]string{}
	for f := range reflect.TypeFor[config.Env]().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" && name != "-" {
			all[name] = "x"
		}
	}
	if got := unknownVariables(all); len(got) != 0 {
		t.Errorf("UnknownVariables of config.Env's own variables = %+v, want none", got)
	}
}

// TestLogWarnings checks the start-up warnings: each unknown variable with its closest known name, and a missing
// identity secret; and none for a configuration without either.
func TestLogWarnings(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("s", 32)
	tests := []struct {
		name    string
		environ map[string]string
		want    []string // "msg prefix|name|closest_known" of each warning
	}{
		{name: "nothing to say", environ: map[string]string{"GATEWAY_IDENTITY_SECRET": secret}},
		{
			name:    "no identity secret",
			environ: map[string]string{},
			want:    []string{"GATEWAY_IDENTITY_SECRET is not set||"},
		},
		{
			name:    "unknown variable",
			environ: map[string]string{"GATEWAY_IDENTITY_SECRET": secret, "GATEWAY_REQUIRED_SCOPE": "admin"},
			want:    []string{"unknown variable|GATEWAY_REQUIRED_SCOPE|GATEWAY_REQUIRED_SCOPES"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			environ := map[string]string{"GATEWAY_ISSUER_URL": "https://auth.example.com"}
			for k, v := range tt.environ {
				environ[k] = v
			}
			c, err := config.Load(environ)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			logWarnings(slog.New(slog.NewJSONHandler(&buf, nil)), c, environ)
			var got []string
			for line := range strings.Lines(buf.String()) {
				var rec struct {
					Level, Msg, Name string
					Closest          string `json:"closest_known"`
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if rec.Level != "WARN" {
					t.Errorf("%q logged at %s, want WARN", rec.Msg, rec.Level)
				}
				prefix, _, _ := strings.Cut(rec.Msg, ":")
				got = append(got, prefix+"|"+rec.Name+"|"+rec.Closest)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings = %q, want %q\n%s", got, tt.want, buf.String())
			}
			if strings.Contains(buf.String(), secret) {
				t.Error("a warning repeats the secret")
			}
		})
	}
}
