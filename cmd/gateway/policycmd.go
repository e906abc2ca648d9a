package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mcp-gateway/gateway/proxy/policy"
)

// policyUsage is the help of gateway policy.
const policyUsage = `usage: gateway policy explain --token <JWT | claims JSON | @file> (--tool | --prompt | --resource) <name> [--file <policy.yaml>]

Explain prints the decision the policy makes for one caller and one name, the rule that makes it, and every
requirement of every rule that covers the name, held or failed. It runs offline, without a gateway: a JWT's claims
are read WITHOUT verifying its signature, its issuer, audience or expiry (the gateway verifies all of them before any
policy applies), so explain answers "what if a valid token said this".
`

// runPolicy runs gateway policy <command> with args.
func runPolicy(args []string, env map[string]string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "explain" {
		fmt.Fprint(stderr, policyUsage)
		if len(args) == 0 {
			return errors.New("gateway policy: missing command (explain)")
		}
		return fmt.Errorf("gateway policy: unknown command %q (want explain)", args[0])
	}
	fs := flag.NewFlagSet("gateway policy explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tokenArg := fs.String("token", "", "the caller: a JWT (its signature is NOT verified), a JSON object of claims, or @path to read either from a file")
	tool := fs.String("tool", "", "the tool name to decide")
	prompt := fs.String("prompt", "", "the prompt name to decide")
	resource := fs.String("resource", "", "the resource URI (or URI template) to decide")
	file := fs.String("file", env["GATEWAY_POLICY_FILE"], "the policy file (default: GATEWAY_POLICY_FILE)")
	fs.Usage = func() {
		fmt.Fprint(stderr, policyUsage+"\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	kind, name, err := explainTarget(fs.NArg(), *tool, *prompt, *resource)
	switch {
	case err != nil:
		return err
	case *tokenArg == "":
		return errors.New("gateway policy explain: --token is required (a JWT, a claims JSON object, or @file)")
	case *file == "":
		return errors.New("gateway policy explain: no policy: set --file or GATEWAY_POLICY_FILE")
	}
	claims, isJWT, err := readClaims(*tokenArg)
	if err != nil {
		return fmt.Errorf("gateway policy explain: --token: %w", err)
	}
	p, err := policy.Load(*file)
	if err != nil {
		return fmt.Errorf("gateway policy explain: the policy does not load:\n%w", err)
	}
	printExplanation(stdout, p, claims, isJWT, kind, name, time.Now())
	return nil
}

// explainTarget returns the one name to decide and its kind; nargs is the number of arguments left after the flags.
func explainTarget(nargs int, tool, prompt, resource string) (policy.Kind, string, error) {
	var kind policy.Kind
	var name string
	n := 0
	for _, t := range []struct {
		kind  policy.Kind
		value string
	}{{policy.Tool, tool}, {policy.Prompt, prompt}, {policy.Resource, resource}} {
		if t.value != "" {
			kind, name = t.kind, t.value
			n++
		}
	}
	switch {
	case nargs > 0:
		return "", "", errors.New("gateway policy explain: unexpected arguments (name the tool with --tool, the prompt with --prompt, the resource with --resource)")
	case n != 1:
		return "", "", errors.New("gateway policy explain: give exactly one of --tool, --prompt or --resource")
	}
	return kind, name, nil
}

// readClaims returns the claims of arg: a compact JWT (decoded, not verified), a JSON object, or either read from the
// file @path. isJWT tells which it was.
func readClaims(arg string) (claims map[string]any, isJWT bool, err error) {
	if path, ok := strings.CutPrefix(arg, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, false, err
		}
		arg = string(b)
	}
	arg = strings.TrimSpace(arg)
	arg = strings.TrimSpace(strings.TrimPrefix(arg, "Bearer "))
	data := []byte(arg)
	if !strings.HasPrefix(arg, "{") {
		parts := strings.Split(arg, ".")
		switch len(parts) {
		case 3:
		case 5:
			return nil, false, errors.New("an encrypted token (JWE) cannot be read offline")
		default:
			return nil, false, errors.New("neither a JWT (header.payload.signature) nor a JSON object of claims")
		}
		if data, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "=")); err != nil {
			return nil, false, fmt.Errorf("the JWT's payload is not base64url: %w", err)
		}
		isJWT = true
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, false, fmt.Errorf("the claims are not a JSON object: %v", err)
	}
	return claims, isJWT, nil
}

// printExplanation writes what explain says of claims and the name of kind under p.
func printExplanation(w io.Writer, p *policy.Policy, claims map[string]any, isJWT bool, kind policy.Kind, name string, now time.Time) {
	f := policy.FactsFromClaims(claims)
	e := p.Explain(&f, kind, name)
	fmt.Fprintf(w, "policy:      %s (default %s, %d rules)\n", p.Source(), p.Default(), len(p.Rules()))
	if isJWT {
		fmt.Fprintln(w, "token:       a JWT whose signature was NOT verified: explain is offline; the gateway verifies every token before its policy applies")
	} else {
		fmt.Fprintln(w, "token:       claims given as JSON")
	}
	if exp, ok := claims["exp"].(float64); ok && now.After(time.Unix(int64(exp), 0)) {
		fmt.Fprintf(w, "note:        this token expired at %s: the gateway would refuse it (401) before any policy\n", time.Unix(int64(exp), 0).UTC().Format(time.RFC3339))
	}
	sub, _ := claims["sub"].(string)
	fmt.Fprintf(w, "caller:      sub %s, org_id %s\n", orNone(sub), orNone(f.Org))
	fmt.Fprintf(w, "permissions: %s\nroles:       %s\nscopes:      %s\n", joinOrNone(f.Permissions), joinOrNone(f.Roles), joinOrNone(f.Scopes))
	fmt.Fprintf(w, "decision:    %s\nrule:        %s\n", e.Decision.Outcome, e.Decision.Rule)
	switch e.Decision.Outcome {
	case policy.Allow:
		fmt.Fprintln(w, "effect:      listed; a call is forwarded")
	case policy.StepUp:
		fmt.Fprintf(w, "effect:      listed; a call is answered 403 insufficient_scope, scope=%q\n", strings.Join(e.Decision.Scopes, " "))
	default:
		fmt.Fprintf(w, "effect:      not listed; a call is answered as for an unknown %s and never forwarded\n", kind)
	}
	fmt.Fprintf(w, "\n%s", e)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func joinOrNone(s []string) string { return orNone(strings.Join(s, " ")) }
