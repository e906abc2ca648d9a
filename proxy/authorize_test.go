package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-gateway/gateway/proxy/config"

	"github.com/mcp-gateway/gateway/proxy/policy/policytest"
)

// policyHarness is a gateway with a policy file and an audit log in front of an upstream that records the bodies it
// gets.
type policyHarness struct {
	*harness
	file  string
	audit *logBuffer

	mu     sync.Mutex
	bodies []string // what reached the upstream
}

func newPolicyHarness(t *testing.T, policyYAML string, env map[string]string, opts ...func(*Options)) *policyHarness {
	t.Helper()
	ph := &policyHarness{file: filepath.Join(t.TempDir(), "policy.yaml"), audit: &logBuffer{}}
	if err := os.WriteFile(ph.file, []byte(policyYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{"GATEWAY_POLICY_FILE": ph.file}
	for k, v := range env {
		m[k] = v
	}
	ph.harness = newHarnessWith(t, m, true, func(o *Options) {
		o.AuditOut = ph.audit
		for _, f := range opts {
			f(o)
		}
	})
	t.Cleanup(ph.gw.closeAudit)
	ph.answer(nil)
	return ph
}

// answer makes the upstream record each body and answer with f (nil: a JSON result echoing the id).
func (ph *policyHarness) answer(f func(w http.ResponseWriter, body string)) {
	ph.up.mu.Lock()
	defer ph.up.mu.Unlock()
	ph.up.handler = func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ph.mu.Lock()
		ph.bodies = append(ph.bodies, string(b))
		ph.mu.Unlock()
		if f != nil {
			f(w, string(b))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`)
	}
}

func (ph *policyHarness) upstreamBodies() []string {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	return append([]string(nil), ph.bodies...)
}

// post sends body to the MCP endpoint as a user with perms and scope.
func (ph *policyHarness) post(t *testing.T, perms []string, scope string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	tok := ph.token(t, "user_1", func(c map[string]any) {
		c["permissions"], c["scope"] = perms, scope
	})
	h := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	for k, v := range hdr {
		h[k] = v
	}
	resp := ph.do(t, "POST", "/mcp", tok, h, body)
	return resp, readBody(t, resp)
}

// auditLines waits for n audit lines and returns them decoded.
func (ph *policyHarness) auditLines(t *testing.T, n int) []map[string]any {
	t.Helper()
	waitFor(t, "audit lines", func() bool { return strings.Count(ph.audit.String(), "\n") >= n })
	return ph.audit.lines(t)
}

// The messages and answers the tests of lists use, as package authz's tests do.
const (
	listReq      = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	listResult   = `{"tools":[{"name":"get-user-info","inputSchema":{"type":"object"}},{"name":"secret-tool"},{"name":"get-workos-user"},{"name":"admin-delete"},{"name":"billing-report"}],"nextCursor":"c2","_meta":{"k":[1, 2]}}`
	listResp     = `{"jsonrpc":"2.0","id":1,"result":` + listResult + `}`
	listFiltered = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get-user-info","inputSchema":{"type":"object"}},{"name":"billing-report"}],"nextCursor":"c2","_meta":{"k":[1,2]}}}`
	notif        = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`
	listError    = `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Internal error: the gateway could not filter the list"}}`
)

// maxListBody is package authz's bound on a list answer it reads.
const maxListBody = 16 << 20

// asAnswered is resp, a response with id 1, with the id of the list request in body (what reached the upstream)
// instead, as a server answers.
func asAnswered(resp, body string) string {
	var msgs []struct {
		ID     json.RawMessage
		Method string
	}
	if json.Unmarshal([]byte(body), &msgs) != nil {
		msgs = msgs[:0]
		json.Unmarshal([]byte("["+body+"]"), &msgs)
	}
	for _, m := range msgs {
		if strings.HasSuffix(m.Method, "/list") {
			return strings.Replace(resp, `"id":1`, `"id":`+string(m.ID), 1)
		}
	}
	return resp
}

func call(id, tool string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"q":"the secret argument"}}}`
}

// TestPolicyCalls: a call is forwarded as sent, denied as an unknown name without reaching the upstream (also a tool
// no rule names), or refused with a step-up challenge; never a 401, never a challenge for a denied name.
func TestPolicyCalls(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, nil)
	for _, tc := range []struct {
		name, body, scope, version string
		perms                      []string
		status                     int
		want                       string // the body, or the WWW-Authenticate for a 403
		forwarded                  bool
	}{
		{name: "granted", body: call("1", "get-user-info"), status: 200, forwarded: true},
		{name: "granted by a permission", body: call("1", "get-workos-user"), perms: []string{"users:read"}, status: 200, forwarded: true},
		{name: "without the permission", body: call(`"a-1"`, "get-workos-user"), status: 200,
			want: `{"jsonrpc":"2.0","id":"a-1","error":{"code":-32602,"message":"Unknown tool: get-workos-user"}}`},
		{name: "in no rule", body: call("7", "delete-everything"), status: 200,
			want: `{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool: delete-everything"}}`},
		{name: "needs a scope", body: call("1", "billing-report"), scope: "openid email", status: 403,
			want: `Bearer error="insufficient_scope", error_description="the access token lacks a required scope", scope="billing:manage email openid", resource_metadata="` + "PRM" + `"`},
		{name: "denied, not challenged, when more than the scope is missing", body: call("1", "admin-delete"), status: 200,
			want: `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: admin-delete"}}`},
		{name: "at 2026-07-28 a denial is a 400", version: "2026-07-28", body: call("1", "delete-everything"), status: 400,
			want: `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: delete-everything"}}`},
		{name: "prompt", body: `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"hidden"}}`, status: 200,
			want: `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown prompt: hidden"}}`},
		{name: "resource", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`, status: 200,
			want: `{"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"Resource not found","data":{"uri":"file:///etc/passwd"}}}`},
		{name: "resource at 2026-07-28", version: "2026-07-28", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`, status: 400,
			want: `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Resource not found","data":{"uri":"file:///etc/passwd"}}}`},
		{name: "public resource", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/a"}}`, status: 200, forwarded: true},
		{name: "subscribe", body: `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///secret"}}`, status: 200,
			want: `{"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"Resource not found","data":{"uri":"file:///secret"}}}`},
		{name: "completion of a hidden prompt", body: `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"hidden"},"argument":{"name":"a","value":""}}}`, status: 200,
			want: `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown prompt: hidden"}}`},
		{name: "completion of a public template", body: `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///public/x"},"argument":{"name":"a","value":""}}}`, status: 200, forwarded: true},
		{name: "a method that names nothing", body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`, status: 200, forwarded: true},
		{name: "a denied notification", body: `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"secret-tool"}}`, status: 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.version != "" {
				hdr["Mcp-Protocol-Version"] = tc.version
				var m struct {
					Method string
					Params struct{ Name, URI string }
				}
				json.Unmarshal([]byte(tc.body), &m)
				hdr["Mcp-Method"], hdr["Mcp-Name"] = m.Method, m.Params.Name+m.Params.URI
			}
			before := len(ph.upstreamBodies())
			resp, body := ph.post(t, tc.perms, tc.scope, hdr, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status: got %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			bodies := ph.upstreamBodies()
			if tc.forwarded != (len(bodies) > before) {
				t.Fatalf("forwarded: got %v, want %v", len(bodies) > before, tc.forwarded)
			}
			if tc.forwarded && bodies[len(bodies)-1] != tc.body {
				t.Errorf("upstream body: got %s, want it as sent: %s", bodies[len(bodies)-1], tc.body)
			}
			switch {
			case tc.status == 403:
				want := strings.Replace(tc.want, "PRM", ph.gw.prmURL, 1)
				if got := resp.Header.Get("WWW-Authenticate"); got != want {
					t.Errorf("challenge: got %s, want %s", got, want)
				}
			case tc.want != "" && body != tc.want:
				t.Errorf("body: got %s, want %s", body, tc.want)
			}
		})
	}
}

// TestPolicyBodyAsRead: what reaches the upstream is byte for byte what the client sent, white space and member
// order included; a body that is not JSON-RPC, or whose members are ambiguous, is a parse error and goes nowhere.
func TestPolicyBodyAsRead(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, nil)
	odd := " \n{ \"params\" : {\"arguments\":{\"b\":1,\"a\":[ ]},\"name\":\"get-user-info\"},\"method\":\"tools/call\",\"id\":1e0,\"jsonrpc\":\"2.0\"}\t"
	if resp, body := ph.post(t, nil, "", nil, odd); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := ph.upstreamBodies(); len(got) != 1 || got[0] != odd {
		t.Fatalf("upstream got %q, want %q", got, odd)
	}
	for _, body := range []string{
		``, `not json`, `{"jsonrpc":"2.0","id":1`, `[]`, `"tools/call"`, `{"id":1,"method":"tools/call"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-user-info","Name":"secret-tool"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-user-info","name":"secret-tool"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"secret-tool"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"\u006eame":"get-user-info","nAme":"secret-tool"}}`,
	} {
		resp, got := ph.post(t, nil, "", nil, body)
		if resp.StatusCode != 400 || got != `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}` {
			t.Errorf("%s: got %d %s, want 400 and the parse error", body, resp.StatusCode, got)
		}
	}
	if n := len(ph.upstreamBodies()); n != 1 {
		t.Errorf("%d bodies reached the upstream, want 1", n)
	}
}

// TestPolicyBatches: a 2025-03-26 batch is decided per message; the denied ones are answered by the gateway and
// merged with the upstream's answer to the others (JSON, or events before the upstream's); one step-up refuses the
// whole batch with every scope needed.
func TestPolicyBatches(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, nil)
	allowed, denied := call("1", "get-user-info"), call("2", "secret-tool")
	notification := `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}}`
	denial := `{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"Unknown tool: secret-tool"}}`
	ph.answer(func(w http.ResponseWriter, body string) {
		if strings.Contains(body, "sse") {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: message\ndata: [{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `[{"jsonrpc":"2.0","id":1,"result":{}}]`)
	})

	resp, body := ph.post(t, nil, "", nil, "[ "+allowed+", "+denied+",\n"+notification+"]")
	if resp.StatusCode != 200 || body != `[{"jsonrpc":"2.0","id":1,"result":{}},`+denial+`]` {
		t.Fatalf("JSON: got %d %s", resp.StatusCode, body)
	}
	if got := ph.upstreamBodies(); len(got) != 1 || got[0] != "["+allowed+","+notification+"]" {
		t.Fatalf("upstream got %q", got)
	}

	sse := strings.Replace(allowed, `"q"`, `"sse"`, 1)
	resp, body = ph.post(t, nil, "", nil, "["+sse+","+denied+"]")
	want := "event: message\ndata: " + denial + "\n\nevent: message\ndata: [{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]\n\n"
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("event stream: got %d %q, want %q", resp.StatusCode, body, want)
	}

	resp, body = ph.post(t, nil, "", nil, "["+denied+","+call("3", "nothing")+"]")
	if resp.StatusCode != 200 || body != "["+denial+`,{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"Unknown tool: nothing"}}]` {
		t.Fatalf("all denied: got %d %s", resp.StatusCode, body)
	}

	resp, body = ph.post(t, nil, "openid", nil, "["+allowed+","+call("4", "billing-x")+","+denied+","+call("5", "billing-y")+"]")
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="billing:manage openid"`) {
		t.Fatalf("step-up: got %d %s %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	if n := len(ph.upstreamBodies()); n != 2 {
		t.Fatalf("%d bodies reached the upstream, want 2", n)
	}
}

