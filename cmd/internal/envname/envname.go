// Package envname reads the commands' configuration from environment variables: Load parses it with caarlos0/env and
// reports every problem at once, each naming its variable; Find finds the variables a program is given but does not
// read, such as a misspelt setting that silently leaves its default in place, and names the known variable closest to
// each.
package envname

import (
	"reflect"
	"slices"
	"strings"
)

// Unknown is an environment variable that a program does not read.
type Unknown struct {
	// Name is the variable as it is set.
	Name string
	// Suggestion is the known variable whose name is closest to Name (fewest single-letter edits, letter case
	// ignored); the first in the known list wins a tie.
	Suggestion string
}

// Tags returns the names in the env tags of struct type t's fields, in field order, skipping fields without one and
// those tagged "-". Options after a comma (env:"NAME,notEmpty") are dropped.
func Tags(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// Find returns, sorted by name, every variable in environ whose name starts with one of prefixes, in any letter case,
// and is not exactly one of known, each with the known name closest to it. A variable whose name differs from a
// known one in letter case only is unknown: environment names are case-sensitive.
func Find(environ map[string]string, prefixes, known []string) []Unknown {
	var out []Unknown
	for name := range environ {
		upper := strings.ToUpper(name)
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(upper, strings.ToUpper(p)) }) ||
			slices.Contains(known, name) {
			continue
		}
		out = append(out, Unknown{Name: name, Suggestion: closest(upper, known)})
	}
	slices.SortFunc(out, func(a, b Unknown) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// closest returns the name in known with the smallest edit distance to upper (an upper-cased name), or "" when known
// is empty.
func closest(upper string, known []string) string {
	best, bestDist := "", -1
	for _, k := range known {
		if d := distance(upper, strings.ToUpper(k)); bestDist < 0 || d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b, counted in bytes: the fewest insertions, deletions and
// substitutions that turn one into the other.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
