// Package policy decides which tools, prompts and resources a verified caller may see and use: ordered rules from a
// YAML file (GATEWAY_POLICY_FILE), each granting a set of names (globs) to callers who meet its requirements
// (permissions, roles, scopes, organization, and an optional CEL condition). One decision serves a list item and a
// call alike, so what a caller sees is exactly what they may use. The package does no HTTP: package authz applies the
// decisions to MCP messages.
//
// The file's shape and the decision procedure are documented in docs/policy.md. In short, for a name of one kind, the
// rules whose globs for that kind cover the name are tried in file order:
//   - a rule grants when the caller has all its permissions, one of its roles (if it names any), an organization in
//     its org list (if it names any), its condition ("when") evaluates to true, and all its scopes: the first rule that
//     grants decides Allow;
//   - a rule that would grant but for scopes is remembered (the first such rule only), and the next rules are tried:
//     if none grants, the decision is StepUp with that rule's scopes ∪ the token's;
//   - when no rule grants, the decision is Deny, named after the last rule that covers the name; the file's default
//     (deny when absent) applies only to names that no rule covers, and is named DefaultRule.
package policy

import (
	"slices"
)

// Kind is what a name designates.
type Kind string

// The kinds of names a rule grants.
const (
	Tool     Kind = "tool"     // tools/call params.name; tools/list tools[].name
	Prompt   Kind = "prompt"   // prompts/get params.name; prompts/list prompts[].name; completion/complete ref/prompt
	Resource Kind = "resource" // resources/read, (un)subscribe params.uri; resources/list resources[].uri; templates' uriTemplate
)

// index returns k's position in kinds, or -1 for a kind this package does not know.
func (k Kind) index() int {
	switch k {
	case Tool:
		return 0
	case Prompt:
		return 1
	case Resource:
		return 2
	}
	return -1
}

// field is the name of the YAML field that lists the globs of kind k.
func (k Kind) field() string { return string(k) + "s" }

// Outcome is what a decision says.
type Outcome string

// Outcomes.
const (
	Allow  Outcome = "allow"   // the caller may see and use the name
	Deny   Outcome = "deny"    // hidden: a call gets the "unknown" answer and never reaches the upstream
	StepUp Outcome = "step_up" // a rule would grant it but for scopes the token lacks: listed; a call gets 403 insufficient_scope
)

// DefaultRule is Decision.Rule when no rule covers the name and the policy's default decided. No rule may be named so.
const DefaultRule = "default"

// Facts are what the rules look at of a caller, built once per request from the verified token (FactsFromClaims).
// Rules compare elements exactly (case-sensitively, never as substrings). Conditions read Claims in place: nothing is
// converted per decision, so one Facts serves every decision of a request (a list's items, a batch's calls), from any
// number of goroutines, as long as nobody modifies it.
type Facts struct {
	Permissions []string       // permissions claim
	Roles       []string       // role ∪ roles
	Scopes      []string       // scope (split) ∪ scp
	Org         string         // org_id
	Claims      map[string]any // the verified token's claims, for `when` (CEL variable `claims`); read-only
}

// Decision is the answer for one name.
type Decision struct {
	Outcome Outcome
	// Rule is the name of the rule that decided, or "default" when no rule covers the name: for Allow, the granting
	// rule; for StepUp, the first rule that would grant but for scopes; for Deny, the last rule that covers the name.
	Rule string
	// Scopes, for StepUp, are the scopes to challenge for: the deciding rule's required scopes ∪ the token's, sorted.
	Scopes []string
	// Limit, for Allow of a tool, is the granting rule's limit on calls of the tool per caller; nil when it has none.
	// It is the rule's own: callers never modify it.
	Limit *Limit
	// LimitKey, with Limit, names the budget the call takes from (per caller): the tool's name when the rule names it
	// exactly, else the pattern of the rule's that matched it, whose tools share one budget, so that a caller naming
	// tools at will under a pattern has one budget, not one per name it makes up.
	LimitKey string
}

