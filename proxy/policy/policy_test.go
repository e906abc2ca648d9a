package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// tablePolicy exercises each kind of requirement, globs, order and the default.
const tablePolicy = `
default: deny
rules:
  - name: self
    tools: ["get-user-info", "get-user-permissions"]
  - name: directory
    tools: ["get-workos-user"]
    require:
      permissions: ["users:read"]
      scopes: ["users.read"]
  - name: billing
    tools: ["billing-*"]
    require:
      permissions: ["billing:read", "billing:export"]
  - name: staff
    tools: ["staff/?/report"]
    require:
      roles: ["support", "auditor"]
  - name: partners
    tools: ["partner-*"]
    require:
      org: ["org_acme", "org_beta"]
  - name: example-mail
    tools: ["mail-*"]
    when: 'claims.email.endsWith("@example.com")'
  - name: own-workspace
    tools: ["ws-*"]
    when: 'mcp.kind == "tool" && mcp.name == "ws-" + claims.sub'
  - name: senior-export
    tools: ["export"]
    require:
      scopes: ["export"]
    when: 'claims.level >= 3'
  - name: needs-extra
    tools: ["report"]
    require:
      scopes: ["extra"]
  - name: needs-more
    tools: ["report"]
    require:
      scopes: ["more"]
  - name: admins
    tools: ["*"]
    require:
      roles: ["admin"]
  - name: public-prompts
    prompts: ["summarize", "public-*"]
  - name: public-files
    resources: ["file:///public/*"]
    require:
      scopes: ["files.read"]
`

