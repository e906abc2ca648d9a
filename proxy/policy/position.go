package policy

import (
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// exprPos returns the place in the file (line, column, 1-based) of the character at line celLine (1-based) and column
// celCol (0-based, in characters) of the expression held by the scalar v. It is exact for an expression on one line
// (plain, single- or double-quoted) and for a literal block (|); for other multi-line forms, whose line breaks YAML
// folds, it reports v's own place and ok false.
func (ps *parser) exprPos(v *yaml.Node, celLine, celCol int) (line, col int, ok bool) {
	off, ok := runeOffset(v.Value, celLine, celCol)
	if !ok {
		return v.Line, v.Column, false
	}
	var m []srcPos
	switch v.Style {
	case yaml.LiteralStyle:
		m = ps.literalMap(v)
	case 0, yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		m = ps.inlineMap(v)
	}
	switch {
	case len(m) == 0 || len(m) != utf8.RuneCountInString(v.Value) || off > len(m):
		return v.Line, v.Column, false
	case off == len(m): // the end of the expression
		return m[off-1].line, m[off-1].col + 1, true
	}
	return m[off].line, m[off].col, true
}

// srcPos is a place in the file, 1-based.
type srcPos struct{ line, col int }

// runeOffset converts a line (1-based) and column (0-based) in s to an offset in characters. The offset may be
// len(s) (an error at the end of the expression).
func runeOffset(s string, line, col int) (int, bool) {
	if line < 1 || col < 0 {
		return 0, false
	}
	off, l := 0, 1
	for _, r := range s {
		if l == line {
			break
		}
		off++
		if r == '\n' {
			l++
		}
	}
	if l != line {
		return 0, false
	}
	return off + col, true
}

// inlineMap maps each character of a one-line scalar to its place in the file, or returns nil if the scalar spans
// lines. Quotes are skipped, escapes (” and \x) count as one character placed at their start.
func (ps *parser) inlineMap(v *yaml.Node) []srcPos {
	if v.Line < 1 || v.Line > len(ps.lines) {
		return nil
	}
	src := []rune(ps.lines[v.Line-1])
	i := v.Column - 1 // the scalar's first character (its opening quote, if quoted)
	if v.Style != 0 {
		i++
	}
	var m []srcPos
	n := utf8.RuneCountInString(v.Value)
	for len(m) < n {
		if i >= len(src) {
			return nil // continued on the next line
		}
		m = append(m, srcPos{v.Line, i + 1})
		switch {
		case v.Style == yaml.SingleQuotedStyle && src[i] == '\'':
			i += 2
		case v.Style == yaml.DoubleQuotedStyle && src[i] == '\\':
			i += 1 + escapeLen(src, i+1)
		default:
			i++
		}
	}
	return m
}

// escapeLen is the length of the escape after a backslash at src[i-1] in a double-quoted scalar.
func escapeLen(src []rune, i int) int {
	if i >= len(src) {
		return 0
	}
	switch src[i] {
	case 'x':
		return 3
	case 'u':
		return 5
	case 'U':
		return 9
	}
	return 1
}

// literalMap maps each character of a literal block scalar (|) to its place in the file: its lines follow the line of
// the indicator, indented by the indentation of the first non-blank one.
func (ps *parser) literalMap(v *yaml.Node) []srcPos {
	indent := -1
	var m []srcPos
	n := utf8.RuneCountInString(v.Value)
	for l := v.Line + 1; l <= len(ps.lines) && len(m) < n; l++ {
		src := []rune(ps.lines[l-1])
		if indent < 0 {
			if isBlank(src) {
				m = append(m, srcPos{l, len(src) + 1})
				continue
			}
			for indent = 0; indent < len(src) && src[indent] == ' '; indent++ {
			}
		}
		for i := indent; i < len(src); i++ {
			m = append(m, srcPos{l, i + 1})
		}
		m = append(m, srcPos{l, max(len(src), indent) + 1}) // the line break
	}
	return m
}

func isBlank(src []rune) bool {
	for _, r := range src {
		if r != ' ' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}
