package proxy

import (
	"path"
	"slices"
	"strings"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// fakePolicy decides as policy.md §5 recommends, over rules written in Go: tests of package proxy do not depend on
// package policy's parser. A glob is path.Match's.
type fakePolicy struct {
	rules []fakeRule
	allow bool // default: allow for names no rule covers
}

type fakeRule struct {
	name                      string
	tools, prompts, resources []string
	perms, scopes             []string
}

func (p *fakePolicy) Rules() []string {
	var names []string
	for _, r := range p.rules {
		names = append(names, r.name)
	}
	return names
}

func (p *fakePolicy) Decide(f *policy.Facts, kind policy.Kind, name string) policy.Decision {
	var cand *fakeRule
	covered := false
	for i := range p.rules {
		r := &p.rules[i]
		globs := r.tools
		switch kind {
		case policy.Prompt:
			globs = r.prompts
		case policy.Resource:
			globs = r.resources
		}
		if !matches(globs, name) {
			continue
		}
		covered = true
		if !contains(f.Permissions, r.perms) {
			continue
		}
		if !contains(f.Scopes, r.scopes) {
			if cand == nil {
				cand = r
			}
			continue
		}
		return policy.Decision{Outcome: policy.Allow, Rule: r.name}
	}
	if cand != nil {
		s := append(slices.Clone(cand.scopes), f.Scopes...)
		slices.Sort(s)
		return policy.Decision{Outcome: policy.StepUp, Rule: cand.name, Scopes: slices.Compact(s)}
	}
	if !covered && p.allow {
		return policy.Decision{Outcome: policy.Allow, Rule: "default"}
	}
	return policy.Decision{Outcome: policy.Deny, Rule: "default"}
}

func matches(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok || g == "*" {
			return true
		}
	}
	return false
}

func contains(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// testPolicy is the policy most tests use: the development example's rules over the tool service's tools, a rule
// that needs a scope, and prompts and resources.
func testPolicy() *fakePolicy {
	return &fakePolicy{rules: []fakeRule{
		{name: "everyone-reads-themselves", tools: []string{"get-user-info", "get-user-permissions"}},
		{name: "directory-lookups", tools: []string{"get-workos-user"}, perms: []string{"users:read"}},
		{name: "admin-writes", tools: []string{"admin-*"}, perms: []string{"users:write"}, scopes: []string{"admin:write"}},
		{name: "billing", tools: []string{"billing-*"}, scopes: []string{"billing:manage"}},
		{name: "prompts", prompts: []string{"greet"}},
		{name: "public-files", resources: []string{"file:///public/*"}},
	}}
}

// facts returns facts with permissions and scopes.
func facts(perms, scopes string) *policy.Facts {
	return &policy.Facts{Permissions: strings.Fields(perms), Scopes: strings.Fields(scopes)}
}