// allowPolicy allows what no rule covers.
const allowPolicy = `
default: allow
rules:
  - name: admin-only
    tools: ["delete-*"]
    require:
      roles: ["admin"]
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestDecide(t *testing.T) {
	t.Parallel()
	policies := map[string]*Policy{"table": mustParse(t, tablePolicy), "allow": mustParse(t, allowPolicy)}
	guest := Facts{}
	member := Facts{Permissions: []string{"users:read"}, Roles: []string{"member"}, Org: "org_acme", Scopes: []string{"openid", "email"}}
	memberScoped := member
	memberScoped.Scopes = []string{"openid", "users.read"}
	admin := Facts{Permissions: []string{"users:read"}, Roles: []string{"admin"}, Scopes: []string{"openid"}}
	claims := func(c map[string]any) Facts { return Facts{Claims: c} }
	withScopes := func(f Facts, s ...string) Facts { f.Scopes = s; return f }

	for _, tc := range []struct {
		name   string
		policy string
		facts  Facts
		kind   Kind
		item   string
		want   Decision
	}{
		{"no requirement", "table", guest, Tool, "get-user-info", Decision{Allow, "self", nil, nil, ""}},
		{"second name of a rule", "table", guest, Tool, "get-user-permissions", Decision{Allow, "self", nil, nil, ""}},

		{"permission and scope held", "table", memberScoped, Tool, "get-workos-user", Decision{Allow, "directory", nil, nil, ""}},
		{"scope missing: step-up with the token's scopes", "table", member, Tool, "get-workos-user",
			Decision{StepUp, "directory", []string{"email", "openid", "users.read"}, nil, ""}},
		{"permission missing: deny named after the last covering rule", "table", guest, Tool, "get-workos-user", Decision{Deny, "admins", nil, nil, ""}},
		{"a later rule grants what an earlier one would step up", "table", admin, Tool, "get-workos-user", Decision{Allow, "admins", nil, nil, ""}},

		{"permissions are all of: one missing", "table", Facts{Permissions: []string{"billing:read"}}, Tool, "billing-invoices", Decision{Deny, "admins", nil, nil, ""}},
		{"permissions are all of: both", "table", Facts{Permissions: []string{"billing:export", "billing:read"}}, Tool, "billing-invoices", Decision{Allow, "billing", nil, nil, ""}},
		{"permissions are exact, never substrings", "table", Facts{Permissions: []string{"billing:read billing:export"}}, Tool, "billing-invoices", Decision{Deny, "admins", nil, nil, ""}},

		{"roles are any of", "table", Facts{Roles: []string{"member", "auditor"}}, Tool, "staff/a/report", Decision{Allow, "staff", nil, nil, ""}},
		{"roles are case-sensitive", "table", Facts{Roles: []string{"Support"}}, Tool, "staff/a/report", Decision{Deny, "admins", nil, nil, ""}},
		{"roles are not substrings", "table", Facts{Roles: []string{"support-lead"}}, Tool, "staff/a/report", Decision{Deny, "admins", nil, nil, ""}},
		{"? is one character", "table", Facts{Roles: []string{"support"}}, Tool, "staff/ab/report", Decision{Deny, "admins", nil, nil, ""}},

		{"org in the list", "table", Facts{Org: "org_beta"}, Tool, "partner-search", Decision{Allow, "partners", nil, nil, ""}},
		{"org not in the list", "table", Facts{Org: "org_acme2"}, Tool, "partner-search", Decision{Deny, "admins", nil, nil, ""}},
		{"no org", "table", guest, Tool, "partner-search", Decision{Deny, "admins", nil, nil, ""}},

		{"when true", "table", claims(map[string]any{"email": "ann@example.com"}), Tool, "mail-send", Decision{Allow, "example-mail", nil, nil, ""}},
		{"when false", "table", claims(map[string]any{"email": "ann@example.com.evil.test"}), Tool, "mail-send", Decision{Deny, "admins", nil, nil, ""}},
		{"when's error (a missing claim) does not grant", "table", guest, Tool, "mail-send", Decision{Deny, "admins", nil, nil, ""}},
		{"when's error (a claim of another type) does not grant", "table", claims(map[string]any{"email": 42.0}), Tool, "mail-send", Decision{Deny, "admins", nil, nil, ""}},
		{"when reads mcp", "table", claims(map[string]any{"sub": "user_1"}), Tool, "ws-user_1", Decision{Allow, "own-workspace", nil, nil, ""}},
		{"when reads mcp: another name", "table", claims(map[string]any{"sub": "user_1"}), Tool, "ws-user_2", Decision{Deny, "admins", nil, nil, ""}},

		{"when before scopes: false means deny, not step-up", "table", claims(map[string]any{"level": 2.0}), Tool, "export", Decision{Deny, "admins", nil, nil, ""}},
		{"when before scopes: true means step-up", "table", claims(map[string]any{"level": 3.0}), Tool, "export", Decision{StepUp, "senior-export", []string{"export"}, nil, ""}},
		{"when and scopes hold", "table", withScopes(claims(map[string]any{"level": 4}), "export"), Tool, "export", Decision{Allow, "senior-export", nil, nil, ""}},

		{"step-up names the first candidate", "table", withScopes(guest, "openid"), Tool, "report", Decision{StepUp, "needs-extra", []string{"extra", "openid"}, nil, ""}},
		{"a second candidate grants", "table", withScopes(guest, "more"), Tool, "report", Decision{Allow, "needs-more", nil, nil, ""}},

		{"admin: any tool", "table", admin, Tool, "anything/else", Decision{Allow, "admins", nil, nil, ""}},
		{"a covered name no rule grants is denied", "table", guest, Tool, "anything/else", Decision{Deny, "admins", nil, nil, ""}},

		{"prompt by name", "table", guest, Prompt, "summarize", Decision{Allow, "public-prompts", nil, nil, ""}},
		{"prompt by glob", "table", guest, Prompt, "public-faq", Decision{Allow, "public-prompts", nil, nil, ""}},
		{"tool rules do not cover prompts", "table", admin, Prompt, "private", Decision{Deny, DefaultRule, nil, nil, ""}},
		{"resource: * crosses /", "table", withScopes(guest, "files.read"), Resource, "file:///public/a/b.txt", Decision{Allow, "public-files", nil, nil, ""}},
		{"resource: step-up", "table", guest, Resource, "file:///public/a.txt", Decision{StepUp, "public-files", []string{"files.read"}, nil, ""}},
		{"resource no rule covers", "table", admin, Resource, "file:///etc/passwd", Decision{Deny, DefaultRule, nil, nil, ""}},
		{"unknown kind", "table", admin, Kind("method"), "tools/call", Decision{Deny, DefaultRule, nil, nil, ""}},

		{"default allow: a name no rule covers", "allow", guest, Tool, "get-user-info", Decision{Allow, DefaultRule, nil, nil, ""}},
		{"default allow: a prompt", "allow", guest, Prompt, "anything", Decision{Allow, DefaultRule, nil, nil, ""}},
		{"default allow does not void a rule's requirements", "allow", guest, Tool, "delete-user", Decision{Deny, "admin-only", nil, nil, ""}},
		{"default allow: the rule grants", "allow", admin, Tool, "delete-user", Decision{Allow, "admin-only", nil, nil, ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policies[tc.policy]
			got := p.Decide(&tc.facts, tc.kind, tc.item)
			if got.Outcome != tc.want.Outcome || got.Rule != tc.want.Rule || !slices.Equal(got.Scopes, tc.want.Scopes) {
				t.Errorf("Decide(%s %q): got %+v, want %+v", tc.kind, tc.item, got, tc.want)
			}
			// Explain decides the same, and its steps agree with the decision.
			e := p.Explain(&tc.facts, tc.kind, tc.item)
			if e.Decision.Outcome != got.Outcome || e.Decision.Rule != got.Rule || !slices.Equal(e.Decision.Scopes, got.Scopes) {
				t.Errorf("Explain(%s %q).Decision: got %+v, want %+v", tc.kind, tc.item, e.Decision, got)
			}
			if err := stepsAgree(e); err != "" {
				t.Errorf("Explain(%s %q): %s\n%s", tc.kind, tc.item, err, e)
			}
		})
	}
}

// stepsAgree checks that an explanation's steps lead to its decision; it returns what disagrees, or "".
func stepsAgree(e Explanation) string {
	d := e.Decision
	var granted, cand, last string
	for _, st := range e.Steps {
		if st.Verdict == VerdictNotReached {
			continue
		}
		last = st.Rule
		switch {
		case st.Verdict == VerdictGrants && granted == "":
			granted = st.Rule
		case st.Verdict == VerdictScopes && cand == "":
			cand = st.Rule
		}
	}
	want := Decision{Outcome: e.Default, Rule: DefaultRule}
	switch {
	case granted != "":
		want = Decision{Outcome: Allow, Rule: granted}
	case cand != "":
		want = Decision{Outcome: StepUp, Rule: cand}
	case last != "":
		want = Decision{Outcome: Deny, Rule: last}
	case e.Kind.index() < 0:
		want = Decision{Outcome: Deny, Rule: DefaultRule}
	}
	if want.Outcome != d.Outcome || want.Rule != d.Rule {
		return "the steps say " + string(want.Outcome) + " by " + want.Rule
	}
	return ""
}

func TestDecideNilFacts(t *testing.T) {
	t.Parallel()
	p := mustParse(t, tablePolicy)
	if got := p.Decide(nil, Tool, "get-user-info"); got.Outcome != Allow {
		t.Errorf("Decide(nil, get-user-info): got %+v, want allow", got)
	}
	if got := p.Decide(nil, Tool, "mail-send"); got.Outcome != Deny {
		t.Errorf("Decide(nil, mail-send): got %+v, want deny", got)
	}
}

// TestDecideDotSegments: a resource URI with a dot segment (".", "..", percent-encoded, or between backslashes) is
// denied whatever the rules and the default: a glob matches the URI as written, and a server that resolves the
// segments reads another resource than the one the glob matched (file:///public/* must not grant
// file:///public/../secret).
func TestDecideDotSegments(t *testing.T) {
	t.Parallel()
	files := Facts{Scopes: []string{"files.read"}}
	table, open := mustParse(t, tablePolicy), mustParse(t, allowPolicy)
	for _, uri := range []string{"file:///public/../secret", "file:///public/a/..", "file:///public/./a",
		"file:///public/%2e%2e/secret", "file:///public/%2E./secret", "file:///public/..%2fsecret",
		"file:///public/..%5Csecret", `file:///public\..\secret`} {
		if d := table.Decide(&files, Resource, uri); d.Outcome != Deny {
			t.Errorf("%s: got %+v, want deny", uri, d)
		}
		if d := open.Decide(&files, Resource, uri); d.Outcome != Deny {
			t.Errorf("%s with default allow: got %+v, want deny", uri, d)
		}
	}
	for _, uri := range []string{"file:///public/a..b", "file:///public/.env", "file:///public/...", "file:///public/a.b/c"} {
		if d := table.Decide(&files, Resource, uri); d.Outcome != Allow {
			t.Errorf("%s: got %+v, want allow", uri, d)
		}
	}
	if d := table.Decide(&Facts{Roles: []string{"admin"}}, Tool, "../x"); d.Outcome != Allow {
		t.Errorf("a tool name is not a URI: got %+v", d)
	}
	if e := table.Explain(&files, Resource, "file:///public/../secret").String(); !strings.Contains(e, `deny, whatever the rules: the URI has a "." or ".." segment`) {
		t.Errorf("explain: %s", e)
	}
}

