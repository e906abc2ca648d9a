package tracing_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-gateway/gateway/proxy/tracing"
	"github.com/mcp-gateway/gateway/proxy/tracing/tracingtest"
)

func TestFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      map[string]string
		enabled  bool
		endpoint string
		sampler  string
		service  string
	}{
		{name: "nothing set: off", env: nil},
		{name: "a service name alone: off", env: map[string]string{"OTEL_SERVICE_NAME": "gw", "OTEL_TRACES_SAMPLER": "always_on"}},
		{name: "off: other values are not checked", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "xray"}},
		{name: "base endpoint: on, path appended", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
			enabled: true, endpoint: "http://collector:4318/v1/traces", sampler: "parentbased_always_on"},
		{name: "traces endpoint: on, as it is", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector/in"},
			enabled: true, endpoint: "https://collector/in", sampler: "parentbased_always_on"},
		{name: "exporter otlp: on, default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			enabled: true, endpoint: "http://localhost:4318/v1/traces", sampler: "parentbased_always_on"},
		{name: "exporter none wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "sdk disabled wins", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{name: "service name from resource attributes", env: map[string]string{
			"OTEL_TRACES_EXPORTER": "otlp", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=from%20attrs"},
			enabled: true, endpoint: "http://localhost:4318/v1/traces", sampler: "parentbased_always_on", service: "from attrs"},
		{name: "OTEL_SERVICE_NAME beats resource attributes", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp",
			"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "OTEL_SERVICE_NAME": "b"}, enabled: true,
			endpoint: "http://localhost:4318/v1/traces", sampler: "parentbased_always_on", service: "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tracing.FromEnv(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Enabled != tt.enabled || c.Endpoint != tt.endpoint || c.Sampler != tt.sampler || c.ServiceName != tt.service {
				t.Errorf("got enabled %t endpoint %q sampler %q service %q, want %t %q %q %q",
					c.Enabled, c.Endpoint, c.Sampler, c.ServiceName, tt.enabled, tt.endpoint, tt.sampler, tt.service)
			}
			p, err := tracing.New(c, tracing.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if (p != nil) != tt.enabled {
				t.Errorf("got a provider %t, want %t", p != nil, tt.enabled)
			}
			if p != nil {
				p.Shutdown(context.Background())
			}
		})
	}
}

func TestFromEnvReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := tracing.FromEnv(map[string]string{"OTEL_SDK_DISABLED": "maybe", "OTEL_TRACES_EXPORTER": "zipkin"})
	for _, name := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"} {
		if err == nil || !strings.Contains(err.Error(), name+":") {
			t.Errorf("the error does not name %s:\n%v", name, err)
		}
	}
	_, err = tracing.FromEnv(map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "grpc",
		"OTEL_EXPORTER_OTLP_HEADERS":         "authorization=Bearer%20secret-value,broken",
		"OTEL_EXPORTER_OTLP_TIMEOUT":         "10s",
		"OTEL_EXPORTER_OTLP_COMPRESSION":     "zstd",
		"OTEL_TRACES_SAMPLER":                "traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":            "2",
		"OTEL_RESOURCE_ATTRIBUTES":           "=x",
	})
	if err == nil {
		t.Fatal("got no error")
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT",
		"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_TRACES_SAMPLER_ARG", "OTEL_RESOURCE_ATTRIBUTES"} {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("the error does not name %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), "secret-value") {
		t.Errorf("the error repeats a header value:\n%v", err)
	}
}

func TestTrimTraceState(t *testing.T) {
	t.Parallel()
	member := func(k string, n int) string { return k + "=" + strings.Repeat("v", n) }
	long := member("long", 200)
	var many []string
	for i := range 40 {
		many = append(many, member("k"+string(rune('a'+i%26))+string(rune('a'+i/26)), 30))
	}
	tests := []struct {
		name, in, want string
	}{
		{"short is kept", "a=1,b=2", "a=1,b=2"},
		{"long members go first", strings.Join([]string{member("a", 100), long, member("b", 100), long, member("c", 100), member("d", 100)}, ","),
			strings.Join([]string{member("a", 100), member("b", 100), member("c", 100), member("d", 100)}, ",")},
		{"then members from the end", strings.Join(many, ","), strings.Join(many[:14], ",")}, // 14 members of 34 characters and 13 commas: 489
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tracing.TrimTraceState(tt.in)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if len(got) > tracing.MaxTraceState {
				t.Errorf("got %d characters, more than %d", len(got), tracing.MaxTraceState)
			}
		})
	}
}

const (
	parent  = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	traceID = "0af7651916cd43dd8448eb211c80319c"
)

func TestExtractAndInject(t *testing.T) {
	t.Parallel()
	hostile := "a=1," + strings.Repeat("x", 70<<10)
	tests := []struct {
		name      string
		in        http.Header
		wantTrace string // "" when the context has no remote span
		wantState string
	}{
		{"none", http.Header{}, "", ""},
		{"valid", http.Header{"Traceparent": {parent}, "Tracestate": {"vendor=opaque"}}, traceID, "vendor=opaque"},
		{"two traceparents are invalid", http.Header{"Traceparent": {parent, parent}}, "", ""},
		{"malformed", http.Header{"Traceparent": {"00-xyz"}}, "", ""},
		{"oversized traceparent", http.Header{"Traceparent": {parent + strings.Repeat("-x", 200)}}, "", ""},
		{"hostile tracestate is bounded", http.Header{"Traceparent": {parent}, "Tracestate": {hostile}}, traceID, "a=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := trace.SpanContextFromContext(tracing.Extract(context.Background(), tt.in))
			if got := sc.TraceID().String(); (tt.wantTrace == "") != !sc.IsValid() || sc.IsValid() && got != tt.wantTrace {
				t.Fatalf("got trace %q (valid %t), want %q", got, sc.IsValid(), tt.wantTrace)
			}
			if got := sc.TraceState().String(); got != tt.wantState {
				t.Errorf("got tracestate %q, want %q", got, tt.wantState)
			}
			out := http.Header{"Traceparent": {"stale"}, "Tracestate": {"stale=1"}, "Baggage": {"user.id=admin"}}
			tracing.Inject(trace.ContextWithSpanContext(context.Background(), sc), out)
			if _, ok := out["Baggage"]; ok {
				t.Error("baggage was kept")
			}
			if got := out.Get("Traceparent"); sc.IsValid() != (got != "") || got == "stale" {
				t.Errorf("got outbound traceparent %q", got)
			}
			if got := out.Get("Tracestate"); got != tt.wantState {
				t.Errorf("got outbound tracestate %q, want %q", got, tt.wantState)
			}
		})
	}
}

// TestExportReachesReceiver exports a span over OTLP/HTTP to a receiver, with the configuration's headers, resource
// and sampler, and flushes it on Shutdown.
func TestExportReachesReceiver(t *testing.T) {
	t.Parallel()
	rc, url := tracingtest.NewServer(t)
	c, err := tracing.FromEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
		"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := tracing.New(c, tracing.Options{ServiceName: "default-name"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := tracing.Extract(context.Background(), http.Header{"Traceparent": {parent}})
	_, span := p.Tracer("test").Start(ctx, "op")
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans, err := rc.Wait(5*time.Second, func(s []tracingtest.Span) bool { return len(s) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	s := spans[0]
	if s.Name != "op" || s.Service != "default-name" || s.TraceID != traceID || s.ParentSpanID != "b7ad6b7169203331" {
		t.Errorf("got %+v", s)
	}
}
