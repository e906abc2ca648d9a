package policytest

import (
	"testing"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// TestPolicy: the decisions the tests that use this policy rely on.
func TestPolicy(t *testing.T) {
	t.Parallel()
	p := Policy()
	for _, tc := range []struct {
		kind    policy.Kind
		name    string
		f       *policy.Facts
		outcome policy.Outcome
	}{
		{policy.Tool, "get-user-info", Facts("", ""), policy.Allow},
		{policy.Tool, "get-workos-user", Facts("", ""), policy.Deny},
		{policy.Tool, "get-workos-user", Facts("users:read", ""), policy.Allow},
		{policy.Tool, "secret-tool", Facts("users:read", ""), policy.Deny},
		{policy.Tool, "billing-report", Facts("", "openid"), policy.StepUp},
		{policy.Tool, "admin-delete", Facts("", ""), policy.Deny},
		{policy.Prompt, "greet", Facts("", ""), policy.Allow},
		{policy.Resource, "file:///public/a", Facts("", ""), policy.Allow},
		{policy.Resource, "file:///secret/b", Facts("", ""), policy.Deny},
	} {
		if d := p.Decide(tc.f, tc.kind, tc.name); d.Outcome != tc.outcome {
			t.Errorf("%s %s: got %v, want %s", tc.kind, tc.name, d, tc.outcome)
		}
	}
}