// TestPolicyHeaders: at 2026-07-28, Mcp-Method and Mcp-Name must be there and agree with the body; at any version,
// one that is there must agree (the relay routes on Mcp-Method). The decision is the body's.
func TestPolicyHeaders(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, nil)
	const v = "2026-07-28"
	body := call("1", "get-user-info")
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
		msg    string
	}{
		{"agree", map[string]string{"Mcp-Protocol-Version": v, "Mcp-Method": "tools/call", "Mcp-Name": "get-user-info"}, 200, ""},
		{"base64", map[string]string{"Mcp-Protocol-Version": v, "Mcp-Method": "tools/call", "Mcp-Name": "=?base64?Z2V0LXVzZXItaW5mbw==?="}, 200, ""},
		{"name differs", map[string]string{"Mcp-Protocol-Version": v, "Mcp-Method": "tools/call", "Mcp-Name": "secret-tool"}, 400,
			"Header mismatch: Mcp-Name header value 'secret-tool' does not match body value 'get-user-info'"},
		{"method missing", map[string]string{"Mcp-Protocol-Version": v, "Mcp-Name": "get-user-info"}, 400, "Header mismatch: missing required Mcp-Method header"},
		{"name missing", map[string]string{"Mcp-Protocol-Version": v, "Mcp-Method": "tools/call"}, 400, "Header mismatch: missing required Mcp-Name header"},
		{"bad base64", map[string]string{"Mcp-Protocol-Version": v, "Mcp-Method": "tools/call", "Mcp-Name": "=?base64?%%?="}, 400, "Header mismatch: invalid Mcp-Name header value"},
		{"older version without headers", map[string]string{"Mcp-Protocol-Version": "2025-11-25"}, 200, ""},
		{"older version, method differs", map[string]string{"Mcp-Method": "subscriptions/listen"}, 400,
			"Header mismatch: Mcp-Method header value 'subscriptions/listen' does not match body value 'tools/call'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(ph.upstreamBodies())
			resp, got := ph.post(t, nil, "", tc.hdr, body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status: got %d, want %d (%s)", resp.StatusCode, tc.status, got)
			}
			if tc.status == 400 {
				var m struct {
					ID    int
					Error struct {
						Code    int
						Message string
					}
				}
				if json.Unmarshal([]byte(got), &m) != nil || m.ID != 1 || m.Error.Code != -32020 || m.Error.Message != tc.msg {
					t.Errorf("body: got %s, want -32020 %q", got, tc.msg)
				}
				if len(ph.upstreamBodies()) != before {
					t.Error("the request reached the upstream")
				}
			}
		})
	}
	// The decision is the body's, whatever the header says.
	resp, got := ph.post(t, nil, "", map[string]string{"Mcp-Protocol-Version": v, "Mcp-Method": "tools/call", "Mcp-Name": "secret-tool"}, call("1", "secret-tool"))
	if resp.StatusCode != 400 || !strings.Contains(got, "Unknown tool: secret-tool") {
		t.Errorf("denied call with agreeing headers: got %d %s", resp.StatusCode, got)
	}
}

