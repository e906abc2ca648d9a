package main

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
	"github.com/mcp-gateway/gateway/tools"
)

func TestCheckSeveralIssuersAndIntrospection(t *testing.T) {
	t.Parallel()
	tool := httptest.NewServer(tools.Handler(tools.Options{}))
	t.Cleanup(tool.Close)
	a := tokentest.NewIssuer(t, tokentest.NewKey(t, "k1", 0))
	b := tokentest.NewIssuer(t, tokentest.NewKey(t, "k1", 1))
	down := tokentest.NewIssuer(t)
	down.MetadataDown.Store(true)
	base := map[string]string{
		"GATEWAY_ISSUER_URL":                  a.URL + "," + b.URL,
		"GATEWAY_UPSTREAM_URL":                tool.URL + "/mcp",
		"GATEWAY_INTROSPECTION_CLIENT_ID":     tokentest.IntrospectionClientID,
		"GATEWAY_INTROSPECTION_CLIENT_SECRET": tokentest.IntrospectionClientSecret,
		"GATEWAY_INTROSPECTION_ISSUER":        b.URL,
	}
	for _, tc := range []struct {
		name         string
		env          map[string]string
		passed       []string
		failed       []string
		output, hide string
	}{
		{name: "good", passed: []string{"issuer #2", "introspection"},
			output: "✓ introspection: " + b.URL + "/oauth2/introspect answers and accepts client gateway-rs (client_secret_basic)"},
		{name: "post", env: map[string]string{"GATEWAY_INTROSPECTION_AUTH_METHOD": "client_secret_post"}, passed: []string{"introspection"}},
		{name: "wrong secret", env: map[string]string{"GATEWAY_INTROSPECTION_CLIENT_SECRET": "not-the-secret"}, failed: []string{"introspection"},
			output: "answered 401 Unauthorized (are the introspection client credentials right?)", hide: "not-the-secret"},
		{name: "an issuer down", env: map[string]string{"GATEWAY_ISSUER_URL": a.URL + "," + down.URL, "GATEWAY_INTROSPECTION_ISSUER": ""},
			passed: []string{"introspection"}, failed: []string{"issuer #2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tc.env {
				if v == "" {
					delete(env, k)
					continue
				}
				env[k] = v
			}
			marks, out, _ := checkLines(t, env)
			for _, n := range tc.passed {
				if !slices.Contains(marks["✓"], n) {
					t.Errorf("%q did not pass:\n%s", n, out)
				}
			}
			for _, n := range tc.failed {
				if !slices.Contains(marks["✗"], n) {
					t.Errorf("%q did not fail:\n%s", n, out)
				}
			}
			if !strings.Contains(out, tc.output) {
				t.Errorf("output lacks %q:\n%s", tc.output, out)
			}
			if tc.hide != "" && strings.Contains(out, tc.hide) {
				t.Errorf("output shows the secret:\n%s", out)
			}
		})
	}
}
