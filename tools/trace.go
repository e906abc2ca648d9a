package tools

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-gateway/gateway/proxy/tracing"
)

// traceCalls records one server span per tool call, named "tools/call <tool>", a child of the trace context in the
// call's HTTP headers: the gateway's request span. The headers of the call itself, not the handler's context: with
// sessions, the go-sdk serves every call of a session in the context of the request that opened it.
func traceCalls(tracer trace.Tracer) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			call, ok := req.(*mcp.CallToolRequest)
			if !ok || method != "tools/call" || call.Params == nil {
				return next(ctx, method, req)
			}
			if extra := call.GetExtra(); extra != nil && extra.Header != nil {
				ctx = tracing.Extract(ctx, extra.Header)
			}
			ctx, span := tracer.Start(ctx, "tools/call "+call.Params.Name, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("mcp.method.name", method), attribute.String("gen_ai.tool.name", call.Params.Name),
					attribute.String("gen_ai.operation.name", "execute_tool")))
			defer span.End()
			res, err := next(ctx, method, req)
			switch r, _ := res.(*mcp.CallToolResult); {
			case err != nil:
				span.SetAttributes(attribute.String("error.type", "protocol_error"))
				span.SetStatus(codes.Error, "protocol_error")
			case r != nil && r.IsError:
				span.SetAttributes(attribute.String("error.type", "tool_error"))
				span.SetStatus(codes.Error, "tool_error")
			}
			return res, err
		}
	}
}
