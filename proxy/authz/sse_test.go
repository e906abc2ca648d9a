package authz

import (
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mcp-gateway/gateway/proxy/policy/policytest"
)

// listExchange is the exchange of a POST with body as Authorize leaves it, for a caller with no permissions.
func listExchange(t testing.TB, body, version string) *Exchange {
	t.Helper()
	msgs, batch, err := parseMessages(nil, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ex := &Exchange{policy: policytest.Policy(), facts: policytest.Facts("", "openid"), version: version, body: []byte(body),
		msgs: msgs, batch: batch, decided: true}
	ex.keyIDs()
	return ex
}

// filterSSE passes stream through an sseFilter, reading from it in pieces of one byte when slow.
func filterSSE(t testing.TB, ex *Exchange, stream string, slow bool) string {
	t.Helper()
	var src io.Reader = strings.NewReader(stream)
	if slow {
		src = iotest.OneByteReader(src)
	}
	out, err := io.ReadAll(newSSEFilter(io.NopCloser(src), ex))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// goSDKData reads the data of each event as go-sdk's client does (mcp/event.go): lines end at LF, values are trimmed
// of Unicode white space, a last event without its blank line counts.
func goSDKData(s string) []string {
	var out []string
	var data []string
	has := false
	flush := func() {
		if has {
			out = append(out, strings.Join(data, "\n"))
		}
		data, has = nil, false
	}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && k == "data" {
			data, has = append(data, strings.TrimSpace(v)), true
		}
	}
	flush()
	return out
}

// eventsourceData reads the data of each event as eventsource-parser (the TypeScript SDK's) does: lines end at CR,
// LF or CRLF, one leading space is dropped from a value, a last event without its blank line is dropped.
func eventsourceData(s string) []string {
	var out []string
	var data []string
	has := false
	for _, line := range regexp.MustCompile(`\r\n|\r|\n`).Split(s, -1) {
		if line == "" {
			if has {
				out = append(out, strings.Join(data, "\n"))
			}
			data, has = nil, false
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		if k == "data" {
			data, has = append(data, strings.TrimPrefix(v, " ")), true
		}
	}
	return out
}

// hidden are the tools testPolicy hides from a caller without permissions.
var hidden = []string{"secret-tool", "get-workos-user", "admin-delete"}

// leaks returns the hidden tools a client reading out with either reader would see in a list result: by an exact
// reading of the item's name (JavaScript's), or by Go's (names in any case, the last of duplicates).
func leaks(out string) []string {
	var found []string
	for _, data := range append(goSDKData(out), eventsourceData(out)...) {
		var msgs []map[string]json.RawMessage
		var one map[string]json.RawMessage
		if json.Unmarshal([]byte(data), &one) == nil {
			msgs = append(msgs, one)
		} else if json.Unmarshal([]byte(data), &msgs) != nil {
			continue
		}
		for _, m := range msgs {
			var exact struct{ Tools []map[string]any }
			var goReader struct {
				Tools []struct{ Name string }
			}
			json.Unmarshal(m["result"], &exact)
			json.Unmarshal(m["result"], &goReader)
			for _, h := range hidden {
				for _, item := range exact.Tools {
					if item["name"] == h {
						found = append(found, h)
					}
				}
				for _, item := range goReader.Tools {
					if item.Name == h {
						found = append(found, h)
					}
				}
			}
		}
	}
	return found
}

const (
	listReq      = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	listResult   = `{"tools":[{"name":"get-user-info","inputSchema":{"type":"object"}},{"name":"secret-tool"},{"name":"get-workos-user"},{"name":"admin-delete"},{"name":"billing-report"}],"nextCursor":"c2","_meta":{"k":[1, 2]}}`
	listResp     = `{"jsonrpc":"2.0","id":1,"result":` + listResult + `}`
	listFiltered = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get-user-info","inputSchema":{"type":"object"}},{"name":"billing-report"}],"nextCursor":"c2","_meta":{"k":[1,2]}}}`
	notif        = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`
	listError    = `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Internal error: the gateway could not filter the list"}}`
)

// TestSSEListFilter runs event streams through the filter, each whole and one byte at a time, and reads what the
// client gets with go-sdk's reader and with eventsource-parser's: no hidden tool ever, and the response the client
// waits for always. Cases named by an issue are ToolHive's event-stream bugs (policy.md §4).
func TestSSEListFilter(t *testing.T) {
	t.Parallel()
	hiddenOnly := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret-tool"},{"name":"get-workos-user"}]}}`
	for _, tc := range []struct {
		name, stream string
		want         []string // in the output, in order
	}{
		{"one event", "event: message\nid: e1\ndata: " + listResp + "\n\n", []string{"event: message\nid: e1\ndata: " + listFiltered + "\n\n"}},
		{"#5257 a notification before the response", "event: message\ndata: " + notif + "\n\nevent: message\ndata: " + listResp + "\n\n",
			[]string{"data: " + notif + "\n\n", "data: " + listFiltered + "\n\n"}},
		{"#5257 a notification and the response as data lines of one event", "data: " + notif + "\ndata: " + listResp + "\n\n", []string{"data: " + listError}},
		{"#4044 Content-Length and events in pieces", "data: " + listResp[:17] + "\ndata: " + listResp[17:] + "\n\n", []string{"data: " + listFiltered + "\n\n"}},
		{"#6088 leading vertical tab", "data: \v" + listResp + "\n\n", []string{"data: " + listFiltered + "\n\n"}},
		{"#6088 leading form feed", "data:\f" + listResp + "\n\n", []string{"data: " + listFiltered + "\n\n"}},
		{"#6088 leading no-break space", "data: \u00a0" + listResp + "\u00a0\n\n", []string{"data: " + listFiltered + "\n\n"}},
		{"#6088 byte order mark", "\ufeffdata: " + listResp + "\n\n", []string{"data: " + listFiltered + "\n\n"}},
		{"#6037 every item hidden", "data: " + hiddenOnly + "\n\n", []string{`data: {"jsonrpc":"2.0","id":1,"result":{"tools":[]}}` + "\n\n"}},
		{"lone CR line ends", "data: " + listResp + "\r\r", []string{"data: " + listFiltered + "\n\n"}},
		{"CRLF line ends", "data: " + listResp + "\r\n\r\n", []string{"data: " + listFiltered + "\n\n"}},
		{"no space and no blank line at the end", "data:" + listResp, []string{"data: " + listFiltered + "\n\n"}},
		{"an array for a single request", "data: [" + listResp + "]\n\n", []string{"data: [" + listError + "]"}},
		{"result and error", `data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret-tool"}]},"error":{"code":1,"message":"x"}}` + "\n\n", []string{"data: " + listError}},
		{"result twice in another case", `data: {"jsonrpc":"2.0","id":1,"result":{"tools":[]},"Result":{"tools":[{"name":"secret-tool"}]}}` + "\n\n", []string{"data: " + listError}},
		{"id twice", `data: {"jsonrpc":"2.0","id":2,"id":1,"result":{"tools":[{"name":"secret-tool"}]}}` + "\n\n", []string{"data: " + listError}},
		{"item name twice", `data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get-user-info","Name":"secret-tool"}]}}` + "\n\n",
			[]string{`data: {"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`}},
		{"id 1.0 is id 1", "data: " + strings.Replace(listResp, `"id":1`, `"id":1.0`, 1) + "\n\n", []string{`"tools":[{"name":"get-user-info"`}},
		{"not JSON before the response", "data: {not json\n\ndata: " + listResp + "\n\n", []string{"data: " + listError + "\n\n"}},
		{"priming event and comment pass", "id: p1\ndata: \n\n: keep-alive\ndata: " + listResp + "\n\n", []string{"id: p1\ndata: \n\n: keep-alive\n", "data: " + listFiltered}},
		{"a response to another id is dropped", `data: {"jsonrpc":"2.0","id":99,"result":{"tools":[{"name":"secret-tool"}]}}` + "\n\ndata: " + listResp + "\n\n", []string{"data: " + listFiltered}},
		{"a second response is dropped", "data: " + listResp + "\n\ndata: " + listResp + "\n\n", []string{"data: " + listFiltered + "\n\n"}},
		{"a field name with a space is no data", "data :" + listResp + "\n\n", nil},
		{"a field name in capitals is no data", "Data: " + listResp + "\n\n", nil},
		{"a method with a result", `data: {"jsonrpc":"2.0","id":1,"method":"ping","result":{"tools":[{"name":"secret-tool"}]}}` + "\n\n", []string{"data: " + listError}},
		{"an error for the list passes", `data: {"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no tools"}}` + "\n\n", []string{`"message":"no tools"`}},
	} {
		for _, slow := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{true: " (one byte at a time)"}[slow], func(t *testing.T) {
				out := filterSSE(t, listExchange(t, listReq, "2025-06-18"), tc.stream, slow)
				if l := leaks(out); len(l) > 0 {
					t.Fatalf("hidden tools %q reach the client:\n%s", l, out)
				}
				at := 0
				for _, w := range tc.want {
					i := strings.Index(out[at:], w)
					if i < 0 {
						t.Fatalf("output lacks %q (after byte %d):\n%q", w, at, out)
					}
					at += i + len(w)
				}
			})
		}
	}
}