// TestPolicyListJSON: a JSON list answer loses the items the caller may not use (a tool no rule names too), keeps
// those a missing scope holds back, and keeps its other members as they were.
func TestPolicyListJSON(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, nil)
	ph.answer(func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000") // stale once filtered: the gateway sets its own
		resp := asAnswered(listResp, body)
		io.WriteString(w, resp+strings.Repeat(" ", 1000-len(resp)))
	})
	resp, body := ph.post(t, nil, "openid", map[string]string{"Accept-Encoding": "gzip"}, listReq)
	want := strings.Replace(listFiltered, "[1,2]", "[1, 2]", 1) // kept as the upstream wrote it
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("got %d %s\nwant %s", resp.StatusCode, body, want)
	}
	if resp.ContentLength != int64(len(want)) {
		t.Errorf("Content-Length: got %d, want %d", resp.ContentLength, len(want))
	}
	if h := ph.up.last(t).Header.Get("Accept-Encoding"); h != "" {
		t.Errorf("the upstream was offered %q: a list answer must come uncompressed", h)
	}
	_, body = ph.post(t, []string{"users:read"}, "openid", nil, listReq)
	if !strings.Contains(body, `"get-workos-user"`) || strings.Contains(body, "secret-tool") {
		t.Errorf("with users:read: got %s", body)
	}

	ph.answer(func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, asAnswered(`{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"secret-tool"}}}`, body))
	})
	if _, body := ph.post(t, nil, "", nil, listReq); body != listError {
		t.Errorf("malformed list: got %s, want %s", body, listError)
	}
	ph.answer(func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret-tool","description":"`+strings.Repeat("x", maxListBody)+`"}]}}`)
	})
	if _, body := ph.post(t, nil, "", nil, listReq); body != listError {
		t.Errorf("list over the limit: got %.200s, want %s", body, listError)
	}
	ph.answer(func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		io.WriteString(w, "\x1f\x8b compressed secret-tool")
	})
	if _, body := ph.post(t, nil, "", nil, listReq); body != listError {
		t.Errorf("compressed list: got %s, want %s", body, listError)
	}
}

