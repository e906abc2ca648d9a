package authz

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMembers(t *testing.T) {
	t.Parallel()
	keys := []string{"name", "uri"}
	for _, tc := range []struct {
		in         string
		name, uri  string
		err        error
		closingEnd bool
	}{
		{in: `{"name":"a","uri":"b"}`, name: `"a"`, uri: `"b"`},
		{in: ` { "x" : {"name":"no"} , "name" : "a" } `, name: `"a"`},
		{in: `{"n\u0061me":"a"}`, name: `"a"`},
		{in: `{"name":"a","name":"b"}`, err: errAmbiguous},
		{in: `{"name":"a","Name":"b"}`, err: errAmbiguous},
		{in: `{"NAME":"b"}`, err: errAmbiguous},
		{in: `{"nam\u0065":"a","name":"b"}`, err: errAmbiguous},
		{in: `{"urı":"b"}`},
		{in: `["name"]`, err: errNotObject},
		{in: `"name"`, err: errNotObject},
		{in: `{}`},
	} {
		var v [2]span
		_, err := members([]byte(tc.in), keys, v[:])
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && (string(v[0].in([]byte(tc.in))) != tc.name || string(v[1].in([]byte(tc.in))) != tc.uri) {
			t.Errorf("%s: got %q %q, want %q %q", tc.in, v[0].in([]byte(tc.in)), v[1].in([]byte(tc.in)), tc.name, tc.uri)
		}
	}
}

// FuzzMembersAgreeWithDecoders: whenever members reads a name without refusing the object, Go's decoder (which
// matches member names without regard to case, and keeps the last) and an exact, last-wins reader (JavaScript's)
// read the same name. This is what keeps the gateway from deciding on one name while a peer acts on another.
func FuzzMembersAgreeWithDecoders(f *testing.F) {
	for _, s := range []string{`{"name":"a"}`, `{"name":"a","Name":"b"}`, `{"name":"a","name":"b"}`, `{"na\u006de":"a"}`,
		`{"\u212aey":1,"name":"x"}`, `{"nameſ":1}`, `{"params":{"name":"x"},"name":"y"}`, `{"ṅame":"x"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		if !json.Valid(b) {
			return
		}
		var v [1]span
		if _, err := members(b, []string{"name"}, v[:]); err != nil {
			return
		}
		ours, isString := v[0].str(b)
		var goStruct struct {
			Name *string `json:"name"`
		}
		var exact map[string]json.RawMessage
		if json.Unmarshal(b, &goStruct) != nil || json.Unmarshal(b, &exact) != nil {
			return // not an object, or name not a string: nothing decided on
		}
		var js *string
		if raw, ok := exact["name"]; ok {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				js = &s
			}
		}
		switch {
		case !isString:
			if goStruct.Name != nil || js != nil {
				t.Fatalf("%s: the gateway reads no name, Go reads %v, an exact reader %v", s, goStruct.Name, js)
			}
		case goStruct.Name == nil || *goStruct.Name != ours || js == nil || *js != ours:
			t.Fatalf("%s: the gateway reads %q, Go %v, an exact reader %v", s, ours, goStruct.Name, js)
		}
	})
}

func TestIDKey(t *testing.T) {
	t.Parallel()
	same := [][]string{{`1`, `1.0`, `1e0`, `"1"`, `10e-1`}, {`"a\u0062"`, `"ab"`}, {`9007199254740993`, `9007199254740992`}}
	for _, group := range same {
		k0, _ := idKey([]byte(group[0]))
		for _, id := range group[1:] {
			if k, _ := idKey([]byte(id)); k != k0 {
				t.Errorf("%s and %s: keys %q and %q, want one", group[0], id, k0, k)
			}
		}
	}
	for _, pair := range [][2]string{{`1`, `2`}, {`null`, `"null"`}, {`"a"`, `"A"`}} {
		a, _ := idKey([]byte(pair[0]))
		b, _ := idKey([]byte(pair[1]))
		if a == b {
			t.Errorf("%s and %s share key %q", pair[0], pair[1], a)
		}
	}
	if _, ok := idKey(nil); ok {
		t.Error("a missing id has a key")
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\x00\x1f\n\r\t", "\u2028é", "\xff\xfe", "</script>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q: %s is not a JSON string: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if utf8.ValidString(s) && got != s || got != want && !utf8.ValidString(s) && strings.Count(got, "\ufffd") < strings.Count(want, "\ufffd") {
			t.Fatalf("%q: round trip gives %q", s, got)
		}
	})
}
