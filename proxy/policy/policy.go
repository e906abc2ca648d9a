// Package policy decides which tools, prompts and resources a verified caller may see and use: ordered rules from a
// YAML file (GATEWAY_POLICY_FILE), each granting a set of names (globs) to callers who meet its requirements
// (permissions, roles, scopes, organization, and an optional CEL condition). One decision serves a list item and a
// call alike, so what a caller sees is exactly what they may use. The package does no HTTP: package proxy applies the
// decisions to MCP messages.
package policy

// Kind is what a name designates.
type Kind string

// The kinds of names a rule grants.
const (
	Tool     Kind = "tool"     // tools/call params.name; tools/list tools[].name
	Prompt   Kind = "prompt"   // prompts/get params.name; prompts/list prompts[].name; completion/complete ref/prompt
	Resource Kind = "resource" // resources/read, (un)subscribe params.uri; resources/list resources[].uri; templates' uriTemplate
)

// Outcome is what a decision says.
type Outcome string

// Outcomes.
const (
	Allow  Outcome = "allow"   // the caller may see and use the name
	Deny   Outcome = "deny"    // hidden: a call gets the "unknown" answer and never reaches the upstream
	StepUp Outcome = "step_up" // a rule would grant it but for scopes the token lacks: listed; a call gets 403 insufficient_scope
)

// Facts are what the rules look at of a caller, built once per request from the verified token.
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
	// Rule is the name of the rule that decided, or "default" when no rule covers the name.
	Rule string
	// Scopes, for StepUp, are the scopes to challenge for: the deciding rule's required scopes ∪ the token's, sorted.
	Scopes []string
}

// Policy is a loaded, compiled policy. It is immutable and safe for concurrent use.
type Policy struct {
	// filled by Parse
}

// Parse reads a policy from YAML data; source names it in errors (a file path). Every problem is reported, naming the
// rule and, for a CEL condition, the line and column in the file.
func Parse(data []byte, source string) (*Policy, error) { panic("not implemented") }

// Load reads and parses the file at path.
func Load(path string) (*Policy, error) { panic("not implemented") }

// Decide returns the decision for the name of kind for a caller with facts f. It allocates nothing on the common paths
// (no CEL condition, or one whose activation is prepared once per Facts).
func (p *Policy) Decide(f *Facts, kind Kind, name string) Decision { panic("not implemented") }

// Rules returns the rule names in file order (for bounded metric labels; "default" is added by the caller).
func (p *Policy) Rules() []string { panic("not implemented") }
