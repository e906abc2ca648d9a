package policy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// explainPolicy is the development policy with rules that show each requirement's wording.
const explainPolicy = `
default: deny
rules:
  - name: everyone-reads-themselves
    tools: ["get-user-info", "get-user-permissions"]
  - name: directory-lookups
    tools: ["get-workos-user"]
    require:
      permissions: ["users:read"]
  - name: acme-staff-directory
    tools: ["get-*"]
    require:
      org: ["org_dev_acme"]
      roles: ["staff", "support"]
      scopes: ["directory"]
    when: 'claims.email.endsWith("@example.com")'
  - name: admins
    tools: ["*"]
    require:
      roles: ["admin"]
  - name: reports
    resources: ["report://*"]
    require:
      permissions: ["reports:read", "reports:export"]
      scopes: ["reports"]
`

// TestExplainGolden pins explain's wording for each outcome and each requirement (go test -update rewrites it).
func TestExplainGolden(t *testing.T) {
	p := mustParse(t, explainPolicy)
	admin := FactsFromClaims(map[string]any{"sub": "user_dev_admin", "email": "admin@example.com", "org_id": "org_dev_acme",
		"role": "admin", "permissions": []any{"users:read", "users:write", "billing:manage"}, "scope": "openid"})
	member := FactsFromClaims(map[string]any{"sub": "user_dev_member", "org_id": "org_dev_acme", "role": "member",
		"permissions": []any{"users:read"}, "scope": "offline_access"})
	guest := FactsFromClaims(map[string]any{"sub": "user_dev_guest"})
	support := FactsFromClaims(map[string]any{"sub": "user_s", "email": "sue@example.com", "org_id": "org_dev_acme",
		"roles": []any{"support"}, "scope": "openid", "permissions": []any{"reports:read"}})
	var b strings.Builder
	for _, c := range []struct {
		who  string
		f    *Facts
		kind Kind
		name string
	}{
		{"admin", &admin, Tool, "get-workos-user"},
		{"admin", &admin, Tool, "delete-user"},
		{"member", &member, Tool, "get-workos-user"},
		{"member", &member, Tool, "get-billing"},
		{"guest", &guest, Tool, "get-user-info"},
		{"guest", &guest, Tool, "get-workos-user"},
		{"support", &support, Tool, "get-billing"},
		{"support", &support, Resource, "report://2026/q1"},
		{"support", &support, Prompt, "summarize"},
	} {
		b.WriteString("# " + c.who + "\n" + p.Explain(c.f, c.kind, c.name).String() + "\n")
	}
	golden(t, "explain.golden", b.String())
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