// TestPolicyListEventStream: an event-stream list answer is filtered as it streams (a notification first passes at
// once), with a stale Content-Length dropped.
func TestPolicyListEventStream(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, nil)
	release := make(chan struct{})
	ph.answer(func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message\ndata: "+notif+"\n\n")
		w.(http.Flusher).Flush()
		<-release
		resp := asAnswered(listResp, body)
		for _, piece := range []string{"event: message\nda", "ta: " + resp[:30], resp[30:] + "\n", "\n"} {
			io.WriteString(w, piece)
			w.(http.Flusher).Flush()
		}
	})
	tok := ph.token(t, "user_1")
	resp := ph.do(t, "POST", "/mcp", tok, map[string]string{"Accept": "application/json, text/event-stream"}, listReq)
	buf := make([]byte, 4096)
	n, err := io.ReadAtLeast(resp.Body, buf, len("event: message\ndata: "+notif+"\n\n"))
	if err != nil || string(buf[:n]) != "event: message\ndata: "+notif+"\n\n" {
		t.Fatalf("the notification before the list: got %q, %v", buf[:n], err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if want := "event: message\ndata: " + listFiltered + "\n\n"; string(rest) != want {
		t.Fatalf("got %q\nwant %q", rest, want)
	}
}

// TestPolicyAudit: one event per message, with the decision as made and the rule, and never the arguments (their
// hash when asked for); a decisions metric by outcome and rule.
func TestPolicyAudit(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, map[string]string{"GATEWAY_AUDIT_ARGUMENTS": "hash"})
	body := "[" + call("1", "get-user-info") + "," + call(`"x"`, "secret-tool") + "," + listReq[:len(listReq)-1] + `,"id":3}]`
	body = strings.Replace(body, `"id":1,"method":"tools/list","id":3`, `"id":3,"method":"tools/list"`, 1)
	ph.answer(func(w http.ResponseWriter, b string) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `[{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"the secret result"}]}},`+asAnswered(listResp, b)+`]`)
	})
	resp, got := ph.post(t, nil, "openid", nil, body)
	if resp.StatusCode != 200 || !strings.Contains(got, "Unknown tool: secret-tool") {
		t.Fatalf("got %d %s", resp.StatusCode, got)
	}
	ph.post(t, nil, "openid", nil, call("4", "billing-report"))
	lines := ph.auditLines(t, 4)
	if strings.Contains(ph.audit.String(), "secret argument") || strings.Contains(ph.audit.String(), "secret result") {
		t.Fatalf("the audit log holds arguments or results:\n%s", ph.audit.String())
	}
	sum := sha256.Sum256([]byte(`{"q":"the secret argument"}`))
	for i, want := range []map[string]any{
		{"mcp.method.name": "tools/call", "jsonrpc.request.id": "1", "gen_ai.tool.name": "get-user-info", "decision": "allow",
			"security_rule.name": "everyone-reads-themselves", "http.response.status_code": 200.0, "arguments_sha256": hex.EncodeToString(sum[:]),
			"enduser.id": "user_1", "client_id": "client_123", "org_id": "org_1", "iss": ph.is.URL},
		{"jsonrpc.request.id": "x", "gen_ai.tool.name": "secret-tool", "decision": "deny", "security_rule.name": "default",
			"rpc.response.status_code": -32602.0, "http.response.status_code": nil},
		{"mcp.method.name": "tools/list", "decision": "allow", "items_in": 5.0, "items_out": 2.0, "security_rule.name": nil},
		{"gen_ai.tool.name": "billing-report", "decision": "step_up", "security_rule.name": "billing", "scopes_required": []any{"billing:manage", "openid"}},
	} {
		for k, v := range want {
			if got := lines[i][k]; !jsonEqual(got, v) {
				t.Errorf("event %d %s: got %v, want %v", i, k, got, v)
			}
		}
		if lines[i]["request_id"] == "" || lines[i]["duration_ms"] == nil || lines[i]["time"] == nil {
			t.Errorf("event %d lacks request_id, time or duration_ms: %v", i, lines[i])
		}
	}
	for _, c := range []struct {
		outcome, rule string
		want          float64
	}{{"allow", "everyone-reads-themselves", 1}, {"deny", "default", 1}, {"step_up", "billing", 1}, {"allow", "prompts", 0}} {
		if got := testutil.ToFloat64(ph.gw.metrics.PolicyDecisions.WithLabelValues(c.outcome, c.rule)); got != c.want {
			t.Errorf("decisions{%s,%s}: got %v, want %v", c.outcome, c.rule, got, c.want)
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestPolicyReload: a good file is in force for the next request; a broken one leaves the previous in force and says
// why; Run notices a changed file by itself.
func TestPolicyReload(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, nil)
	if _, body := ph.post(t, nil, "", nil, call("1", "secret-tool")); !strings.Contains(body, "Unknown tool") {
		t.Fatalf("before: %s", body)
	}
	os.WriteFile(ph.file, []byte("rules:\n  - name: everything\n    tools: [\"*\"]\n"), 0o600)
	if err := ph.gw.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}
	if resp, body := ph.post(t, nil, "", nil, call("1", "secret-tool")); resp.StatusCode != 200 || strings.Contains(body, "Unknown tool") {
		t.Fatalf("after the reload: %d %s", resp.StatusCode, body)
	}
	os.WriteFile(ph.file, []byte("rules:\n  - name: broken\n    tools: [\"*\"]\n    when: 'claims.email.endsWith('\n"), 0o600)
	if err := ph.gw.ReloadPolicy(); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("broken file: got %v", err)
	}
	if _, body := ph.post(t, nil, "", nil, call("1", "secret-tool")); strings.Contains(body, "Unknown tool") {
		t.Fatalf("the broken file replaced the policy: %s", body)
	}
	if !strings.Contains(ph.logs.String(), "the previous policy stays in force") {
		t.Error("the broken file was not logged")
	}
	if got := testutil.ToFloat64(ph.gw.metrics.PolicyReloads.WithLabelValues("error")); got != 1 {
		t.Errorf("reloads{error}: got %v, want 1", got)
	}
	if n := testutil.CollectAndCount(ph.gw.metrics.PolicyDecisions); n != 3*2 {
		t.Errorf("decision series: got %d, want those of the rules in force (everything, default)", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ph.gw.policy.watch(ctx, 5*time.Millisecond)
	os.WriteFile(ph.file, []byte(policytest.YAML), 0o600)
	waitFor(t, "the changed file in force", func() bool {
		_, body := ph.post(t, nil, "", nil, call("1", "secret-tool"))
		return strings.Contains(body, "Unknown tool")
	})
	if err := (&Gateway{}).ReloadPolicy(); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("without a policy: got %v", err)
	}
}

