package tracing

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
)

// MaxTraceState is the most of a tracestate the gateway takes in, and so sends on: the W3C Trace Context's 512
// characters that every participant should propagate. A longer one loses members from the end, the longest (over
// 128 characters) first, as the recommendation says.
const MaxTraceState = 512

// maxTraceParent bounds a traceparent read at all: version 00 is 55 characters, and a future version may only add.
const maxTraceParent = 256

// propagator is W3C Trace Context alone: no baggage, whose members a client writes and an upstream's instrumentation
// may take for facts about the caller.
var propagator = propagation.TraceContext{}

// Extract returns ctx with the remote span context of h's traceparent and tracestate, when they are valid: one
// traceparent of at most 256 characters, and a tracestate cut to MaxTraceState. Anything else leaves ctx as it is,
// and the span started from it is a new trace's root.
func Extract(ctx context.Context, h http.Header) context.Context {
	if len(h["Traceparent"]) != 1 {
		return ctx // none, or several: invalid (W3C Trace Context §3.2)
	}
	return propagator.Extract(ctx, boundedCarrier(h))
}

// Inject sets h's traceparent and tracestate to those of ctx's span, replacing any, or removes them when ctx has no
// valid span context. It removes baggage too: the gateway does not propagate it.
func Inject(ctx context.Context, h http.Header) {
	delete(h, "Traceparent")
	delete(h, "Tracestate")
	delete(h, "Baggage")
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
}

// boundedCarrier reads traceparent and tracestate from a header within their bounds.
type boundedCarrier http.Header

func (c boundedCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		if v := http.Header(c).Get(key); len(v) <= maxTraceParent {
			return v
		}
		return ""
	case "tracestate":
		return TrimTraceState(strings.Join(c["Tracestate"], ","))
	}
	return ""
}

func (c boundedCarrier) Set(string, string) {}

func (c boundedCarrier) Keys() []string { return nil }

// TrimTraceState returns tracestate s cut to at most MaxTraceState characters by whole members: members over 128
// characters go first, then members from the end (W3C Trace Context §3.3.1.5).
func TrimTraceState(s string) string {
	if len(s) <= MaxTraceState {
		return s
	}
	var b strings.Builder
	n := 0
	for m := range strings.SplitSeq(s, ",") {
		if n++; n > 32 { // the most members a tracestate may have
			break
		}
		m = strings.TrimSpace(m)
		if m == "" || len(m) > 128 {
			continue
		}
		if b.Len()+1+len(m) > MaxTraceState {
			break
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m)
	}
	return b.String()
}