// Limit is a rule's limit on the calls of each tool it grants, per caller: a token bucket that holds Burst calls and
// refills at PerSecond. It is written `limit: {rate: 10/m, burst: 2}` (per s, m or h; burst defaults to the rate's
// count).
type Limit struct {
	PerSecond float64
	Burst     int
	// Rate is the rate as written ("10/m"), for messages and explanations.
	Rate string
}

// Policy is a loaded, compiled policy. It is immutable and safe for concurrent use.
type Policy struct {
	source string
	def    Outcome // Allow or Deny: the decision for names no rule covers
	rules  []*rule
	names  []string // rule names in file order
}

// rule is one compiled rule.
type rule struct {
	name  string
	line  int        // where it starts in the file
	globs [3][]glob  // by Kind.index
	perms []string   // all of
	roles []string   // any of, when not empty
	org   []string   // any of, when not empty
	scope []string   // all of; missing ones alone mean step-up
	when  *condition // nil when the rule has none
	limit *Limit     // nil when the rule has none
}

// Decide returns the decision for the name of kind for a caller with facts f (nil: a caller with no facts). It
// allocates nothing unless a rule with a CEL condition covers the name (its evaluation allocates) or the decision is
// StepUp (the scopes to challenge for). An unknown kind is denied by DefaultRule.
func (p *Policy) Decide(f *Facts, kind Kind, name string) Decision {
	k := kind.index()
	if k < 0 {
		return Decision{Outcome: Deny, Rule: DefaultRule}
	}
	if f == nil {
		f = &Facts{}
	}
	if kind == Resource && hasDotSegment(name) {
		return Decision{Outcome: Deny, Rule: DefaultRule}
	}
	var cand, last *rule
	for _, r := range p.rules {
		if !r.covers(k, name) {
			continue
		}
		last = r
		switch r.verdict(f, kind, name) {
		case grants:
			d := Decision{Outcome: Allow, Rule: r.name}
			if kind == Tool && r.limit != nil {
				d.Limit, d.LimitKey = r.limit, r.limitKey(k, name)
			}
			return d
		case grantsButScopes:
			if cand == nil {
				cand = r
			}
		}
	}
	return p.conclude(f, cand, last)
}

// hasDotSegment reports whether uri has a "." or ".." segment, between slashes or backslashes, its dots, slashes and
// backslashes percent-encoded or not. A glob matches a URI as written; a server that resolves such a segment reads
// another resource than the one the glob matched (file:///public/../secret for file:///public/*), so Decide denies it.
func hasDotSegment(uri string) bool {
	dots, other := 0, false // in the segment so far
	for i := 0; i <= len(uri); i++ {
		c := byte('/')
		if i < len(uri) {
			c = uri[i]
		}
		if c == '%' && i+2 < len(uri) {
			switch hi, lo := uri[i+1], uri[i+2]|0x20; {
			case hi == '2' && lo == 'e':
				c, i = '.', i+2
			case hi == '2' && lo == 'f', hi == '5' && lo == 'c':
				c, i = '/', i+2
			}
		}
		switch c {
		case '/', '\\':
			if !other && (dots == 1 || dots == 2) {
				return true
			}
			dots, other = 0, false
		case '.':
			dots++
		default:
			other = true
		}
	}
	return false
}

// conclude is the decision when no rule granted: StepUp for cand, the first rule that would grant but for scopes;
// otherwise Deny by last, the last rule that covers the name; otherwise the default.
func (p *Policy) conclude(f *Facts, cand, last *rule) Decision {
	switch {
	case cand != nil:
		return Decision{Outcome: StepUp, Rule: cand.name, Scopes: challengeScopes(cand.scope, f.Scopes)}
	case last != nil:
		return Decision{Outcome: Deny, Rule: last.name}
	}
	return Decision{Outcome: p.def, Rule: DefaultRule}
}

// challengeScopes returns required ∪ held, sorted, without duplicates: a client that replaces its scopes with the
// challenge's keeps those it has.
func challengeScopes(required, held []string) []string {
	s := make([]string, 0, len(required)+len(held))
	s = append(append(s, required...), held...)
	slices.Sort(s)
	return slices.Compact(s)
}

