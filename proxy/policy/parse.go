package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/cel-go/cel"
	"go.yaml.in/yaml/v3"
)

// Error is one problem found in a policy file. Parse and Load join one Error per problem (errors.Join); errors.As
// finds the first.
type Error struct {
	Source string // the file
	Line   int    // 1-based; 0 when unknown
	Column int    // 1-based, in characters; 0 when unknown
	// Rule is the name of the rule the problem is in, "#n" (1-based) for a rule without a usable name, or "" for a
	// problem outside the rules.
	Rule string
	Msg  string
	Err  error // the YAML parser's error, for a syntax error
}

// Error formats e as "<file>:<line>:<col>: rule <name>: <message>", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(":" + strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.Rule != "" {
		b.WriteString("rule " + e.Rule + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the YAML parser's error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Load reads and parses the file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(data, path)
}

// Parse reads a policy from YAML data; source names it in errors (a file path). Every problem is reported, naming the
// rule and, for a CEL condition, the line and column in the file. A policy without `default` denies the names no rule
// covers; an empty file is an error (a file caught half written must not deny everything).
func Parse(data []byte, source string) (*Policy, error) {
	root, err := document(data, source)
	if err != nil {
		return nil, err
	}
	ps := &parser{source: source, lines: strings.Split(string(data), "\n"), seen: map[string]int{}}
	p := &Policy{source: source, def: Deny}
	ps.policy(root, p)
	if len(ps.errs) > 0 {
		return nil, errors.Join(ps.errs...)
	}
	return p, nil
}

// document returns the root node of data's one YAML document.
func document(data []byte, source string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || err == nil && len(doc.Content) == 0 {
		return nil, &Error{Source: source, Msg: "the policy is empty: it needs rules (and a default, deny when absent)"}
	}
	if err != nil {
		return nil, syntaxError(source, err)
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(source, err)
	default:
		return nil, &Error{Source: source, Line: more.Line, Msg: "a policy is one YAML document; remove the second one (from this ---)"}
	}
	root := deref(doc.Content[0])
	if isNull(root) {
		return nil, &Error{Source: source, Msg: "the policy is empty: it needs rules (and a default, deny when absent)"}
	}
	return root, nil
}

// syntaxError is a YAML parser error, in the parser's words: its line numbers are not always those of the problem
// (for some errors, the line before the construct that encloses it), so they are not presented as the file's.
func syntaxError(source string, err error) error {
	return &Error{Source: source, Msg: err.Error(), Err: err}
}

// parser collects the problems of one policy file.
type parser struct {
	source string
	lines  []string       // the file's lines, to place CEL errors in block scalars
	errs   []error        // every problem, in file order
	seen   map[string]int // rule names, to the line where each is first named
	env    *cel.Env       // built for the first condition
}

