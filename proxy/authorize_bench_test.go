package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/authz"
	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/token/tokentest"

	"github.com/mcp-gateway/gateway/proxy/policy/policytest"
)

// BenchmarkAuthorize is Authorize's own work on one request, the upstream and the rest of the chain left out: read
// the body, the facts from the claims, read the message, decide (policytest.YAML, without CEL conditions: package
// policy's benchmarks measure those), and for the list, rewrite the upstream's JSON answer of 20 tools. With audit,
// the event is written to a discarding writer through the queue.
func BenchmarkAuthorize(b *testing.B) {
	p := benchPrincipal(b)
	var tools []string
	for i := range 20 {
		name := fmt.Sprintf("tool-%d", i)
		if i%2 == 0 {
			name = "get-user-info"
		}
		tools = append(tools, `{"name":"`+name+`","description":"d","inputSchema":{"type":"object","properties":{"x":{"type":"string"}}}}`)
	}
	listAnswer := `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`
	for _, bc := range []struct {
		name, body string
		audit      bool
	}{
		{"baseline: the request alone", "", false},
		{"tools/call", call("1", "get-user-info"), false},
		{"tools/call with audit", call("1", "get-user-info"), true},
		{"tools/list of 20 with audit", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var audit *authz.AuditLog
			if bc.audit {
				audit = authz.NewAuditLog(io.Discard, authz.AuditOptions{Issuer: "https://issuer.example"})
				defer audit.Close()
			}
			pol := policytest.Policy()
			mw := Authorize(func() Decider { return pol }, AuthorizeOptions{MaxBodyBytes: 4 << 20, Audit: audit})
			pre, post, _ := strings.Cut(listAnswer, "1") // the answer carries the id the upstream got
			var answer []byte
			var sent bytes.Buffer
			var h http.Handler = mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if st := stateOf(r.Context()); st.mcp != nil && st.mcp.Rewrites() {
					sent.Reset()
					sent.ReadFrom(r.Body)
					answer = append(append(append(answer[:0], pre...), sentID(sent.Bytes())...), post...)
					resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
						Body: io.NopCloser(bytes.NewReader(answer))}
					st.mcp.ModifyResponse(resp)
					io.Copy(io.Discard, resp.Body)
					return
				}
				io.Copy(io.Discard, r.Body)
			}))
			body := bc.body
			if body == "" {
				body, h = call("1", "get-user-info"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
			}
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/mcp", strings.NewReader(body))
				st := &reqState{reqID: "r1", principal: p, start: time.Now()}
				h.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), stateKey{}, st)))
			}
		})
	}
}

// sentID returns the id of a list request as the gateway forwards it: the value of its first member named id, which
// holds no comma (a string of the gateway's).
func sentID(body []byte) []byte {
	_, after, _ := bytes.Cut(body, []byte(`"id":`))
	id, _, _ := bytes.Cut(after, []byte(","))
	return id
}

// BenchmarkChainPolicy is BenchmarkChain with and without a policy, side by side: the whole gateway in front of a
// no-op upstream, tools/call and tools/list (20 tools), audit to a discarding writer.
func BenchmarkChainPolicy(b *testing.B) {
	k := tokentest.NewKey(b, "k1", 0)
	is := tokentest.NewIssuer(b, k)
	var tools []string
	for i := range 20 {
		tools = append(tools, fmt.Sprintf(`{"name":"get-user-info%d","inputSchema":{"type":"object"}}`, i))
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(body), "tools/list") {
			// the answer carries the id the upstream got
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(sentID(body))+`,"result":{"tools":[`+strings.Join(tools, ",")+`]}}`)
			return
		}
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	file := filepath.Join(b.TempDir(), "policy.yaml")
	os.WriteFile(file, []byte(policytest.YAML+"  - name: listed\n    tools: [\"get-user-info*\"]\n"), 0o600)
	for _, withPolicy := range []bool{false, true} {
		env := map[string]string{"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp"}
		if withPolicy {
			env["GATEWAY_POLICY_FILE"] = file
		}
		cfg, err := config.Load(env)
		if err != nil {
			b.Fatal(err)
		}
		c := tokentest.NewClock()
		g, err := New(cfg, Options{Now: c.Now, ASClient: is.Client(), Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
			AuditOut: io.Discard})
		if err != nil {
			b.Fatal(err)
		}
		if err := g.discover(context.Background()); err != nil {
			b.Fatal(err)
		}
		tok := k.Sign(b, is.Claims(cfg.Resource, "user_1", c.Now()))
		h := g.Handler()
		for _, method := range []string{"tools/call", "tools/list"} {
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-user-info"}}`
			if method == "tools/list" {
				body = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
			}
			b.Run(fmt.Sprintf("%s/policy=%t", method, withPolicy), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req := httptest.NewRequest("POST", "/mcp", strings.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+tok)
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json, text/event-stream")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
		}
		g.closeAudit()
	}
}
