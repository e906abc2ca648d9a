package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file reads JSON-RPC messages the way every peer would, or not at all. The gateway decides on what it reads
// and the upstream (or, for responses, the client) acts on what it reads, so the two must never differ: a Go peer
// matches member names without regard to case and keeps the last of duplicates, a JavaScript peer matches them
// exactly. An object whose members of interest are duplicated, or spelt in another case, is therefore refused
// (errAmbiguous) rather than read one way. Callers validate the whole text first (json.Valid): the scanners assume
// valid JSON.

// errAmbiguous refuses an object with a member of interest twice, or spelt in another letter case.
var errAmbiguous = errors.New("a member appears twice, or in another letter case")

// errNotObject refuses a value that is not a JSON object where one is required.
var errNotObject = errors.New("not a JSON object")

// span is a value's place in its text: [start, end). The zero span is no value.
type span struct{ start, end int }

func (s span) ok() bool                    { return s.end > s.start }
func (s span) in(b []byte) []byte          { return b[s.start:s.end] }
func (s span) isString(b []byte) bool      { return s.ok() && b[s.start] == '"' }
func (s span) isArray(b []byte) bool       { return s.ok() && b[s.start] == '[' }
func (s span) isObject(b []byte) bool      { return s.ok() && b[s.start] == '{' }
func (s span) str(b []byte) (string, bool) { return decodeString(s, b) }

// skipSpace returns the index of the first byte at or after i that is not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string that starts at b[i] ('"'). A byte loop: member names and values
// in MCP messages are short, where a call to bytes.IndexByte costs more than it saves.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the value that starts at b[i] (not white space).
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) { // a number or a literal
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// members finds the members named keys of the object that is b (with white space around), and puts their values'
// spans in vals (len(vals) == len(keys)). It returns the index of the object's closing brace, for a caller that adds
// members. A key present twice, or present in another letter case, is errAmbiguous.
func members(b []byte, keys []string, vals []span) (closing int, err error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0, errNotObject
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != '}' {
		kEnd := skipString(b, i)
		key := b[i+1 : kEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			k, _ := decodeString(span{i, kEnd}, b)
			key = []byte(k)
		}
		i = skipSpace(b, kEnd)
		i = skipSpace(b, i+1) // ':'
		vEnd := skipValue(b, i)
		for j, k := range keys {
			switch {
			case string(key) == k:
				if vals[j].ok() {
					return 0, errAmbiguous
				}
				vals[j] = span{i, vEnd}
			case equalFold(key, k):
				return 0, errAmbiguous
			}
		}
		i = skipSpace(b, vEnd)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return i, nil
}

// equalFold is strings.EqualFold(string(a), b) without a copy of a when it is ASCII.
func equalFold(a []byte, b string) bool {
	for _, c := range a {
		if c >= utf8.RuneSelf {
			return strings.EqualFold(string(a), b)
		}
	}
	if len(a) != len(b) {
		return false
	}
	for i, c := range a {
		if d := b[i]; c != d && (c|0x20 != d|0x20 || c|0x20 < 'a' || c|0x20 > 'z') {
			return false
		}
	}
	return true
}

// elements calls f with the span of each element of the array that is b (with white space around), until f returns
// false. It reports false when b is not an array.
func elements(b []byte, f func(span) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != ']' {
		end := skipValue(b, i)
		if !f(span{i, end}) {
			return true
		}
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return true
}

// decodeString returns the string value at s in b, and false when it is not a string.
func decodeString(s span, b []byte) (string, bool) {
	if !s.isString(b) {
		return "", false
	}
	raw := b[s.start+1 : s.end-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw), true
	}
	var v string
	if json.Unmarshal(s.in(b), &v) != nil {
		return "", false
	}
	return v, true
}

// idKey returns the key under which a JSON-RPC id matches: the text of a string, the shortest form of a number as a
// JavaScript peer reads it (so 1, 1.0 and 1e0 are one id, as are integers beyond 2^53 that a JavaScript client cannot
// tell apart). Strings and numbers of the same text share a key too: when in doubt, two ids match, and the response
// is filtered. ok is false for a missing id.
func idKey(raw []byte) (key string, ok bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		s, _ := decodeString(span{0, len(raw)}, raw)
		return s, true
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return string(raw), true
		}
		return strconv.FormatFloat(f, 'g', -1, 64), true
	}
	return "\x00" + string(raw), true // null, or an invalid id: matches only itself
}

// rpcError is a JSON-RPC error response with id (raw; nil writes null).
func rpcError(id []byte, code int, message string, data map[string]string) []byte {
	var raw []byte
	if len(data) > 0 {
		raw, _ = json.Marshal(data)
	}
	return rpcErrorRaw(id, code, message, raw)
}

// rpcErrorRaw is rpcError with data as raw JSON (nil: none).
func rpcErrorRaw(id []byte, code int, message string, data []byte) []byte {
	b := make([]byte, 0, 96+len(message))
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	if len(id) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, id...)
	}
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	if len(data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	}
	return append(b, "}}"...)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
