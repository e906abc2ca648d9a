package main

import (
	"fmt"
	"strings"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// policy loads and compiles GATEWAY_POLICY_FILE as the gateway does at start, when it is set, and shows which of the
// upstream's tools (c.tools, listed by the upstream check) each rule matches.
func (c *checker) policy() {
	path := c.env["GATEWAY_POLICY_FILE"]
	if path == "" {
		return
	}
	p, err := policy.Load(path)
	if err != nil {
		c.fail("policy", "GATEWAY_POLICY_FILE does not load, so the gateway would not start: "+strings.ReplaceAll(err.Error(), "\n", "; "),
			"correct each problem named above (file:line:column: rule: problem); docs/policy.md describes the file, and `gateway policy explain` tries a token against it")
		return
	}
	c.pass("policy", "%s", policyReport(p, c.tools, c.toolsErr))
}

// policyReport describes p: its default and rules, and for each rule the tools of the upstream it matches (tools), or
// its globs when the tools could not be listed (toolsErr).
func policyReport(p *policy.Policy, tools []string, toolsErr error) string {
	var b strings.Builder
	rules := p.Describe()
	fmt.Fprintf(&b, "%s loads: default %s, %d rule(s)", p.Source(), p.Default(), len(rules))
	switch {
	case toolsErr != nil:
		fmt.Fprintf(&b, "; the upstream's tools could not be listed as the user gateway-check (%v), so each rule shows its globs", toolsErr)
	default:
		fmt.Fprintf(&b, "; the upstream lists %d tool(s) to the user gateway-check", len(tools))
	}
	for _, r := range rules {
		fmt.Fprintf(&b, "\n    rule %s (line %d): %s%s", r.Name, r.Line, ruleMatches(r, p, tools, toolsErr != nil), requirements(r))
	}
	if toolsErr == nil {
		var uncovered []string
		for _, t := range tools {
			if len(p.Covering(policy.Tool, t)) == 0 {
				uncovered = append(uncovered, t)
			}
		}
		if len(uncovered) > 0 {
			fmt.Fprintf(&b, "\n    no rule covers %s: the default, %s, decides them for everyone", strings.Join(uncovered, ", "), p.Default())
		}
	}
	return b.String()
}

// ruleMatches says which tools rule r matches: the upstream's, or its globs when globsOnly.
func ruleMatches(r policy.RuleInfo, p *policy.Policy, tools []string, globsOnly bool) string {
	var parts []string
	switch {
	case globsOnly && len(r.Tools) > 0:
		parts = append(parts, "tools "+quoted(r.Tools))
	case len(r.Tools) > 0:
		var matched []string
		for _, t := range tools {
			for _, name := range p.Covering(policy.Tool, t) {
				if name == r.Name {
					matched = append(matched, t)
				}
			}
		}
		switch {
		case len(matched) == 0:
			parts = append(parts, fmt.Sprintf("matches none of the upstream's tools (tools %s)", quoted(r.Tools)))
		case len(matched) == len(tools):
			parts = append(parts, fmt.Sprintf("all %d tools, %s", len(tools), strings.Join(matched, ", ")))
		default:
			parts = append(parts, "tools "+strings.Join(matched, ", "))
		}
	}
	if len(r.Prompts) > 0 {
		parts = append(parts, "prompts "+quoted(r.Prompts))
	}
	if len(r.Resources) > 0 {
		parts = append(parts, "resources "+quoted(r.Resources))
	}
	return strings.Join(parts, "; ")
}

// requirements summarizes what a rule requires, or says that it grants everyone.
func requirements(r policy.RuleInfo) string {
	var req []string
	for _, q := range []struct {
		name, how string
		list      []string
	}{{"permissions", "all of", r.Permissions}, {"roles", "one of", r.Roles}, {"org", "one of", r.Org}, {"scopes", "all of", r.Scopes}} {
		if len(q.list) > 0 {
			req = append(req, fmt.Sprintf("%s %s %s", q.name, q.how, strings.Join(q.list, " ")))
		}
	}
	if r.When != "" {
		req = append(req, "when "+r.When)
	}
	limit := ""
	if r.Limit != nil {
		limit = fmt.Sprintf(", at most %s per caller and tool (burst %d; a pattern's tools share one budget)", r.Limit.Rate, r.Limit.Burst)
	}
	if len(req) == 0 {
		return ", for every caller" + limit
	}
	return ", requiring " + strings.Join(req, ", ") + limit
}

func quoted(globs []string) string {
	q := make([]string, len(globs))
	for i, g := range globs {
		q[i] = fmt.Sprintf("%q", g)
	}
	return strings.Join(q, " ")
}