// TestPolicyFailsClosedAtStart: a policy that does not load stops the gateway, as does an audit log that cannot be
// opened.
func TestPolicyFailsClosedAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("default: maybe\n"), 0o600)
	for _, file := range []string{filepath.Join(dir, "missing.yaml"), broken} {
		cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "http://127.0.0.1:1", "GATEWAY_POLICY_FILE": file})
		if err != nil {
			t.Fatal(err)
		}
		if _, err = New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "GATEWAY_POLICY_FILE") {
			t.Errorf("%s: got %v", file, err)
		}
	}
	good := filepath.Join(dir, "policy.yaml")
	os.WriteFile(good, []byte(policytest.YAML), 0o600)
	cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "http://127.0.0.1:1", "GATEWAY_POLICY_FILE": good,
		"GATEWAY_AUDIT_LOG": filepath.Join(broken, "x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "GATEWAY_AUDIT_LOG") {
		t.Errorf("an audit log that cannot be opened: got %v", err)
	}
}

// TestNoPolicyPathUnchanged: without a policy nothing reads the body: what is not JSON-RPC goes upstream as today.
func TestNoPolicyPathUnchanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	if h.gw.policy != nil || h.gw.audit != nil {
		t.Fatal("a policy without GATEWAY_POLICY_FILE")
	}
	resp := h.do(t, "POST", "/mcp", h.token(t, "user_1"), nil, "not json")
	if resp.StatusCode != 200 || readBody(t, resp) != `{"ok":true}` {
		t.Fatalf("got %d", resp.StatusCode)
	}
}

