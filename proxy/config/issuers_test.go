package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadIssuers(t *testing.T) {
	t.Parallel()
	c, err := Load(map[string]string{
		"GATEWAY_ISSUER_URL":       "https://a.example.com, https://b.example.com/t=1",
		"GATEWAY_AUDIENCES":        "https://mcp.example.com/mcp",
		"GATEWAY_ISSUER_AUDIENCES": "https://b.example.com/t=1=api://mcp https://b.example.com/t=1=other",
		"GATEWAY_PUBLIC_URL":       "https://mcp.example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Issuer{
		{URL: "https://a.example.com", Audiences: []string{"https://mcp.example.com/mcp"}},
		{URL: "https://b.example.com/t=1", Audiences: []string{"api://mcp", "other"}},
	}
	if !reflect.DeepEqual(c.Issuers, want) || c.Issuer != "https://a.example.com" {
		t.Errorf("Issuers %+v, Issuer %q; want %+v, the first", c.Issuers, c.Issuer, want)
	}
	if c.Introspection != nil {
		t.Errorf("Introspection %+v without a client id, want nil", c.Introspection)
	}
}

func TestLoadIntrospection(t *testing.T) {
	t.Parallel()
	c, err := Load(map[string]string{
		"GATEWAY_ISSUER_URL":                  "https://a.example.com,https://b.example.com",
		"GATEWAY_INTROSPECTION_CLIENT_ID":     "rs",
		"GATEWAY_INTROSPECTION_CLIENT_SECRET": "s",
		"GATEWAY_INTROSPECTION_ISSUER":        "https://b.example.com",
		"GATEWAY_INTROSPECTION_AUTH_METHOD":   "client_secret_post",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &Introspection{Issuer: "https://b.example.com", ClientID: "rs", ClientSecret: "s", PostAuth: true, CacheTTL: time.Minute}
	if !reflect.DeepEqual(c.Introspection, want) || c.TokenValidation != "auto" {
		t.Errorf("Introspection %+v, validation %q; want %+v, auto", c.Introspection, c.TokenValidation, want)
	}
}

func TestLoadIssuersRefused(t *testing.T) {
	t.Parallel()
	base := map[string]string{"GATEWAY_ISSUER_URL": "https://a.example.com,https://b.example.com"}
	tests := []struct {
		name string
		env  map[string]string
		want string // in the error
	}{
		{"Option B with two issuers", map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_1"}, "GATEWAY_ISSUER_URL: lists 2 issuers, but with MCP_USE_OAUTH_WORKOS_CLIENT_ID"},
		{"repeated issuer", map[string]string{"GATEWAY_ISSUER_URL": "https://a.example.com https://a.example.com"}, "lists https://a.example.com twice"},
		{"http issuer", map[string]string{"GATEWAY_ISSUER_URL": "https://a.example.com,http://b.example.com"}, "GATEWAY_ISSUER_URL: must use https"},
		{"audience of an unknown issuer", map[string]string{"GATEWAY_ISSUER_AUDIENCES": "https://c.example.com=x"}, "GATEWAY_ISSUER_AUDIENCES: \"https://c.example.com=x\" is not"},
		{"empty audience", map[string]string{"GATEWAY_ISSUER_AUDIENCES": "https://a.example.com="}, "names no audience"},
		{"unknown validation", map[string]string{"GATEWAY_TOKEN_VALIDATION": "opaque"}, "GATEWAY_TOKEN_VALIDATION: must be auto, jwt or introspection"},
		{"introspection without credentials", map[string]string{"GATEWAY_TOKEN_VALIDATION": "introspection"}, "GATEWAY_TOKEN_VALIDATION: introspection needs"},
		{"introspection of every token with several issuers", map[string]string{"GATEWAY_TOKEN_VALIDATION": "introspection",
			"GATEWAY_INTROSPECTION_CLIENT_ID": "rs", "GATEWAY_INTROSPECTION_CLIENT_SECRET": "s"}, "GATEWAY_TOKEN_VALIDATION: introspection sends every token to one issuer"},
		{"jwt with credentials", map[string]string{"GATEWAY_TOKEN_VALIDATION": "jwt", "GATEWAY_INTROSPECTION_CLIENT_ID": "rs", "GATEWAY_INTROSPECTION_CLIENT_SECRET": "s"}, "GATEWAY_INTROSPECTION_CLIENT_ID: is set, but"},
		{"id without secret", map[string]string{"GATEWAY_INTROSPECTION_CLIENT_ID": "rs"}, "GATEWAY_INTROSPECTION_CLIENT_SECRET: must be set"},
		{"secret without id", map[string]string{"GATEWAY_INTROSPECTION_CLIENT_SECRET": "s"}, "GATEWAY_INTROSPECTION_CLIENT_SECRET: is set without"},
		{"http endpoint", map[string]string{"GATEWAY_INTROSPECTION_CLIENT_ID": "rs", "GATEWAY_INTROSPECTION_CLIENT_SECRET": "s", "GATEWAY_INTROSPECTION_URL": "http://idp.example.com/introspect"}, "GATEWAY_INTROSPECTION_URL: must use https"},
		{"introspection issuer not listed", map[string]string{"GATEWAY_INTROSPECTION_CLIENT_ID": "rs", "GATEWAY_INTROSPECTION_CLIENT_SECRET": "s", "GATEWAY_INTROSPECTION_ISSUER": "https://c.example.com"}, "GATEWAY_INTROSPECTION_ISSUER: \"https://c.example.com\" is not one"},
		{"auth method", map[string]string{"GATEWAY_INTROSPECTION_AUTH_METHOD": "private_key_jwt"}, "GATEWAY_INTROSPECTION_AUTH_METHOD: must be"},
		{"cache TTL", map[string]string{"GATEWAY_INTROSPECTION_CACHE_TTL": "2h"}, "GATEWAY_INTROSPECTION_CACHE_TTL: must be between 1s and 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			_, err := Load(env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one containing %q", err, tt.want)
			}
		})
	}
}
