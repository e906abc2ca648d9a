package tools

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracingTransport sends each request with a traceparent of its own: span 1, 2, … of one trace.
type tracingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

const callTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

func (tt *tracingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Traceparent", fmt.Sprintf("00-%s-%016x-01", callTrace, tt.n.Add(1)))
	return tt.next.RoundTrip(req)
}

// connectThrough opens an MCP session on srv whose requests go through rt.
func connectThrough(t *testing.T, srv *httptest.Server, rt http.RoundTripper) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: srv.URL + Path,
		HTTPClient: &http.Client{Transport: rt}, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// TestToolCallSpans: each tool call gets one server span named after the tool, a child of the traceparent of the
// request that carried the call, with sessions too (where the go-sdk serves calls in the context of the session's
// first request); other methods get none.
func TestToolCallSpans(t *testing.T) {
	t.Parallel()
	for _, mode := range transportModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			exp := tracetest.NewInMemoryExporter()
			opts := mode.opts
			opts.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)).Tracer("test")
			srv := startServer(t, opts)
			tt := &tracingTransport{next: gatewayFor(mode.signed, alice)}
			cs := connectThrough(t, srv, tt)
			callTool(t, cs, "get-user-info")
			sent := tt.n.Load() // the call's request was the last one sent
			callToolError(t, cs, "get-workos-user")
			spans := exp.GetSpans()
			if len(spans) != 2 {
				t.Fatalf("got %d spans, want 2: %v", len(spans), spans)
			}
			for i, want := range []struct {
				name, parent string
				err          bool
			}{
				{"tools/call get-user-info", fmt.Sprintf("%016x", sent), false},
				{"tools/call get-workos-user", fmt.Sprintf("%016x", tt.n.Load()), true},
			} {
				s := spans[i]
				if s.Name != want.name || s.SpanKind != trace.SpanKindServer {
					t.Errorf("span %d: got %q of kind %s, want %q, server", i, s.Name, s.SpanKind, want.name)
				}
				if s.SpanContext.TraceID().String() != callTrace || s.Parent.SpanID().String() != want.parent {
					t.Errorf("span %d: got trace %s parent %s, want %s %s", i, s.SpanContext.TraceID(), s.Parent.SpanID(), callTrace, want.parent)
				}
				a := map[string]string{}
				for _, kv := range s.Attributes {
					a[string(kv.Key)] = kv.Value.String()
				}
				if a["gen_ai.tool.name"] != want.name[len("tools/call "):] || a["mcp.method.name"] != "tools/call" {
					t.Errorf("span %d: attributes %v", i, a)
				}
				if got := a["error.type"] == "tool_error"; got != want.err {
					t.Errorf("span %d: error.type %q, want a tool error %t", i, a["error.type"], want.err)
				}
			}
		})
	}
}
