package proxy

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-gateway/gateway/proxy/policy/policytest"
)

// The caller's trace context in the tests: a sampled span of trace inboundTrace.
const (
	inboundTrace  = "0af7651916cd43dd8448eb211c80319c"
	inboundSpan   = "b7ad6b7169203331"
	inboundParent = "00-" + inboundTrace + "-" + inboundSpan + "-01"
)

// withTraces gives a harness's gateway a provider that keeps its spans in exp, ended spans only.
func withTraces(exp *tracetest.InMemoryExporter) func(*Options) {
	return func(o *Options) {
		o.Traces = sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	}
}

// endedSpans waits for n ended spans and returns them.
func endedSpans(t *testing.T, exp *tracetest.InMemoryExporter, n int) tracetest.SpanStubs {
	t.Helper()
	waitFor(t, "spans", func() bool { return len(exp.GetSpans()) >= n })
	spans := exp.GetSpans()
	if len(spans) != n {
		t.Fatalf("got %d spans, want %d: %v", len(spans), n, spans)
	}
	return spans
}

// attrs returns a span's attributes by key, as strings.
func attrs(s tracetest.SpanStub) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// checkAttrs reports the attributes of got that differ from want ("" in want: must be absent).
func checkAttrs(t *testing.T, got tracetest.SpanStub, want map[string]string) {
	t.Helper()
	a := attrs(got)
	for k, v := range want {
		if a[k] != v {
			t.Errorf("span %q: %s is %q, want %q", got.Name, k, a[k], v)
		}
	}
}