// FuzzSSEFilter: whatever the upstream streams, a client reading the filtered stream with go-sdk's reader or
// eventsource-parser's never sees a hidden tool in a result.
func FuzzSSEFilter(f *testing.F) {
	for _, s := range []string{"data: " + listResp + "\n\n", "data: " + notif + "\n\ndata:" + listResp + "\r\r",
		"data: \v" + listResp, `data: {"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[{"name":"secret-tool"}]}}` + "\n\n",
		"data: [" + listResp + "," + listResp + "]\n\n", "data: " + listResp[:40] + "\ndata: " + listResp[40:] + "\n\n"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, stream string, slow bool) {
		out := filterSSE(t, listExchange(t, listReq, ""), stream, slow)
		if l := leaks(out); len(l) > 0 {
			t.Fatalf("hidden tools %q reach the client:\n%q\nfrom\n%q", l, out, stream)
		}
	})
}

// TestSSEPassesEventsAtOnce: a notification reaches the client before the response it precedes is written.
func TestSSEPassesEventsAtOnce(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	f := newSSEFilter(pr, listExchange(t, listReq, ""))
	go io.WriteString(pw, "data: "+notif+"\n\n")
	buf := make([]byte, 1024)
	var got []byte
	for !bytes.Contains(got, []byte("\n\n")) {
		n, err := f.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if want := "data: " + notif + "\n\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	go func() { io.WriteString(pw, "data: "+listResp+"\n\n"); pw.Close() }()
	rest, err := io.ReadAll(f)
	if err != nil || !strings.Contains(string(rest), listFiltered) {
		t.Fatalf("then: got %q, %v", rest, err)
	}
}

// TestSSEEventLimit: an event over the limit ends the stream, and the pending list gets an error.
func TestSSEEventLimit(t *testing.T) {
	t.Parallel()
	big := "data: " + strings.Repeat("x", maxListBody) + "\n\ndata: " + listResp + "\n\n"
	out := filterSSE(t, listExchange(t, listReq, ""), big, false)
	if out != "event: message\ndata: "+listError+"\n\n" {
		t.Fatalf("got %.200q", out)
	}
}

// TestSSEBatchAnswersFirst: the gateway's answers to a batch's denied requests come first, as events of their own.
func TestSSEBatchAnswersFirst(t *testing.T) {
	t.Parallel()
	ex := listExchange(t, `[`+listReq+`,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secret-tool"}}]`, "")
	ex.msgs[1].dropped = true
	ex.answers = [][]byte{ex.denial(&ex.msgs[1])}
	out := filterSSE(t, ex, "data: ["+listResp+"]\n\n", false)
	want := "event: message\ndata: " + `{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"Unknown tool: secret-tool"}}` + "\n\ndata: [" + listFiltered + "]\n\n"
	if out != want {
		t.Fatalf("got %q\nwant %q", out, want)
	}
}

// TestListCacheScope: a 2026-07-28 list result is private to the caller once listFiltered.
func TestListCacheScope(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ version, result, want string }{
		{"2026-07-28", `{"tools":[],"resultType":"complete","ttlMs":60000,"cacheScope":"public"}`, `{"tools":[],"resultType":"complete","ttlMs":60000,"cacheScope":"private"}`},
		{"2026-07-28", `{"tools":[]}`, `{"tools":[],"cacheScope":"private"}`},
		{"2025-11-25", `{"tools":[]}`, `{"tools":[]}`},
	} {
		ex := listExchange(t, listReq, tc.version)
		var in, out int
		got, ok := ex.filterList([]byte(tc.result), listKinds["tools/list"], &in, &out)
		if !ok || string(got) != tc.want {
			t.Errorf("%s %s: got %s, %v; want %s", tc.version, tc.result, got, ok, tc.want)
		}
	}
}

