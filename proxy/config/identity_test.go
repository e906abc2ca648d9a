package config

import (
	"slices"
	"strings"
	"testing"
)

func TestLoadIdentitySources(t *testing.T) {
	t.Parallel()
	base := func(kv ...string) map[string]string {
		m := map[string]string{"GATEWAY_ISSUER_URL": "https://issuer.example"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c, err := Load(base())
	if err != nil {
		t.Fatal(err)
	}
	if c.ClaimHeaderMap != nil || !c.CIMD || c.InsecureCIMDAllowPrivate || c.CIMDCAFile != "" {
		t.Errorf("defaults: map %v, CIMD %v, allow private %v, CA file %q", c.ClaimHeaderMap, c.CIMD, c.InsecureCIMDAllowPrivate, c.CIMDCAFile)
	}
	c, err = Load(base("GATEWAY_CLAIM_HEADERS", "X-Tenant=org_id, X-Groups=groups", "MCP_USE_OAUTH_WORKOS_CLIENT_ID", "client_1",
		"GATEWAY_CIMD", "off", "GATEWAY_CIMD_ALLOW_PRIVATE", "true", "GATEWAY_CIMD_CA_FILE", "/etc/ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ClaimHeaderMap.Names(); !slices.Equal(got, []string{"X-Tenant", "X-Groups"}) || c.CIMD || !c.InsecureCIMDAllowPrivate || c.CIMDCAFile != "/etc/ca.pem" {
		t.Errorf("set: names %q, CIMD %v, allow private %v, CA file %q", got, c.CIMD, c.InsecureCIMDAllowPrivate, c.CIMDCAFile)
	}
	for _, tt := range []struct {
		env  map[string]string
		want []string // pieces of the error
	}{
		{base("GATEWAY_CLAIM_HEADERS", "Cookie=sub,X-Auth-Tenant=org_id"), []string{"GATEWAY_CLAIM_HEADERS", `"Cookie": refused`, `"X-Auth-Tenant": refused`}},
		{base("GATEWAY_CIMD", "yes"), []string{`GATEWAY_CIMD: must be on or off (got "yes")`}},
		{base("GATEWAY_CIMD_ALLOW_PRIVATE", "true"), []string{"GATEWAY_CIMD_ALLOW_PRIVATE: is set without MCP_USE_OAUTH_WORKOS_CLIENT_ID"}},
		{base("GATEWAY_CIMD_CA_FILE", "/x.pem"), []string{"GATEWAY_CIMD_CA_FILE: is set without MCP_USE_OAUTH_WORKOS_CLIENT_ID"}},
	} {
		_, err := Load(tt.env)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: got %v, want an error with %q", tt.env, err, w)
			}
		}
	}
}
