package policy

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// CostLimit bounds the work of one evaluation of a rule's condition, in CEL cost units (about one per operation,
// more for string and list functions proportionally to their sizes). An evaluation that exceeds it stops with an
// error, which means the rule does not grant.
const CostLimit = 10_000

// MCP is the CEL variable `mcp` of a rule's condition: what is being decided, for a list item and a call alike. It
// has no method and no arguments on purpose: a list item and its call must get the same decision, and arguments are
// not known when a list is filtered. Conditions that name another field (mcp.arguments) do not load.
type MCP struct {
	Kind string `cel:"kind"` // "tool", "prompt" or "resource"
	Name string `cel:"name"` // the tool or prompt name, or the resource URI (or URI template)
}

// mcpType is MCP's CEL type name, as ext.NativeTypes names it (package name, type name).
const mcpType = "policy.MCP"

// newEnv returns the CEL environment of rule conditions: the variables claims (map(string, dyn)) and mcp (MCP), the
// standard functions and macros, the strings and sets extensions, optional values (claims.?email.orValue("")), and
// numeric comparisons across int, uint and double (JSON numbers in claims are doubles).
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		ext.NativeTypes(reflect.TypeFor[MCP](), ext.ParseStructTags(true)),
		cel.Variable("mcp", cel.ObjectType(mcpType)),
		ext.Strings(),
		ext.Sets(),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
	)
}

// condition is a rule's compiled `when`.
type condition struct {
	src string
	prg cel.Program
}

// celIssue is one CEL compile error: where in the expression (line 1-based, column 0-based, in characters) and what.
type celIssue struct {
	line, col int
	msg       string
}

// compileCondition compiles and type-checks src, which must be a bool expression. It returns every issue CEL
// reports, or one for an expression of another type.
func compileCondition(env *cel.Env, src, ruleName string) (*condition, []celIssue) {
	ast, iss := env.CompileSource(common.NewStringSource(src, "rule "+ruleName))
	if iss != nil && iss.Err() != nil {
		var out []celIssue
		for _, e := range iss.Errors() {
			out = append(out, celIssue{line: e.Location.Line(), col: e.Location.Column(), msg: e.Message})
		}
		return nil, out
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		hint := ""
		if t.IsExactType(cel.DynType) {
			hint = " (a claim's type is only known at run time: compare it, e.g. claims.admin == true)"
		}
		return nil, []celIssue{{line: 1, col: 0, msg: fmt.Sprintf("must be a bool expression, got %s%s", t, hint)}}
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(CostLimit))
	if err != nil {
		return nil, []celIssue{{line: 1, col: 0, msg: err.Error()}}
	}
	return &condition{src: src, prg: prg}, nil
}

// errNotBool is a condition that evaluated to something other than a bool (which type-checking rules out).
var errNotBool = errors.New("the condition did not evaluate to a bool")

// eval evaluates the condition for f and the name of kind. Any error (a missing claim, a claim of another type, the
// cost limit) is returned with false: the rule does not grant.
func (c *condition) eval(f *Facts, kind Kind, name string) (bool, error) {
	out, _, err := c.prg.Eval(&activation{claims: f.Claims, mcp: MCP{Kind: string(kind), Name: name}})
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, errNotBool
	}
	return bool(b), nil
}

// activation resolves the variables of one evaluation. The claims map is read in place (CEL selects its keys
// without converting it).
type activation struct {
	claims map[string]any
	mcp    MCP
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "claims":
		return a.claims, true
	case "mcp":
		return &a.mcp, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }
