package policy

import "testing"

// devLikePolicy is the development policy's shape: three rules, no condition.
const devLikePolicy = `
default: deny
rules:
  - name: everyone-reads-themselves
    tools: ["get-user-info", "get-user-permissions"]
  - name: directory-lookups
    tools: ["get-workos-user"]
    require:
      permissions: ["users:read"]
  - name: admins
    tools: ["*"]
    require:
      roles: ["admin"]
`

// whenPolicy puts a condition on the rule that grants get-workos-user.
const whenPolicy = `
default: deny
rules:
  - name: everyone-reads-themselves
    tools: ["get-user-info", "get-user-permissions"]
  - name: directory-lookups
    tools: ["get-workos-user"]
    require:
      permissions: ["users:read"]
    when: 'claims.email.endsWith("@example.com")'
  - name: admins
    tools: ["*"]
    require:
      roles: ["admin"]
`

// mcpPolicy's condition reads claims and mcp.
const mcpPolicy = `
rules:
  - name: getters
    tools: ["*"]
    when: '"member" in claims.roles && mcp.name.startsWith("get-")'
`

func benchFacts() Facts {
	return FactsFromClaims(map[string]any{
		"sub": "user_dev_member", "email": "member@example.com", "org_id": "org_dev_acme", "role": "member",
		"roles": []any{"member"}, "permissions": []any{"users:read"}, "scope": "openid offline_access",
	})
}

// BenchmarkDecide is the cost of one decision (one list item, or one call) for the member of development mode.
func BenchmarkDecide(b *testing.B) {
	f := benchFacts()
	for _, bc := range []struct{ name, policy, tool string }{
		{"first-rule", devLikePolicy, "get-user-info"},
		{"permission", devLikePolicy, "get-workos-user"},
		{"denied-last-rule", devLikePolicy, "delete-user"},
		{"when", whenPolicy, "get-workos-user"},
		{"when-mcp", mcpPolicy, "get-workos-user"},
	} {
		p := mustParse(b, bc.policy)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(&f, Tool, bc.tool)
			}
		})
	}
}

// BenchmarkDecideList is the cost of filtering tools/list's three tools.
func BenchmarkDecideList(b *testing.B) {
	f := benchFacts()
	tools := []string{"get-user-info", "get-user-permissions", "get-workos-user"}
	for _, bc := range []struct{ name, policy string }{{"no-when", devLikePolicy}, {"when", whenPolicy}} {
		p := mustParse(b, bc.policy)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, t := range tools {
					p.Decide(&f, Tool, t)
				}
			}
		})
	}
}

// BenchmarkFactsFromClaims is the once-per-request cost of building the facts.
func BenchmarkFactsFromClaims(b *testing.B) {
	claims := benchFacts().Claims
	b.ReportAllocs()
	for b.Loop() {
		FactsFromClaims(claims)
	}
}