// TestTraceSpanPerRequest: each request gets a server span named from its route pattern, a child of the caller's
// traceparent, with its status, MCP method and tool (from the headers, without a policy), the verification outcome,
// and no user unless asked; the upstream gets the span's own context, the caller's tracestate bounded, and no
// baggage.
func TestTraceSpanPerRequest(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	h := newHarnessWith(t, nil, true, withTraces(exp))
	resp := h.do(t, "POST", "/mcp", h.token(t, "user_1"), map[string]string{
		"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"Traceparent": inboundParent, "Tracestate": "vendor=opaque," + manyMembers(5000),
		"Baggage": "user.id=admin", "Mcp-Method": "tools/call", "Mcp-Name": "=?base64?Z2V0LXVzZXItaW5mbw==?=",
	}, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-user-info"}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := endedSpans(t, exp, 1)[0]
	if s.Name != "POST /mcp" || s.SpanKind != trace.SpanKindServer {
		t.Errorf("got span %q of kind %s, want POST /mcp, server", s.Name, s.SpanKind)
	}
	if got := s.SpanContext.TraceID().String(); got != inboundTrace {
		t.Errorf("got trace %s, want the caller's %s", got, inboundTrace)
	}
	if got := s.Parent.SpanID().String(); got != inboundSpan || !s.Parent.IsRemote() {
		t.Errorf("got parent %s, want the caller's span %s", got, inboundSpan)
	}
	checkAttrs(t, s, map[string]string{"http.route": "/mcp", "http.request.method": "POST", "http.response.status_code": "200",
		"mcp.method.name": "tools/call", "gen_ai.tool.name": "get-user-info", "mcp_gateway.auth.outcome": "verified",
		"mcp_gateway.request_id": resp.Header.Get("X-Request-Id"), "user.id": "", "url.path": "/mcp"})

	up := h.up.last(t)
	want := "00-" + inboundTrace + "-" + s.SpanContext.SpanID().String() + "-01"
	if got := up.Header.Values("Traceparent"); len(got) != 1 || got[0] != want {
		t.Errorf("upstream got traceparent %q, want %q (the gateway's span)", got, want)
	}
	if got := up.Header.Get("Tracestate"); len(got) > 512 || !strings.HasPrefix(got, "vendor=opaque,k0=v,k1=v") {
		t.Errorf("upstream got tracestate of %d bytes: %.80q…", len(got), got)
	}
	if got := up.Header.Values("Baggage"); got != nil {
		t.Errorf("upstream got baggage %q", got)
	}
}

// manyMembers is a tracestate of n distinct members.
func manyMembers(n int) string {
	m := make([]string, n)
	for i := range m {
		m[i] = "k" + strconv.Itoa(i) + "=v"
	}
	return strings.Join(m, ",")
}

// TestTraceRefusalsAndUser: a refused request's span names the reason; GATEWAY_TRACE_USER_ID=true puts the caller's
// subject on the span; a request without traceparent starts a new trace, which the upstream joins.
func TestTraceRefusalsAndUser(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	h := newHarnessWith(t, map[string]string{"GATEWAY_TRACE_USER_ID": "true"}, true, withTraces(exp))
	resp := h.do(t, "POST", "/mcp", "", nil, `{}`)
	if resp.StatusCode != 401 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := endedSpans(t, exp, 1)[0]
	checkAttrs(t, s, map[string]string{"http.route": "/mcp", "http.response.status_code": "401",
		"mcp_gateway.auth.outcome": "no_token", "user.id": ""})
	if s.Parent.IsValid() {
		t.Errorf("a request without traceparent got parent %s", s.Parent.SpanID())
	}

	exp.Reset()
	resp = h.do(t, "GET", "/some/other/path?q=secret", h.token(t, "user_7"), nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s = endedSpans(t, exp, 1)[0]
	if s.Name != "GET /*" {
		t.Errorf("got span %q, want the pattern GET /*, never the path", s.Name)
	}
	checkAttrs(t, s, map[string]string{"user.id": "user_7", "mcp_gateway.auth.outcome": "verified", "http.route": "/*"})
	if got, want := h.up.last(t).Header.Get("Traceparent"), s.SpanContext.TraceID().String(); !strings.Contains(got, want) {
		t.Errorf("upstream got traceparent %q, want trace %s", got, want)
	}
}

// TestTracePolicyDecisions: with a policy, the span says what the body named and the decision, denied or not.
func TestTracePolicyDecisions(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	ph := newPolicyHarness(t, policytest.YAML, nil, withTraces(exp))
	for _, tc := range []struct {
		body, tool, decision, rule string
	}{
		{call("1", "get-user-info"), "get-user-info", "allow", "everyone-reads-themselves"},
		{call(`"a-1"`, "secret-tool"), "secret-tool", "deny", "default"},
	} {
		exp.Reset()
		resp, _ := ph.post(t, nil, "openid", nil, tc.body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		s := endedSpans(t, exp, 1)[0]
		checkAttrs(t, s, map[string]string{"mcp.method.name": "tools/call", "gen_ai.tool.name": tc.tool,
			"mcp_gateway.policy.decision": tc.decision, "mcp_gateway.policy.rule": tc.rule})
	}
}

// TestTraceRelayedStream: a stream the relay takes over gets the trace context upstream, and its span ends when the
// stream does.
func TestTraceRelayedStream(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	h := newHarnessWith(t, nil, true, withTraces(exp))
	if !h.gw.streamRelay {
		t.Fatal("the relay is off")
	}
	release := make(chan struct{})
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		io.WriteString(w, "data: {}\n\n")
		w.(http.Flusher).Flush()
		<-release
	}
	resp := h.openStream(t, context.Background(), map[string]string{"Traceparent": inboundParent})
	buf := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("got %d spans ended while the stream is open", n)
	}
	close(release)
	io.Copy(io.Discard, resp.Body)
	s := endedSpans(t, exp, 1)[0]
	checkAttrs(t, s, map[string]string{"http.route": "/mcp", "http.response.status_code": "200"})
	want := "00-" + inboundTrace + "-" + s.SpanContext.SpanID().String() + "-01"
	if got := h.up.last(t).Header.Get("Traceparent"); got != want {
		t.Errorf("upstream got traceparent %q, want %q", got, want)
	}
}

// TestTracesOff: without a provider, nothing is mounted: the upstream gets no trace header the caller did not send,
// and the caller's pass as they came, like any other header.
func TestTracesOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	if h.gw.tracer != nil {
		t.Fatal("a tracer without traces")
	}
	h.do(t, "GET", "/mcp", h.token(t, "user_1"), nil, "")
	for _, name := range []string{"Traceparent", "Tracestate", "Baggage"} {
		if v := h.up.last(t).Header.Values(name); v != nil {
			t.Errorf("upstream got %s %q", name, v)
		}
	}
	h.do(t, "GET", "/mcp", h.token(t, "user_1"), map[string]string{"Traceparent": inboundParent, "Baggage": "k=v"}, "")
	if got := h.up.last(t).Header.Get("Traceparent"); got != inboundParent {
		t.Errorf("upstream got traceparent %q, want the caller's %q", got, inboundParent)
	}
}

// discardExporter takes spans and keeps nothing.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkChainTraced is BenchmarkChain with traces on: every request sampled, its span batched to an exporter that
// discards it, the caller's traceparent honoured and the gateway's sent upstream.
func BenchmarkChainTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	defer tp.Shutdown(context.Background())
	benchChain(b, Options{Traces: tp}, map[string]string{"Traceparent": inboundParent})
}
