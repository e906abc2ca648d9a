package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-gateway/gateway/proxy/tracing/tracingtest"
)

// The client's trace context: a sampled span of clientTrace.
const (
	clientTrace  = "0af7651916cd43dd8448eb211c80319c"
	clientSpan   = "b7ad6b7169203331"
	clientParent = "00-" + clientTrace + "-" + clientSpan + "-01"
)

// tracedBearer adds a token and the client's traceparent to every request.
type tracedBearer struct{ token string }

func (b tracedBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	r.Header.Set("Traceparent", clientParent)
	return http.DefaultTransport.RoundTrip(r)
}

// startToolService builds the tool service's binary and runs it with env on a free loopback port; it returns the
// service's MCP URL and a function that stops it with SIGTERM and waits for it to exit.
func startToolService(t *testing.T, env []string) (string, func()) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tools")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mcp-gateway/gateway/cmd/tools").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "TOOLS_LISTEN_ADDR=127.0.0.1:0"}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	select {
	case a := <-addr:
		return "http://" + a + "/mcp", stop
	case <-time.After(20 * time.Second):
		t.Fatal("the tool service did not start")
	}
	return "", stop
}

// TestTracesJoinAcrossGatewayAndTools: a go-sdk client that sends a traceparent calls a tool through the gateway
// binary (its run function) and the tool service binary, both exporting to one OTLP/HTTP receiver. The gateway's
// server span is a child of the client's span, names the route, the tool and the policy's decision; the tool
// service's span is a child of the gateway's, in the same trace. The gateway exports its last spans when it stops.
func TestTracesJoinAcrossGatewayAndTools(t *testing.T) {
	rc, otlp := tracingtest.NewServer(t)
	toolsURL, stopTools := startToolService(t, []string{"GATEWAY_IDENTITY_SECRET=" + secret,
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp, "OTEL_SERVICE_NAME=tools-under-test"})
	is := newIssuer(t)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("default: deny\nrules:\n  - name: all-tools\n    tools: [\"*\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	env := map[string]string{"GATEWAY_LISTEN_ADDR": "127.0.0.1:0", "GATEWAY_METRICS_ADDR": "off", "GATEWAY_PUBLIC_URL": publicURL,
		"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": toolsURL, "GATEWAY_IDENTITY_SECRET": secret,
		"GATEWAY_POLICY_FILE": policy, "GATEWAY_AUDIT_LOG": "off", "OTEL_EXPORTER_OTLP_ENDPOINT": otlp}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env, io.Discard, logs) }()
	base := "http://" + waitFor(t, logs, "gateway listening", "addr")
	waitFor(t, logs, "traces on: a span per request, its context sent upstream", "endpoint")
	waitReady(t, base)

	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	s, err := client.Connect(cctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp",
		HTTPClient: &http.Client{Transport: tracedBearer{is.token(t, "user_alice", nil)}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CallTool(cctx, &mcp.CallToolParams{Name: "get-user-info"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	cancel() // the gateway exports its waiting spans as it stops, within GATEWAY_SHUTDOWN_TIMEOUT
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stopTools()

	var gw, tool tracingtest.Span
	_, err = rc.Wait(10*time.Second, func(spans []tracingtest.Span) bool {
		for _, sp := range spans {
			switch {
			case sp.Service == "mcp-gateway" && sp.Attributes["gen_ai.tool.name"] == "get-user-info":
				gw = sp
			case sp.Service == "tools-under-test" && sp.Name == "tools/call get-user-info":
				tool = sp
			}
		}
		return gw.SpanID != "" && tool.SpanID != ""
	})
	if err != nil {
		t.Fatalf("%v: gateway span %+v, tool span %+v", err, gw, tool)
	}
	if gw.Name != "POST /mcp" || gw.Kind != "SPAN_KIND_SERVER" || gw.TraceID != clientTrace || gw.ParentSpanID != clientSpan {
		t.Errorf("gateway span: got %q %s trace %s parent %s, want POST /mcp, server, trace %s, parent %s",
			gw.Name, gw.Kind, gw.TraceID, gw.ParentSpanID, clientTrace, clientSpan)
	}
	for k, want := range map[string]string{"http.route": "/mcp", "http.response.status_code": "200", "mcp.method.name": "tools/call",
		"mcp_gateway.auth.outcome": "verified", "mcp_gateway.policy.decision": "allow", "mcp_gateway.policy.rule": "all-tools"} {
		if got := gw.Attributes[k]; got != want {
			t.Errorf("gateway span: %s is %q, want %q", k, got, want)
		}
	}
	if _, ok := gw.Attributes["user.id"]; ok {
		t.Error("the gateway span names the user without GATEWAY_TRACE_USER_ID")
	}
	if tool.TraceID != clientTrace || tool.ParentSpanID != gw.SpanID {
		t.Errorf("tool span: got trace %s parent %s, want trace %s parent %s (the gateway's span)", tool.TraceID, tool.ParentSpanID, clientTrace, gw.SpanID)
	}
	if tool.Attributes["gen_ai.tool.name"] != "get-user-info" || tool.Kind != "SPAN_KIND_SERVER" {
		t.Errorf("tool span: %+v", tool)
	}
}

// TestTracesOffByDefault: without OTEL_* variables the gateway starts no exporter (it says nothing of traces) and
// sends the upstream no trace header the client did not send.
func TestTracesOffByDefault(t *testing.T) {
	is := newIssuer(t)
	got := make(chan http.Header, 8)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(up.Close)
	base, logs := startGateway(t, map[string]string{"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp",
		"OTEL_SERVICE_NAME": "set-for-another-signal"})
	req, _ := http.NewRequest("POST", base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+is.token(t, "user_alice", nil))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-got
	for _, name := range []string{"Traceparent", "Tracestate", "Baggage"} {
		if v, ok := h[name]; ok {
			t.Errorf("upstream got %s %q", name, v)
		}
	}
	if strings.Contains(logs.String(), "traces") {
		t.Errorf("the gateway speaks of traces with none asked for:\n%s", logs)
	}
}

// waitReady waits until the gateway at base answers /readyz with 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway not ready after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
