package proxy

import (
	"cmp"
	"net"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-gateway/gateway/proxy/authz"
	"github.com/mcp-gateway/gateway/proxy/policy"
	"github.com/mcp-gateway/gateway/proxy/tracing"
)

// Traces (OTEL_*, package tracing): with a provider, every request gets a server span, a child of the caller's
// traceparent when it sends a valid one, and the upstream gets the span's traceparent and tracestate (forward.go).
// Without one, none of this is mounted: the request path is the one without traces.
//
// The span is named from the route pattern routing matched, never the raw path, and ended by the observer when the
// request is recorded (observe.go), so that a relayed stream's span lasts as long as the stream. Traces observe:
// nothing here refuses a request or changes where it goes.

// maxAttrLen bounds the attribute values a client writes (tool names, user agent).
const maxAttrLen = 256

// traceRequests starts a server span for each request.
func traceRequests(tracer trace.Tracer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st := stateOf(r.Context())
			ctx, span := tracer.Start(tracing.Extract(r.Context(), r.Header), spanMethod(r.Method), trace.WithSpanKind(trace.SpanKindServer))
			if st == nil {
				defer span.End() // unreachable: the observer comes first, and ends the span
			} else {
				st.span = span
			}
			if span.IsRecording() {
				span.SetAttributes(requestAttributes(r, st)...)
				defer nameSpan(span, r, st)
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// requestAttributes are what the span says of r before it is served. The MCP method and name come from the
// Mcp-Method and Mcp-Name headers as the client sent them; with a policy, Authorize replaces them with what the body
// names (traceExchange). Without a policy the body is not read for a trace.
func requestAttributes(r *http.Request, st *reqState) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs, attribute.String("http.request.method", httpMethod(r.Method)),
		attribute.String("url.path", bounded(r.URL.Path)), attribute.String("url.scheme", scheme(r)),
		attribute.String("network.protocol.version", strconv.Itoa(r.ProtoMajor)+"."+strconv.Itoa(r.ProtoMinor)))
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, attribute.String("client.address", host))
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		attrs = append(attrs, attribute.String("user_agent.original", bounded(ua)))
	}
	if st != nil {
		attrs = append(attrs, attribute.String("mcp_gateway.request_id", st.reqID))
	}
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" {
		attrs = append(attrs, attribute.String("mcp.protocol.version", bounded(v)))
	}
	if m := r.Header.Get("Mcp-Method"); m != "" {
		attrs = append(attrs, mcpAttributes(m, namedBy(m), headerName(r.Header.Get("Mcp-Name")))...)
	}
	return attrs
}

// mcpAttributes are the attributes of an MCP method and the name of kind it names, in the semantic conventions'
// terms.
func mcpAttributes(method string, kind policy.Kind, name string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String("mcp.method.name", bounded(method))}
	if name == "" {
		return attrs
	}
	switch kind {
	case policy.Tool:
		attrs = append(attrs, attribute.String("gen_ai.tool.name", bounded(name)))
		if method == "tools/call" {
			attrs = append(attrs, attribute.String("gen_ai.operation.name", "execute_tool"))
		}
	case policy.Prompt:
		attrs = append(attrs, attribute.String("gen_ai.prompt.name", bounded(name)))
	case policy.Resource:
		attrs = append(attrs, attribute.String("mcp.resource.uri", bounded(name)))
	}
	return attrs
}

// namedBy is the kind of name the Mcp-Name header carries for method.
func namedBy(method string) policy.Kind {
	switch method {
	case "tools/call":
		return policy.Tool
	case "prompts/get":
		return policy.Prompt
	case "resources/read":
		return policy.Resource
	}
	return ""
}

// headerName decodes an Mcp-Name header value (=?base64?…?= is base64 of the name); "" when it is malformed.
func headerName(v string) string {
	name, ok := authz.HeaderValue(v)
	if !ok {
		return ""
	}
	return name
}

// nameSpan names the span after the route pattern routing matched, once the handler has returned.
func nameSpan(span trace.Span, r *http.Request, st *reqState) {
	pattern := ""
	if st != nil && st.rctx != nil {
		pattern = st.rctx.RoutePattern()
	}
	if pattern == "" {
		span.SetName(spanMethod(r.Method))
		return
	}
	span.SetName(spanMethod(r.Method) + " " + pattern)
	span.SetAttributes(attribute.String("http.route", pattern))
}

// traceExchange records on the request's span what Authorize read and decided.
func traceExchange(st *reqState, ex *authz.Exchange) {
	if st == nil || st.span == nil || !st.span.IsRecording() {
		return
	}
	s := ex.Summary()
	if s.Batch {
		st.span.SetAttributes(attribute.Int("mcp_gateway.batch.size", s.Messages), attribute.Int("mcp_gateway.policy.denied", s.Denied))
		return
	}
	if s.Method == "" {
		return
	}
	st.span.SetAttributes(mcpAttributes(s.Method, s.Kind, s.Name)...)
	if s.ID != "" {
		st.span.SetAttributes(attribute.String("jsonrpc.request.id", bounded(s.ID)))
	}
	if s.Decided {
		st.span.SetAttributes(attribute.String("mcp_gateway.policy.decision", string(s.Decision.Outcome)),
			attribute.String("mcp_gateway.policy.rule", bounded(s.Decision.Rule)))
	}
}

// endSpan ends the request's span with its status, the outcome of verification and, when traceUser, the caller.
func endSpan(st *reqState, code int, traceUser bool) {
	span := st.span
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 4)
		attrs = append(attrs, attribute.Int("http.response.status_code", code))
		switch {
		case st.reason != "":
			attrs = append(attrs, attribute.String("mcp_gateway.auth.outcome", string(st.reason)))
		case st.principal != nil:
			attrs = append(attrs, attribute.String("mcp_gateway.auth.outcome", "verified"))
		}
		if traceUser && st.principal != nil {
			attrs = append(attrs, attribute.String("user.id", bounded(st.principal.Subject)))
		}
		if code >= 500 {
			kind := cmp.Or(st.upstreamErr, statusLabel(code))
			attrs = append(attrs, attribute.String("error.type", kind))
			span.SetStatus(codes.Error, kind)
		}
		span.SetAttributes(attrs...)
	}
	span.End()
}

// httpMethod is the request's method as the span's attribute says it: one of the standard ones, else _OTHER.
func httpMethod(m string) string {
	if l := methodLabel(m); l != "other" {
		return l
	}
	return "_OTHER"
}

// spanMethod is the method in a span's name: one of the standard ones, else HTTP.
func spanMethod(m string) string {
	if l := methodLabel(m); l != "other" {
		return l
	}
	return "HTTP"
}

// scheme is the scheme the client used to reach the gateway.
func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// bounded cuts a value a client wrote to maxAttrLen bytes, at a character boundary.
func bounded(s string) string {
	if len(s) <= maxAttrLen {
		return s
	}
	return strings.ToValidUTF8(s[:maxAttrLen], "")
}
