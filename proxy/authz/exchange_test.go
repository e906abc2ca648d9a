package authz

import (
	"strings"
	"testing"
)

func call(id, tool string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"q":"the secret argument"}}}`
}

// TestParseMessages: what a POST names, per method (policy.md §1.1).
func TestParseMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body, kind, name string
		names            []string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{}}}`, "tool", "t", nil},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, "tool", "", nil},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["t"]}`, "tool", "", nil},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}`, "prompt", "p", nil},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"u"}}`, "resource", "u", nil},
		{`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"t/{x}"}}}`, "resource", "t/{x}", nil},
		{`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/other","name":"x"}}}`, "prompt", "\x00ref/other", nil},
		{`{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["a","b"]}}}`, "resource", "", []string{"a", "b"}},
		{`{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true}}}`, "", "", nil},
		{`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"name":"x"}}`, "", "", nil},
		{`{"jsonrpc":"2.0","id":1,"result":{}}`, "", "", nil},
	} {
		msgs, _, err := parseMessages(nil, []byte(tc.body))
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		m := msgs[0]
		if string(m.kind) != tc.kind || m.name != tc.name || strings.Join(m.names, ",") != strings.Join(tc.names, ",") {
			t.Errorf("%s: got %q %q %q", tc.body, m.kind, m.name, m.names)
		}
	}
}