// errorf records a problem at n (nil: no position) in the rule named rule ("" for none).
func (ps *parser) errorf(n *yaml.Node, rule, format string, args ...any) {
	e := &Error{Source: ps.source, Rule: rule, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	ps.errs = append(ps.errs, e)
}

// deref returns what an alias node stands for.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// fields calls fn with each key and value of the mapping n, in order, after reporting keys that are not in known
// (named by what, e.g. "the policy") or that appear twice. It reports n itself if it is not a mapping.
func (ps *parser) fields(n *yaml.Node, rule, what string, known []string, fn func(key string, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		ps.errorf(n, rule, "%s must be a mapping with the fields %s", what, strings.Join(known, ", "))
		return
	}
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		key := k.Value
		switch line, dup := first[key]; {
		case !contains(known, key):
			ps.errorf(k, rule, "unknown field %q in %s (known: %s)", key, what, strings.Join(known, ", "))
		case dup:
			ps.errorf(k, rule, "%s is set twice in %s (first at line %d)", key, what, line)
		default:
			first[key] = k.Line
			fn(key, v)
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// policy reads the root mapping into p.
func (ps *parser) policy(root *yaml.Node, p *Policy) {
	ps.fields(root, "", "the policy", []string{"default", "rules"}, func(key string, v *yaml.Node) {
		switch key {
		case "default":
			if v.Kind != yaml.ScalarNode || v.Value != string(Allow) && v.Value != string(Deny) {
				ps.errorf(v, "", "default must be allow or deny (got %s)", describe(v))
				return
			}
			p.def = Outcome(v.Value)
		case "rules":
			if isNull(v) {
				return
			}
			if v.Kind != yaml.SequenceNode {
				ps.errorf(v, "", "rules must be a list of rules (got %s)", describe(v))
				return
			}
			for i, rn := range v.Content {
				if r := ps.rule(deref(rn), i); r != nil {
					p.rules = append(p.rules, r)
					p.names = append(p.names, r.name)
				}
			}
		}
	})
}

// ruleFields are the fields of a rule.
var ruleFields = []string{"name", "tools", "prompts", "resources", "require", "when", "limit"}

// rule reads the i-th rule (0-based). It returns nil when the rule has problems, which are recorded.
func (ps *parser) rule(n *yaml.Node, i int) *rule {
	errs := len(ps.errs)
	r := &rule{name: ps.ruleName(n, i), line: n.Line}
	label := r.name
	if label == "" {
		label = "#" + strconv.Itoa(i+1)
	}
	var when *yaml.Node
	named := false
	ps.fields(n, label, "a rule", ruleFields, func(key string, v *yaml.Node) {
		switch key {
		case "tools", "prompts", "resources":
			k := Kind(strings.TrimSuffix(key, "s")).index()
			r.globs[k] = ps.globs(v, label, key)
			named = named || v.Kind == yaml.SequenceNode && len(v.Content) > 0
		case "require":
			ps.require(v, label, r)
		case "when":
			when = v
		case "limit":
			r.limit = ps.limit(v, label)
		}
	})
	if r.limit != nil && len(r.globs[Tool.index()]) == 0 && n.Kind == yaml.MappingNode {
		ps.errorf(n, label, "has a limit but names no tools: a limit counts calls of the tools a rule grants")
	}
	if n.Kind == yaml.MappingNode && !named {
		ps.errorf(n, label, "names nothing: give it tools, prompts or resources (globs; \"*\" for all)")
	}
	if when != nil {
		r.when = ps.condition(when, label)
	}
	if len(ps.errs) > errs {
		return nil
	}
	return r
}

// ruleName reads and checks the name of the i-th rule, n, and returns it ("" when it has no usable name, which is
// recorded as a problem).
func (ps *parser) ruleName(n *yaml.Node, i int) string {
	label := "#" + strconv.Itoa(i+1)
	if n.Kind != yaml.MappingNode {
		return "" // reported by fields
	}
	var v *yaml.Node
	for j := 0; j+1 < len(n.Content); j += 2 {
		if deref(n.Content[j]).Value == "name" {
			v = deref(n.Content[j+1])
			break
		}
	}
	switch {
	case v == nil:
		ps.errorf(n, label, "needs a name (unique; it names the rule in decisions, logs and metrics)")
	case v.Kind != yaml.ScalarNode || isNull(v) || strings.TrimSpace(v.Value) == "":
		ps.errorf(v, label, "name must be a non-empty string (got %s)", describe(v))
	case strings.IndexFunc(v.Value, unicode.IsControl) >= 0:
		ps.errorf(v, label, "name %q contains a control character", v.Value)
	case v.Value == DefaultRule:
		ps.errorf(v, label, "name %q is reserved: decisions by the policy's default are named so", DefaultRule)
	default:
		if line, dup := ps.seen[v.Value]; dup {
			ps.errorf(v, v.Value, "name is already used by the rule at line %d; rule names must be unique", line)
			return v.Value
		}
		ps.seen[v.Value] = n.Line
		return v.Value
	}
	return ""
}

// limitFields are the fields of a rule's limit.
var limitFields = []string{"rate", "burst"}

// limit reads a rule's limit: {rate: <n>/<s|m|h>, burst: <n>}, burst defaulting to the rate's count.
func (ps *parser) limit(v *yaml.Node, rule string) *Limit {
	if v.Kind != yaml.MappingNode {
		ps.errorf(v, rule, "limit must be a mapping, e.g. {rate: 10/m, burst: 2} (got %s)", describe(v))
		return nil
	}
	l := &Limit{}
	var count int
	var rateNode *yaml.Node
	ok := true
	ps.fields(v, rule, "limit", limitFields, func(key string, v *yaml.Node) {
		switch key {
		case "rate":
			rateNode = v
			n, per, err := parseRate(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil {
				ps.errorf(v, rule, "limit.rate must be a count per s, m or h, e.g. 10/m (got %s)", describe(v))
				ok = false
				return
			}
			count, l.Rate, l.PerSecond = n, v.Value, float64(n)/per.Seconds()
		case "burst":
			b, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil || b < 1 || b > 1_000_000 {
				ps.errorf(v, rule, "limit.burst must be a whole number from 1 to 1000000 (got %s)", describe(v))
				ok = false
				return
			}
			l.Burst = b
		}
	})
	if rateNode == nil {
		ps.errorf(v, rule, "limit needs a rate, e.g. {rate: 10/m}")
		return nil
	}
	if !ok {
		return nil
	}
	if l.Burst == 0 {
		l.Burst = count
	}
	return l
}

// parseRate reads "<n>/<s|m|h>": a whole count from 1 to 1000000 per second, minute or hour.
func parseRate(s string) (int, time.Duration, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	per, known := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[strings.TrimSpace(unit)]
	if !ok || err != nil || !known || n < 1 || n > 1_000_000 {
		return 0, 0, errors.New("not a rate")
	}
	return n, per, nil
}

// stringList reads a list of non-empty strings; a null value is an empty list.
func (ps *parser) stringList(v *yaml.Node, rule, field string) ([]string, []*yaml.Node) {
	if isNull(v) {
		return nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		ps.errorf(v, rule, "%s must be a list of strings, e.g. [%q] (got %s)", field, "a", describe(v))
		return nil, nil
	}
	var out []string
	var nodes []*yaml.Node
	for _, e := range v.Content {
		e = deref(e)
		if e.Kind != yaml.ScalarNode || isNull(e) || e.Value == "" {
			ps.errorf(e, rule, "%s: each item must be a non-empty string (got %s)", field, describe(e))
			continue
		}
		out = append(out, e.Value)
		nodes = append(nodes, e)
	}
	return out, nodes
}

// globs reads and compiles a list of globs.
func (ps *parser) globs(v *yaml.Node, rule, field string) []glob {
	pats, nodes := ps.stringList(v, rule, field)
	var out []glob
	for i, pat := range pats {
		g, err := compileGlob(pat)
		if err != nil {
			ps.errorf(nodes[i], rule, "%s: %q %v", field, pat, err)
			continue
		}
		out = append(out, g)
	}
	return out
}

// requireFields are the fields of a rule's require.
var requireFields = []string{"permissions", "roles", "scopes", "org"}

// require reads a rule's requirements into r.
func (ps *parser) require(v *yaml.Node, rule string, r *rule) {
	if isNull(v) {
		return
	}
	ps.fields(v, rule, "require", requireFields, func(key string, v *yaml.Node) {
		list, nodes := ps.stringList(v, rule, "require."+key)
		switch key {
		case "permissions":
			r.perms = list
		case "roles":
			r.roles = list
		case "org":
			r.org = list
		case "scopes":
			for i, s := range list {
				if !isScopeToken(s) {
					ps.errorf(nodes[i], rule, "require.scopes: %q is not a scope (RFC 6749: printable ASCII without space, \" or \\)", s)
				}
			}
			r.scope = list
		}
	})
}

// isScopeToken reports whether s is an RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E, which is also what may stand
// in a challenge's quoted scope parameter.
func isScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// condition compiles a rule's when, reporting CEL errors at their place in the file.
func (ps *parser) condition(v *yaml.Node, rule string) *condition {
	if v.Kind != yaml.ScalarNode || isNull(v) || strings.TrimSpace(v.Value) == "" {
		ps.errorf(v, rule, "when must be a CEL expression (a string; got %s)", describe(v))
		return nil
	}
	if ps.env == nil {
		env, err := newEnv()
		if err != nil {
			ps.errorf(v, rule, "when: the CEL environment: %v", err)
			return nil
		}
		ps.env = env
	}
	c, issues := compileCondition(ps.env, v.Value, rule)
	for _, is := range issues {
		line, col, ok := ps.exprPos(v, is.line, is.col)
		e := &Error{Source: ps.source, Line: line, Column: col, Rule: rule, Msg: "when: " + is.msg}
		if !ok {
			e.Msg += fmt.Sprintf(" (at line %d, column %d of the expression)", is.line, is.col+1)
		}
		ps.errs = append(ps.errs, e)
	}
	return c
}

// describe names what a node holds, for error messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(n):
		return "nothing"
	}
	return strconv.Quote(n.Value)
}
