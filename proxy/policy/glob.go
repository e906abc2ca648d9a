package policy

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// A glob is a compiled name pattern: "*" matches any run of characters (none included, "/" included), "?" matches
// exactly one character (a Unicode code point), "\" makes the next character literal, and every other character
// matches itself, case-sensitively. Matching allocates nothing; the common shapes (a plain name, "*", "prefix*",
// "*suffix") are tested without the general matcher.
type glob struct {
	pattern string      // as written, for explain and --check
	shape   globShape   // how to match
	lit     string      // the literal of exact, prefix and suffix shapes
	toks    []globToken // the general shape
}

type globShape uint8

const (
	globExact globShape = iota
	globAll
	globPrefix
	globSuffix
	globGeneral
)

// globToken is one element of a general pattern: a literal code point, "?" or "*".
type globToken struct {
	op byte // 'l' literal, '?' one character, '*' any run
	r  rune
}

// errTrailingEscape is a pattern that ends with a lone backslash.
var errTrailingEscape = errors.New(`ends with "\", which escapes nothing (write "\\" for a backslash)`)

// compileGlob compiles pattern.
func compileGlob(pattern string) (glob, error) {
	g := glob{pattern: pattern}
	var toks []globToken
	for i := 0; i < len(pattern); {
		r, size := utf8.DecodeRuneInString(pattern[i:])
		i += size
		switch r {
		case '*':
			if n := len(toks); n > 0 && toks[n-1].op == '*' {
				continue // "**" is "*"
			}
			toks = append(toks, globToken{op: '*'})
		case '?':
			toks = append(toks, globToken{op: '?'})
		case '\\':
			if i == len(pattern) {
				return g, errTrailingEscape
			}
			r, size = utf8.DecodeRuneInString(pattern[i:])
			i += size
			toks = append(toks, globToken{op: 'l', r: r})
		default:
			toks = append(toks, globToken{op: 'l', r: r})
		}
	}
	g.shape, g.lit, g.toks = classify(toks)
	return g, nil
}

// classify picks the fastest way to match toks.
func classify(toks []globToken) (globShape, string, []globToken) {
	stars, ones := 0, 0
	var lit strings.Builder
	for _, t := range toks {
		switch t.op {
		case '*':
			stars++
		case '?':
			ones++
		default:
			lit.WriteRune(t.r)
		}
	}
	n := len(toks)
	switch {
	case ones > 0 || stars > 1:
		return globGeneral, "", toks
	case stars == 0:
		return globExact, lit.String(), nil
	case n == 1:
		return globAll, "", nil
	case toks[n-1].op == '*':
		return globPrefix, lit.String(), nil
	case toks[0].op == '*':
		return globSuffix, lit.String(), nil
	}
	return globGeneral, "", toks
}

// match reports whether name matches the pattern.
func (g *glob) match(name string) bool {
	switch g.shape {
	case globExact:
		return name == g.lit
	case globAll:
		return true
	case globPrefix:
		return strings.HasPrefix(name, g.lit)
	case globSuffix:
		return strings.HasSuffix(name, g.lit)
	}
	return matchTokens(g.toks, name)
}

// matchTokens matches name against toks, backtracking to the last "*" only: linear for patterns with one "*",
// O(len(toks)·len(name)) at worst.
func matchTokens(toks []globToken, name string) bool {
	p, n := 0, 0
	starP, starN := -1, 0
	for n < len(name) {
		if p < len(toks) {
			t := toks[p]
			if t.op == '*' {
				starP, starN = p, n
				p++
				continue
			}
			r, size := utf8.DecodeRuneInString(name[n:])
			if t.op == '?' || t.r == r {
				p++
				n += size
				continue
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last "*" take one more character, and match the rest again after it.
		_, size := utf8.DecodeRuneInString(name[starN:])
		starN += size
		p, n = starP+1, starN
	}
	for p < len(toks) && toks[p].op == '*' {
		p++
	}
	return p == len(toks)
}
