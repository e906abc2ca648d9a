package policy

import (
	"errors"
	"strings"
	"testing"
)

// TestParseErrors checks that each problem is reported with its place in the file and its rule, all at once.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		src  string
		want []string // the lines of the error
	}{
		{"empty file", "", []string{"p.yaml: the policy is empty: it needs rules (and a default, deny when absent)"}},
		{"comments only", "# nothing yet\n", []string{"p.yaml: the policy is empty: it needs rules (and a default, deny when absent)"}},
		{"syntax", "rules:\n  - name: a\n   tools: [x]\n", []string{"p.yaml: yaml: line 1: did not find expected '-' indicator"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"p.yaml:2: a policy is one YAML document; remove the second one (from this ---)"}},
		{"not a mapping", "- a\n", []string{"p.yaml:1:1: the policy must be a mapping with the fields default, rules"}},
		{"unknown top-level field", "defualt: deny\nrules: []\n", []string{`p.yaml:1:1: unknown field "defualt" in the policy (known: default, rules)`}},
		{"bad default", "default: maybe\n", []string{`p.yaml:1:10: default must be allow or deny (got "maybe")`}},
		{"rules not a list", "rules: {}\n", []string{"p.yaml:1:8: rules must be a list of rules (got a mapping)"}},
		{"rule not a mapping", "rules:\n  - get-user-info\n", []string{
			"p.yaml:2:5: rule #1: a rule must be a mapping with the fields name, tools, prompts, resources, require, when, limit"}},
		{"rule without a name", "rules:\n  - tools: [x]\n", []string{
			"p.yaml:2:5: rule #1: needs a name (unique; it names the rule in decisions, logs and metrics)"}},
		{"empty name", "rules:\n  - name: \"\"\n    tools: [x]\n", []string{`p.yaml:2:11: rule #1: name must be a non-empty string (got "")`}},
		{"reserved name", "rules:\n  - name: default\n    tools: [x]\n", []string{
			`p.yaml:2:11: rule #1: name "default" is reserved: decisions by the policy's default are named so`}},
		{"duplicate name", "rules:\n  - name: a\n    tools: [x]\n  - name: a\n    tools: [y]\n", []string{
			"p.yaml:4:11: rule a: name is already used by the rule at line 2; rule names must be unique"}},
		{"names nothing", "rules:\n  - name: a\n    tools: []\n", []string{
			`p.yaml:2:5: rule a: names nothing: give it tools, prompts or resources (globs; "*" for all)`}},
		{"unknown rule field", "rules:\n  - name: a\n    tool: [x]\n", []string{
			`p.yaml:3:5: rule a: unknown field "tool" in a rule (known: name, tools, prompts, resources, require, when, limit)`,
			`p.yaml:2:5: rule a: names nothing: give it tools, prompts or resources (globs; "*" for all)`}},
		{"field twice", "rules:\n  - name: a\n    tools: [x]\n    tools: [y]\n", []string{
			"p.yaml:4:5: rule a: tools is set twice in a rule (first at line 3)"}},
		{"globs not a list", "rules:\n  - name: a\n    tools: \"*\"\n", []string{
			`p.yaml:3:12: rule a: tools must be a list of strings, e.g. ["a"] (got "*")`,
			`p.yaml:2:5: rule a: names nothing: give it tools, prompts or resources (globs; "*" for all)`}},
		{"empty glob", "rules:\n  - name: a\n    tools: [x, \"\"]\n", []string{
			`p.yaml:3:16: rule a: tools: each item must be a non-empty string (got "")`}},
		{"bad glob", "rules:\n  - name: a\n    resources: ['file:///x\\']\n", []string{
			`p.yaml:3:17: rule a: resources: "file:///x\\" ends with "\", which escapes nothing (write "\\" for a backslash)`}},
		{"unknown requirement", "rules:\n  - name: a\n    tools: [x]\n    require:\n      role: [admin]\n", []string{
			`p.yaml:5:7: rule a: unknown field "role" in require (known: permissions, roles, scopes, org)`}},
		{"requirement not a list", "rules:\n  - name: a\n    tools: [x]\n    require: {roles: admin}\n", []string{
			`p.yaml:4:22: rule a: require.roles must be a list of strings, e.g. ["a"] (got "admin")`}},
		{"bad scope", "rules:\n  - name: a\n    tools: [x]\n    require:\n      scopes: [\"a b\", 'c\"']\n", []string{
			`p.yaml:5:16: rule a: require.scopes: "a b" is not a scope (RFC 6749: printable ASCII without space, " or \)`,
			`p.yaml:5:23: rule a: require.scopes: "c\"" is not a scope (RFC 6749: printable ASCII without space, " or \)`}},
		{"limit not a mapping", "rules:\n  - name: a\n    tools: [x]\n    limit: 10/m\n", []string{
			`p.yaml:4:12: rule a: limit must be a mapping, e.g. {rate: 10/m, burst: 2} (got "10/m")`}},
		{"limit without a rate", "rules:\n  - name: a\n    tools: [x]\n    limit: {burst: 2}\n", []string{
			`p.yaml:4:12: rule a: limit needs a rate, e.g. {rate: 10/m}`}},
		{"bad rates and bursts", "rules:\n  - name: a\n    tools: [x]\n    limit: {rate: 10/d, burst: 0}\n  - name: b\n    tools: [y]\n    limit: {rate: 0/s, burst: x}\n  - name: c\n    tools: [z]\n    limit: {rate: 1.5/s, per: m}\n", []string{
			`p.yaml:4:19: rule a: limit.rate must be a count per s, m or h, e.g. 10/m (got "10/d")`,
			`p.yaml:4:32: rule a: limit.burst must be a whole number from 1 to 1000000 (got "0")`,
			`p.yaml:7:19: rule b: limit.rate must be a count per s, m or h, e.g. 10/m (got "0/s")`,
			`p.yaml:7:31: rule b: limit.burst must be a whole number from 1 to 1000000 (got "x")`,
			`p.yaml:10:19: rule c: limit.rate must be a count per s, m or h, e.g. 10/m (got "1.5/s")`,
			`p.yaml:10:26: rule c: unknown field "per" in limit (known: rate, burst)`}},
		{"limit on a rule without tools", "rules:\n  - name: a\n    prompts: [x]\n    limit: {rate: 1/s}\n", []string{
			`p.yaml:2:5: rule a: has a limit but names no tools: a limit counts calls of the tools a rule grants`}},
		{"when not a string", "rules:\n  - name: a\n    tools: [x]\n    when: [true]\n", []string{
			"p.yaml:4:11: rule a: when must be a CEL expression (a string; got a list)"}},
		{"every problem at once", "default: no\nrules:\n  - name: a\n  - name: b\n    tools: [x]\n    require: {orgs: [o]}\n", []string{
			`p.yaml:1:10: default must be allow or deny (got "no")`,
			`p.yaml:3:5: rule a: names nothing: give it tools, prompts or resources (globs; "*" for all)`,
			`p.yaml:6:15: rule b: unknown field "orgs" in require (known: permissions, roles, scopes, org)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "p.yaml")
			if err == nil {
				t.Fatal("Parse: got no error")
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("Parse error:\ngot  %s\nwant %s", got, want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Source != "p.yaml" {
				t.Errorf("Parse error: got %T, want a *policy.Error", err)
			}
		})
	}
}

// TestParseCELErrors checks that a condition that does not compile, does not type-check or is not a bool is
// refused at load, at its place in the file (the YAML scalar's place plus the place in the expression).
func TestParseCELErrors(t *testing.T) {
	t.Parallel()
	const head = "rules:\n  - name: r\n    tools: [x]\n"
	for _, tc := range []struct {
		name, when, want string
	}{
		{"syntax", `when: 'claims.email.endsWith("@x.com"'`,
			"p.yaml:4:42: rule r: when: Syntax error: missing ')' at '<EOF>'"},
		{"overload", `when: 'claims.email.endsWith(1)'`,
			"p.yaml:4:33: rule r: when: found no matching overload for 'endsWith' applied to 'dyn.(int)'"},
		{"mcp has no arguments", `when: mcp.arguments.id == "1"`,
			"p.yaml:4:14: rule r: when: undefined field 'arguments'"},
		{"mcp has no method", `when: "mcp.method == 'tools/call'"`,
			"p.yaml:4:15: rule r: when: undefined field 'method'"},
		{"unknown variable", `when: 'request.headers["x"] == "1"'`,
			"p.yaml:4:12: rule r: when: undeclared reference to 'request' (in container '')"},
		{"dyn is not bool", `when: claims.admin`,
			"p.yaml:4:11: rule r: when: must be a bool expression, got dyn (a claim's type is only known at run time: compare it, e.g. claims.admin == true)"},
		{"string is not bool", `when: mcp.name`,
			"p.yaml:4:11: rule r: when: must be a bool expression, got string"},
		{"escapes in double quotes", `when: "claims.a == \"\u00e9\" && mcp.name == 1"`,
			"p.yaml:4:47: rule r: when: found no matching overload for '_==_' applied to '(string, int)'"},
		{"literal block", "when: |\n      claims.a == \"b\" &&\n        mcp.kind.size() == \"c\"",
			"p.yaml:6:25: rule r: when: found no matching overload for '_==_' applied to '(int, string)'"},
		{"folded block", "when: >\n      claims.a == \"b\" &&\n        mcp.kind.size() == \"c\"",
			"p.yaml:4:11: rule r: when: found no matching overload for '_==_' applied to '(int, string)' (at line 2, column 19 of the expression)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(head+"    "+tc.when+"\n"), "p.yaml")
			if err == nil {
				t.Fatal("Parse: got no error")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Parse error:\ngot  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		"rules: []",
		"default: allow",
		"default: deny\nrules:\n",
		"rules:\n  - name: a\n    tools: [x]\n    require:\n    when: 'true'\n",
		"rules:\n  - name: a\n    tools: [x]\n    require: &r {roles: [admin], permissions: [p], scopes: [s], org: [o]}\n  - name: b\n    prompts: [y]\n    require: *r\n",
		"rules:\n  - name: only-resources\n    tools: []\n    resources: ['ui://*']\n",
		"rules:\n  - name: optional\n    tools: ['*']\n    when: 'claims.?email.orValue(\"\").endsWith(\"@x.com\") && \"a\" in claims.?roles.orValue([]) && sets.contains([1], [1])'\n",
	} {
		if _, err := Parse([]byte(src), "p.yaml"); err != nil {
			t.Errorf("Parse(%q): %v", src, err)
		}
	}
}

// FuzzParse checks that no file makes Parse panic, and that what loads decides.
func FuzzParse(f *testing.F) {
	f.Add([]byte(tablePolicy))
	f.Add([]byte(allowPolicy))
	f.Add([]byte("rules:\n  - name: a\n    tools: ['*']\n    when: |\n      mcp.name == 'x'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		for _, k := range []Kind{Tool, Prompt, Resource} {
			p.Decide(&Facts{}, k, "x")
			_ = p.Explain(&Facts{}, k, "x").String()
		}
	})
}
