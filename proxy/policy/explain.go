package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Explanation is a decision with the reasons for it, for people who write policies (gateway policy explain).
type Explanation struct {
	Kind     Kind
	Name     string
	Decision Decision // what Decide returns for the same facts and name
	Default  Outcome  // the policy's default, which decides only names no rule covers
	// Steps are the rules that cover the name, in file order: what each requirement of each rule said, up to the rule
	// that decided; the covering rules after it are listed as not reached.
	Steps []Step
}

// Step is what one rule that covers the name said.
type Step struct {
	Rule    string
	Glob    string // the rule's first glob that covers the name
	Verdict string // VerdictGrants, VerdictScopes, VerdictFails or VerdictNotReached
	// Checks are the rule's requirements in the order they are decided (permissions, roles, org, when, scopes), each
	// evaluated even after one failed; none for a rule without requirements or not reached.
	Checks []Check
}

// The verdicts of a Step.
const (
	VerdictGrants     = "grants"
	VerdictScopes     = "grants but for scopes"
	VerdictFails      = "does not grant"
	VerdictNotReached = "not reached: an earlier rule granted"
)

// Check is what one requirement of a rule said.
type Check struct {
	Requirement string // "permissions", "roles", "org", "when" or "scopes"
	Held        bool
	Detail      string // e.g. "missing users:write (has users:read)", "error: no such key: email"
}

// Explain returns the decision for the name of kind for a caller with facts f (nil: no facts), as Decide does, and
// why: every requirement of every rule that covers the name, held or failed. It is slower than Decide (it evaluates
// every requirement and builds text); it is meant for people, not for requests.
func (p *Policy) Explain(f *Facts, kind Kind, name string) Explanation {
	if f == nil {
		f = &Facts{}
	}
	e := Explanation{Kind: kind, Name: name, Decision: p.Decide(f, kind, name), Default: p.def}
	k := kind.index()
	if k < 0 || kind == Resource && hasDotSegment(name) {
		return e
	}
	granted := false
	for _, r := range p.rules {
		if !r.covers(k, name) {
			continue
		}
		st := Step{Rule: r.name, Glob: r.coveringGlob(k, name), Verdict: VerdictNotReached}
		if !granted {
			st.Checks = r.explain(f, kind, name)
			st.Verdict = verdictOf(st.Checks)
			granted = st.Verdict == VerdictGrants
		}
		e.Steps = append(e.Steps, st)
	}
	return e
}

// verdictOf is the verdict of a rule whose requirements said checks: the same as rule.verdict.
func verdictOf(checks []Check) string {
	v := VerdictGrants
	for _, c := range checks {
		switch {
		case c.Held:
		case c.Requirement == "scopes":
			v = VerdictScopes
		default:
			return VerdictFails
		}
	}
	return v
}

// explain evaluates every requirement of r for f.
func (r *rule) explain(f *Facts, kind Kind, name string) []Check {
	var cs []Check
	if len(r.perms) > 0 {
		cs = append(cs, allOf("permissions", f.Permissions, r.perms))
	}
	if len(r.roles) > 0 {
		c := Check{Requirement: "roles", Held: containsAny(f.Roles, r.roles)}
		if c.Held {
			c.Detail = fmt.Sprintf("has %s (one of %s)", list(intersect(f.Roles, r.roles)), list(r.roles))
		} else {
			c.Detail = fmt.Sprintf("needs one of %s (has %s)", list(r.roles), listOrNone(f.Roles))
		}
		cs = append(cs, c)
	}
	if len(r.org) > 0 {
		c := Check{Requirement: "org", Held: slices.Contains(r.org, f.Org)}
		switch {
		case c.Held:
			c.Detail = fmt.Sprintf("org_id %s is one of %s", f.Org, list(r.org))
		case f.Org == "":
			c.Detail = fmt.Sprintf("no org_id; needs one of %s", list(r.org))
		default:
			c.Detail = fmt.Sprintf("org_id %s is not one of %s", f.Org, list(r.org))
		}
		cs = append(cs, c)
	}
	if r.when != nil {
		ok, err := r.when.eval(f, kind, name)
		c := Check{Requirement: "when", Held: ok, Detail: fmt.Sprint(ok)}
		if err != nil {
			c.Detail = "error: " + err.Error() + " (an error does not grant)"
		}
		cs = append(cs, c)
	}
	if len(r.scope) > 0 {
		cs = append(cs, allOf("scopes", f.Scopes, r.scope))
	}
	return cs
}

// allOf checks that have holds every element of want.
func allOf(req string, have, want []string) Check {
	m := missing(have, want)
	if len(m) == 0 {
		return Check{Requirement: req, Held: true, Detail: "has " + list(want)}
	}
	return Check{Requirement: req, Detail: fmt.Sprintf("missing %s (has %s)", list(m), listOrNone(have))}
}

func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

func list(s []string) string { return strings.Join(s, ", ") }

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return list(s)
}

// String renders e for people: a headline with the decision, then each covering rule with its requirements (✓ held,
// ✗ failed).
func (e Explanation) String() string {
	var b strings.Builder
	b.WriteString(e.headline())
	b.WriteByte('\n')
	for _, st := range e.Steps {
		fmt.Fprintf(&b, "  rule %s (%s %q): %s\n", st.Rule, e.Kind.field(), st.Glob, st.Verdict)
		if len(st.Checks) == 0 && st.Verdict != VerdictNotReached {
			b.WriteString("    ✓ no requirements\n")
		}
		for _, c := range st.Checks {
			mark := "✗"
			if c.Held {
				mark = "✓"
			}
			fmt.Fprintf(&b, "    %s %s: %s\n", mark, c.Requirement, c.Detail)
		}
	}
	return b.String()
}

// headline says the decision and what made it.
func (e Explanation) headline() string {
	d := e.Decision
	what := fmt.Sprintf("%s %q: %s", e.Kind, e.Name, d.Outcome)
	switch {
	case e.Kind.index() < 0:
		return what + ": unknown kind (want tool, prompt or resource)"
	case e.Kind == Resource && hasDotSegment(e.Name):
		return what + `, whatever the rules: the URI has a "." or ".." segment, which a server may resolve to another resource`
	case d.Rule == DefaultRule:
		return what + ", by the default: no rule covers it"
	case d.Outcome == Allow && d.Limit != nil:
		return fmt.Sprintf("%s, by rule %s, at most %s per caller (burst %d; beyond, 429)", what, d.Rule, d.Limit.Rate, d.Limit.Burst)
	case d.Outcome == Allow:
		return what + ", by rule " + d.Rule
	case d.Outcome == StepUp:
		return fmt.Sprintf("%s, by rule %s, which grants it but for scopes: listed, and a call is answered 403 insufficient_scope with scope=%q",
			what, d.Rule, strings.Join(d.Scopes, " "))
	}
	return fmt.Sprintf("%s: no rule that covers it grants it (the decision is named after the last one, %s; the default, %s, applies only to names no rule covers)",
		what, d.Rule, e.Default)
}