// TestListKinds: each list method's items are listFiltered on their own naming member, pages alone (an empty page with a
// cursor stays one).
func TestListKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ method, result, want string }{
		{"prompts/list", `{"prompts":[{"name":"greet"},{"name":"hidden"}]}`, `{"prompts":[{"name":"greet"}]}`},
		{"resources/list", `{"resources":[{"uri":"file:///public/a","name":"a"},{"uri":"file:///secret/b","name":"file:///public/b"}]}`, `{"resources":[{"uri":"file:///public/a","name":"a"}]}`},
		{"resources/templates/list", `{"resourceTemplates":[{"uriTemplate":"file:///public/*"},{"uriTemplate":"file:///{path}"}],"nextCursor":"n"}`, `{"resourceTemplates":[{"uriTemplate":"file:///public/*"}],"nextCursor":"n"}`},
		{"tools/list", `{"tools":[{"name":"secret-tool"}],"nextCursor":"next"}`, `{"tools":[],"nextCursor":"next"}`},
	} {
		ex := listExchange(t, `{"jsonrpc":"2.0","id":1,"method":"`+tc.method+`"}`, "")
		var in, out int
		got, ok := ex.filterList([]byte(tc.result), listKinds[tc.method], &in, &out)
		if !ok || string(got) != tc.want {
			t.Errorf("%s: got %s, %v; want %s", tc.method, got, ok, tc.want)
		}
	}
}