// TestPolicyStreams: a GET that resumes a stream (Last-Event-ID) may replay list responses, whose requests the
// gateway did not see: it takes the reverse proxy and its list responses are filtered by their shape. A GET without
// Last-Event-ID carries no responses and keeps the relay. A subscriptions/listen POST is decided on every resource it
// subscribes to, and relayed when allowed.
func TestPolicyStreams(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, map[string]string{"GATEWAY_STREAM_RELAY": "on"})
	replay := "id: s1\ndata: " + strings.Replace(listResp, `"id":1`, `"id":"x-5"`, 1) + "\n\nid: s2\ndata: " + `{"jsonrpc":"2.0","id":6,"result":{"content":[]}}` + "\n\n"
	ph.answer(func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, replay)
	})
	tok := ph.token(t, "user_1")
	accept := map[string]string{"Accept": "text/event-stream", "Last-Event-ID": "s0"}
	resp := ph.do(t, "GET", "/mcp", tok, accept, "")
	body := readBody(t, resp)
	want := "id: s1\ndata: " + strings.Replace(listFiltered, `"id":1`, `"id":"x-5"`, 1) + "\n\nid: s2\ndata: " + `{"jsonrpc":"2.0","id":6,"result":{"content":[]}}` + "\n\n"
	if body != want {
		t.Fatalf("resumed: got %q\nwant %q", body, want)
	}
	delete(accept, "Last-Event-ID")
	resp = ph.do(t, "GET", "/mcp", tok, accept, "")
	if body := readBody(t, resp); body != replay {
		t.Fatalf("not resumed: got %q, want it as the upstream wrote it", body)
	}

	listen := func(uris string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"notifications":{"resourceSubscriptions":[` + uris + `]}}}`
	}
	hdr := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "subscriptions/listen", "Accept": "application/json, text/event-stream"}
	ph.answer(func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"file:///public/a\"}}\n\n")
	})
	before := len(ph.upstreamBodies())
	resp, got := ph.post(t, nil, "", hdr, listen(`"file:///public/a","file:///secret/b"`))
	if resp.StatusCode != 400 || got != `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Resource not found","data":{"uri":"file:///secret/b"}}}` {
		t.Fatalf("listen to a hidden resource: got %d %s", resp.StatusCode, got)
	}
	if len(ph.upstreamBodies()) != before {
		t.Fatal("a denied listen reached the upstream")
	}
	resp, got = ph.post(t, nil, "", hdr, listen(`"file:///public/a"`))
	if resp.StatusCode != 200 || !strings.Contains(got, "notifications/resources/updated") {
		t.Fatalf("listen: got %d %s", resp.StatusCode, got)
	}
	if b := ph.upstreamBodies(); b[len(b)-1] != listen(`"file:///public/a"`) {
		t.Errorf("listen body upstream: %s", b[len(b)-1])
	}
}

