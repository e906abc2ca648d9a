package policy

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGlob(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"get-user-info", "get-user-info", true},
		{"get-user-info", "get-user-info2", false},
		{"get-user-info", "Get-User-Info", false}, // case-sensitive
		{"get-user-info", "get-user", false},
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"get-*", "get-", true},
		{"get-*", "get-workos-user", true},
		{"get-*", "list-users", false},
		{"*-user", "get-workos-user", true},
		{"*-user", "get-workos-users", false},
		{"file:///public/*", "file:///public/a/b/c.txt", true}, // * crosses /
		{"file:///public/*", "file:///private/a", false},
		{"staff/?/report", "staff/a/report", true},
		{"staff/?/report", "staff/ab/report", false},
		{"staff/?/report", "staff//report", false},
		{"staff/?/report", "staff/é/report", true}, // ? is one character, not one byte
		{"a*b*c", "abc", true},
		{"a*b*c", "a-b-b-c", true},
		{"a*b*c", "a-b-b-c-d", false},
		{"a**b", "ab", true},
		{"*a*", "bab", true},
		{"*a*", "bbb", false},
		{"?", "", false},
		{"??", "é", false},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{`what\?`, "what?", true},
		{`what\?`, "whats", false},
		{`back\\slash`, `back\slash`, true},
		{"https://api.example.com/v1/*?x=1", "https://api.example.com/v1/items?x=1", true},
	} {
		g, err := compileGlob(tc.pattern)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", tc.pattern, err)
		}
		if got := g.match(tc.name); got != tc.want {
			t.Errorf("glob %q matching %q: got %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	if _, err := compileGlob(`trailing\`); err == nil {
		t.Error(`compileGlob("trailing\\"): got no error, want one`)
	}
}

// globRegexp is the reference meaning of a glob, as a regular expression.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for i := 0; i < len(pattern); {
		r, size := utf8.DecodeRuneInString(pattern[i:])
		i += size
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '\\':
			r, size = utf8.DecodeRuneInString(pattern[i:])
			i += size
			b.WriteString(regexp.QuoteMeta(string(r)))
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// FuzzGlob checks the matcher against the regular expression a glob stands for.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"a*b?c", "axxbyc"}, {"*", ""}, {`\**`, "*x"}, {"*a*a*a", "aaaa"}, {"?é*", "xéy"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if !utf8.ValidString(pattern) || !utf8.ValidString(name) {
			return
		}
		g, err := compileGlob(pattern)
		if err != nil {
			return
		}
		if got, want := g.match(name), globRegexp(pattern).MatchString(name); got != want {
			t.Errorf("glob %q matching %q: got %v, want %v", pattern, name, got, want)
		}
	})
}