// TestDecideAllocatesNothing pins the promise of Decide's doc: no allocation unless a condition is evaluated or the
// decision is a step-up.
func TestDecideAllocatesNothing(t *testing.T) {
	p := mustParse(t, tablePolicy)
	member := Facts{Permissions: []string{"users:read"}, Roles: []string{"member"}, Scopes: []string{"users.read"}}
	for _, name := range []string{"get-user-info", "get-workos-user", "billing-x", "staff/a/report", "anything"} {
		if n := testing.AllocsPerRun(100, func() { p.Decide(&member, Tool, name) }); n != 0 {
			t.Errorf("Decide(%q): %v allocations, want 0", name, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { p.Decide(nil, Prompt, "summarize") }); n != 0 {
		t.Errorf("Decide(nil facts): %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { p.Decide(nil, Resource, "file:///public/%2E%2e/x") }); n != 0 {
		t.Errorf("Decide(a URI with a dot segment): %v allocations, want 0", n)
	}
}

func TestCostLimit(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `
rules:
  - name: quadratic
    tools: ["*"]
    when: 'claims.groups.all(a, claims.groups.all(b, a == b || a != b))'
  - name: fallback
    tools: ["*"]
`)
	groups := make([]any, 300)
	for i := range groups {
		groups[i] = strings.Repeat("g", i%7)
	}
	f := Facts{Claims: map[string]any{"groups": groups}}
	if got := p.Decide(&f, Tool, "x"); got.Rule != "fallback" {
		t.Errorf("Decide: got %+v, want allow by fallback (the condition over its cost limit does not grant)", got)
	}
	e := p.Explain(&f, Tool, "x")
	if d := e.Steps[0].Checks[0].Detail; !strings.Contains(d, "cost limit exceeded") {
		t.Errorf("Explain: the condition's detail is %q, want the cost limit error", d)
	}
	small := Facts{Claims: map[string]any{"groups": groups[:10]}}
	if got := p.Decide(&small, Tool, "x"); got.Rule != "quadratic" {
		t.Errorf("Decide with 10 groups: got %+v, want allow by quadratic", got)
	}
}

func TestFactsFromClaims(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   Facts
	}{
		{"nothing", map[string]any{}, Facts{}},
		{"WorkOS access token", map[string]any{
			"sub": "user_1", "org_id": "org_1", "role": "admin", "roles": []any{"admin", "billing"},
			"permissions": []any{"users:read", "users:write"}, "scope": "openid  email offline_access",
		}, Facts{Permissions: []string{"users:read", "users:write"}, Roles: []string{"admin", "billing"},
			Scopes: []string{"openid", "email", "offline_access"}, Org: "org_1"}},
		{"scp as an array, with scope", map[string]any{"scope": "a b", "scp": []any{"b", "c", 7.0, ""}},
			Facts{Scopes: []string{"a", "b", "c"}}},
		{"scp as a string (Microsoft Entra)", map[string]any{"scp": "Mail.Read User.Read"},
			Facts{Scopes: []string{"Mail.Read", "User.Read"}}},
		{"Go string slices", map[string]any{"roles": []string{"x"}, "permissions": []string{"p"}},
			Facts{Roles: []string{"x"}, Permissions: []string{"p"}}},
		{"a permission string is one permission", map[string]any{"permissions": "a b"}, Facts{Permissions: []string{"a b"}}},
		{"wrong types are left out", map[string]any{"org_id": 12.0, "role": true, "roles": map[string]any{}, "scope": []any{"x"}},
			Facts{Scopes: []string{"x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FactsFromClaims(tc.claims)
			if !slices.Equal(got.Permissions, tc.want.Permissions) || !slices.Equal(got.Roles, tc.want.Roles) ||
				!slices.Equal(got.Scopes, tc.want.Scopes) || got.Org != tc.want.Org {
				t.Errorf("FactsFromClaims: got %+v, want %+v", got, tc.want)
			}
			if len(got.Claims) != len(tc.claims) {
				t.Errorf("FactsFromClaims: Claims not kept")
			}
		})
	}
}

func TestRulesAndCovering(t *testing.T) {
	t.Parallel()
	p := mustParse(t, tablePolicy)
	if got := p.Rules(); len(got) != 13 || got[0] != "self" || got[12] != "public-files" {
		t.Errorf("Rules: got %q", got)
	}
	if got, want := p.Covering(Tool, "get-workos-user"), []string{"directory", "admins"}; !slices.Equal(got, want) {
		t.Errorf("Covering(get-workos-user): got %q, want %q", got, want)
	}
	if got := p.Covering(Prompt, "nothing"); got != nil {
		t.Errorf("Covering(prompt nothing): got %q, want none", got)
	}
	if p.Default() != Deny || mustParse(t, allowPolicy).Default() != Allow {
		t.Error("Default: wrong")
	}
	if got := mustParse(t, "rules: []").Default(); got != Deny {
		t.Errorf("Default without default: got %s, want deny", got)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	p := mustParse(t, "rules:\n  - name: a\n    tools: [x, 'y*']\n    resources: ['file:///*']\n    require: {permissions: [p], roles: [r], scopes: [s], org: [o]}\n    when: mcp.name != ''\n  - name: b\n    prompts: ['*']\n")
	got := p.Describe()
	want := []RuleInfo{
		{Name: "a", Line: 2, Tools: []string{"x", "y*"}, Resources: []string{"file:///*"}, Permissions: []string{"p"}, Roles: []string{"r"},
			Scopes: []string{"s"}, Org: []string{"o"}, When: "mcp.name != ''"},
		{Name: "b", Line: 7, Prompts: []string{"*"}},
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("Describe:\ngot  %+v\nwant %+v", got, want)
	}
}

// TestDecideConcurrently decides with one policy and one Facts from several goroutines (for the race detector).
func TestDecideConcurrently(t *testing.T) {
	t.Parallel()
	p := mustParse(t, tablePolicy)
	f := FactsFromClaims(map[string]any{"email": "ann@example.com", "sub": "u", "level": 3.0, "roles": []any{"support"}})
	done := make(chan Decision)
	for range 8 {
		go func() {
			var d Decision
			for range 200 {
				d = p.Decide(&f, Tool, "mail-send")
				p.Decide(&f, Tool, "ws-u")
				p.Decide(&f, Tool, "staff/x/report")
			}
			done <- d
		}()
	}
	for range 8 {
		if d := <-done; d.Outcome != Allow || d.Rule != "example-mail" {
			t.Errorf("Decide(mail-send): got %+v, want allow by example-mail", d)
		}
	}
}

// TestDecideLimit: an allowed tool carries its granting rule's limit (burst defaulting to the rate's count); a prompt
// granted by the same rule, a tool granted by another rule, and a denied tool carry none.
func TestDecideLimit(t *testing.T) {
	t.Parallel()
	p, err := Parse([]byte(`rules:
  - name: lookups
    tools: ["lookup-*"]
    prompts: ["p"]
    require: {roles: [member]}
    limit: {rate: 10/m}
  - name: bursty
    tools: ["report"]
    limit: {rate: 2/s, burst: 5}
  - name: free
    tools: ["lookup-free", "*"]
`), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	member := &Facts{Roles: []string{"member"}}
	for _, tc := range []struct {
		kind Kind
		name string
		f    *Facts
		want *Limit
	}{
		{Tool, "lookup-user", member, &Limit{PerSecond: 10.0 / 60, Burst: 10, Rate: "10/m"}},
		{Tool, "report", member, &Limit{PerSecond: 2, Burst: 5, Rate: "2/s"}},
		{Tool, "lookup-user", &Facts{}, nil}, // granted by "free" instead
		{Prompt, "p", member, nil},
		{Tool, "other", member, nil},
	} {
		d := p.Decide(tc.f, tc.kind, tc.name)
		if d.Outcome != Allow {
			t.Fatalf("%s %s: got %v, want allow", tc.kind, tc.name, d)
		}
		if (d.Limit == nil) != (tc.want == nil) || d.Limit != nil && *d.Limit != *tc.want {
			t.Errorf("%s %s (rule %s): limit %+v, want %+v", tc.kind, tc.name, d.Rule, d.Limit, tc.want)
		}
	}
}