// TestPolicyOtherPathsRefused: with a policy, no request reaches the upstream but through the MCP endpoint, where
// Authorize sees it. The upstream may serve MCP on other paths too: its own endpoint path, another spelling of it
// (a Go ServeMux serves /%6dcp as /mcp), a path with a trailing slash, or an older transport's /sse and /messages; a
// method chi does not know (a lower-case post) goes the way of other paths. Any of them would carry calls and lists
// the policy never saw.
func TestPolicyOtherPathsRefused(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, nil)
	tok := ph.token(t, "user_1")
	hdr := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	for _, tc := range []struct{ method, path string }{
		{"POST", "/upstream/mcp"},
		{"POST", "/%6dcp"},
		{"POST", "/mcp/"},
		{"POST", "/MCP"},
		{"POST", "/messages?sessionId=1"},
		{"post", "/mcp"},
		{"GET", "/sse"},
	} {
		before := ph.up.count()
		resp := ph.do(t, tc.method, tc.path, tok, hdr, call("1", "get-workos-user"))
		body := readBody(t, resp)
		if ph.up.count() != before {
			t.Errorf("%s %s: reached the upstream (%d %s)", tc.method, tc.path, resp.StatusCode, body)
		} else if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: got %d %s, want 404", tc.method, tc.path, resp.StatusCode, body)
		}
	}
}

