package policy

import (
	"slices"
	"strings"
)

// FactsFromClaims returns the facts of a caller from their verified token's claims:
//   - Permissions: permissions (an array of strings, or one string as one permission);
//   - Roles: role ∪ roles (each a string or an array of strings), without duplicates, role first;
//   - Scopes: scope split on white space ∪ scp (a space-separated string, or an array of strings), without duplicates;
//   - Org: org_id when it is a string;
//   - Claims: claims itself, which the facts share: it must not change afterwards.
//
// Items that are not strings, and empty strings, are left out. Claims decoded from JSON (arrays as []any) and built
// in Go ([]string) are both read.
func FactsFromClaims(claims map[string]any) Facts {
	f := Facts{
		Permissions: appendItems(nil, claims["permissions"], false),
		Roles:       appendItems(appendItems(nil, claims["role"], false), claims["roles"], false),
		Scopes:      appendItems(appendItems(nil, claims["scope"], true), claims["scp"], true),
		Claims:      claims,
	}
	f.Org, _ = claims["org_id"].(string)
	return f
}

// appendItems appends to list the string items of the claim value v that list does not hold yet. A string is one
// item, or, with split, as many as it has space-separated words.
func appendItems(list []string, v any, split bool) []string {
	add := func(s string) {
		if s != "" && !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	switch v := v.(type) {
	case string:
		if !split {
			add(v)
			break
		}
		for w := range strings.FieldsSeq(v) {
			add(w)
		}
	case []string:
		for _, s := range v {
			add(s)
		}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				add(s)
			}
		}
	}
	return list
}