// Rules returns the rule names in file order (for bounded metric labels; "default" is added by the caller).
func (p *Policy) Rules() []string { return slices.Clone(p.names) }

// Default returns the decision for names no rule covers: Allow or Deny.
func (p *Policy) Default() Outcome { return p.def }

// Source returns the name the policy was parsed under (its file path).
func (p *Policy) Source() string { return p.source }

// Covering returns the names of the rules whose globs of kind cover name, in file order, whatever the caller: the
// rules a decision for name may consult.
func (p *Policy) Covering(kind Kind, name string) []string {
	k := kind.index()
	if k < 0 {
		return nil
	}
	var names []string
	for _, r := range p.rules {
		if r.covers(k, name) {
			names = append(names, r.name)
		}
	}
	return names
}

// covers reports whether one of r's globs of kind index k matches name.
func (r *rule) covers(k int, name string) bool {
	for i := range r.globs[k] {
		if r.globs[k][i].match(name) {
			return true
		}
	}
	return false
}

// limitKey is the budget of a call of name that r grants: name when one of r's globs of kind index k is exactly
// name, else the first pattern that matches it.
func (r *rule) limitKey(k int, name string) string {
	for i := range r.globs[k] {
		if g := &r.globs[k][i]; g.shape == globExact && g.lit == name {
			return name
		}
	}
	return r.coveringGlob(k, name)
}

// coveringGlob returns the first of r's globs of kind index k that matches name, or "".
func (r *rule) coveringGlob(k int, name string) string {
	for i := range r.globs[k] {
		if r.globs[k][i].match(name) {
			return r.globs[k][i].pattern
		}
	}
	return ""
}

// verdict is what a rule says of a caller for a name it covers.
type verdict uint8

const (
	fails           verdict = iota // a requirement other than scopes does not hold
	grantsButScopes                // every requirement holds but scopes
	grants                         // every requirement holds
)

// verdict checks r's requirements for f in the order of docs/policy.md: permissions, roles, org, when, scopes.
func (r *rule) verdict(f *Facts, kind Kind, name string) verdict {
	if !containsAll(f.Permissions, r.perms) ||
		len(r.roles) > 0 && !containsAny(f.Roles, r.roles) ||
		len(r.org) > 0 && !slices.Contains(r.org, f.Org) {
		return fails
	}
	if r.when != nil {
		if ok, _ := r.when.eval(f, kind, name); !ok {
			return fails
		}
	}
	if !containsAll(f.Scopes, r.scope) {
		return grantsButScopes
	}
	return grants
}

// containsAll reports whether have holds every element of want.
func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// containsAny reports whether have holds an element of want.
func containsAny(have, want []string) bool {
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

// missing returns the elements of want that have lacks.
func missing(have, want []string) []string {
	var m []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			m = append(m, w)
		}
	}
	return m
}

// RuleInfo is a rule as written in the file, for tools that show a policy (gateway --check).
type RuleInfo struct {
	Name                      string
	Line                      int      // where the rule starts in the file
	Tools, Prompts, Resources []string // globs
	Permissions, Roles        []string // all of; any of
	Scopes, Org               []string // all of; any of
	When                      string   // the CEL condition, "" for none
	Limit                     *Limit   // the limit on calls of each tool, per caller; nil for none
}

// Describe returns the rules as written, in file order.
func (p *Policy) Describe() []RuleInfo {
	out := make([]RuleInfo, len(p.rules))
	for i, r := range p.rules {
		ri := RuleInfo{Name: r.name, Line: r.line, Permissions: slices.Clone(r.perms), Roles: slices.Clone(r.roles),
			Scopes: slices.Clone(r.scope), Org: slices.Clone(r.org)}
		for _, ptr := range []struct {
			k   Kind
			dst *[]string
		}{{Tool, &ri.Tools}, {Prompt, &ri.Prompts}, {Resource, &ri.Resources}} {
			for _, g := range r.globs[ptr.k.index()] {
				*ptr.dst = append(*ptr.dst, g.pattern)
			}
		}
		if r.when != nil {
			ri.When = r.when.src
		}
		ri.Limit = r.limit
		out[i] = ri
	}
	return out
}