// cutBody is a request body that sends the start of a message, then ends as a client that went away does.
type cutBody struct{ sent bool }

func (b *cutBody) Read(p []byte) (int, error) {
	if b.sent {
		return 0, io.ErrUnexpectedEOF
	}
	b.sent = true
	return copy(p, `{"jsonrpc"`), nil
}

// TestPolicyBodyNotAllocatedAhead: what a client declares (Content-Length) is not allocated before it arrives: else
// every connection that declares the largest body and sends a few bytes, as slowly as the read timeout allows, would
// hold GATEWAY_MAX_BODY_BYTES of the gateway's memory.
func TestPolicyBodyNotAllocatedAhead(t *testing.T) {
	p := benchPrincipal(t)
	pol := policytest.Policy()
	h := Authorize(func() Decider { return pol }, AuthorizeOptions{MaxBodyBytes: 4 << 20})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 10
	for range n {
		req := httptest.NewRequest("POST", "/mcp", &cutBody{})
		req.ContentLength = 4 << 20
		st := &reqState{reqID: "r1", principal: p, start: time.Now()}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), stateKey{}, st)))
		if w.Code != http.StatusBadRequest {
			t.Fatalf("a cut body: got %d", w.Code)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 256<<10 {
		t.Errorf("%d KiB allocated per request for 10 bytes received", per>>10)
	}
}

// TestPolicyListAnswerOnlyOnItsRequest: an upstream may send a response on the stream of the latest request with its
// id: the TypeScript SDK's transport maps ids to streams, and a second request with an id in flight takes it over (the
// Python SDK's too, ids read as strings). A client that sent a list and then a call with the same id would get the
// list's answer, unfiltered, as the answer to the call, which the gateway does not filter. The upstream gets list
// requests under ids of the gateway's, which no other request can take over, and the client its own back.
func TestPolicyListAnswerOnlyOnItsRequest(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, policytest.YAML, nil)
	var mu sync.Mutex
	streams := map[string]chan string{} // by id, the stream of the latest request with it
	listIn, callIn, listSent := make(chan struct{}), make(chan struct{}), make(chan struct{})
	wait := func(c chan struct{}) {
		select {
		case <-c:
		case <-time.After(2 * time.Second):
		}
	}
	ph.answer(func(w http.ResponseWriter, body string) {
		var m struct {
			ID     json.RawMessage
			Method string
		}
		json.Unmarshal([]byte(body), &m)
		mine := make(chan string, 2)
		mu.Lock()
		streams[string(m.ID)] = mine
		mu.Unlock()
		send := func(resp string) {
			mu.Lock()
			streams[string(m.ID)] <- resp
			mu.Unlock()
		}
		switch m.Method {
		case "tools/list":
			close(listIn)
			wait(callIn)
			send(strings.Replace(listResp, `"id":1`, `"id":`+string(m.ID), 1))
			close(listSent)
		case "tools/call":
			close(callIn)
			wait(listSent)
			send(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"content":[]}}`)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		select {
		case resp := <-mine:
			io.WriteString(w, "event: message\ndata: "+resp+"\n\n")
		case <-time.After(2 * time.Second):
		}
	})
	tok := ph.token(t, "user_1")
	hdr := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	listAnswer := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", ph.srv.URL+"/mcp", strings.NewReader(listReq))
		req.Header.Set("Authorization", "Bearer "+tok)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := ph.srv.Client().Do(req)
		if err != nil {
			listAnswer <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		listAnswer <- string(b)
	}()
	wait(listIn)
	callAnswer := readBody(t, ph.do(t, "POST", "/mcp", tok, hdr, call("1", "get-user-info")))
	if want := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n"; callAnswer != want {
		t.Errorf("the call's answer: got %q, want %q", callAnswer, want)
	}
	if got, want := <-listAnswer, "event: message\ndata: "+listFiltered+"\n\n"; got != want {
		t.Errorf("the list's answer: got %q, want %q", got, want)
	}
}
