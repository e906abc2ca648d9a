package authz

import (
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// testPolicyYAML is the policy most tests use: the development example's rules over the tool service's tools, rules
// that need scopes, and prompts and resources.
const testPolicyYAML = `default: deny
rules:
  - name: everyone-reads-themselves
    tools: ["get-user-info", "get-user-permissions"]
  - name: directory-lookups
    tools: ["get-workos-user"]
    require: {permissions: ["users:read"]}
  - name: admin-writes
    tools: ["admin-*"]
    require: {permissions: ["users:write"], scopes: ["admin:write"]}
  - name: billing
    tools: ["billing-*"]
    require: {scopes: ["billing:manage"]}
  - name: prompts
    prompts: ["greet"]
  - name: public-files
    resources: ["file:///public/*"]
`

// testPolicy returns testPolicyYAML, parsed.
func testPolicy() *policy.Policy {
	p, err := policy.Parse([]byte(testPolicyYAML), "test.yaml")
	if err != nil {
		panic(err)
	}
	return p
}

// facts returns facts with permissions and scopes.
func facts(perms, scopes string) *policy.Facts {
	return &policy.Facts{Permissions: strings.Fields(perms), Scopes: strings.Fields(scopes)}
}

// TestTestPolicy: the decisions the tests of this package rely on.
func TestTestPolicy(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	for _, tc := range []struct {
		kind    policy.Kind
		name    string
		f       *policy.Facts
		outcome policy.Outcome
	}{
		{policy.Tool, "get-user-info", facts("", ""), policy.Allow},
		{policy.Tool, "get-workos-user", facts("", ""), policy.Deny},
		{policy.Tool, "get-workos-user", facts("users:read", ""), policy.Allow},
		{policy.Tool, "secret-tool", facts("users:read", ""), policy.Deny},
		{policy.Tool, "billing-report", facts("", "openid"), policy.StepUp},
		{policy.Tool, "admin-delete", facts("", ""), policy.Deny},
		{policy.Prompt, "greet", facts("", ""), policy.Allow},
		{policy.Resource, "file:///public/a", facts("", ""), policy.Allow},
		{policy.Resource, "file:///secret/b", facts("", ""), policy.Deny},
	} {
		if d := p.Decide(tc.f, tc.kind, tc.name); d.Outcome != tc.outcome {
			t.Errorf("%s %s: got %v, want %s", tc.kind, tc.name, d, tc.outcome)
		}
	}
}
