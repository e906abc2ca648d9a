// Package policytest holds a policy for the tests of the packages that apply policies (proxy, proxy/authz): the
// development example's rules over the tool service's tools, rules that need scopes, and prompts and resources.
package policytest

import (
	"strings"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// YAML is the test policy's file.
const YAML = `default: deny
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

// Policy returns YAML, parsed. It panics if YAML does not load, which its own test rules out.
func Policy() *policy.Policy {
	p, err := policy.Parse([]byte(YAML), "test.yaml")
	if err != nil {
		panic(err)
	}
	return p
}

// Facts returns facts with the space-separated permissions and scopes.
func Facts(perms, scopes string) *policy.Facts {
	return &policy.Facts{Permissions: strings.Fields(perms), Scopes: strings.Fields(scopes)}
}
