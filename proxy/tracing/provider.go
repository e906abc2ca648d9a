package tracing

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Options are what New needs besides the configuration.
type Options struct {
	// ServiceName is service.name when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names one.
	ServiceName string
	// Logger receives export failures, at most one line per minute. Nil: discard.
	Logger *slog.Logger
}

// Provider records spans and exports them in batches over OTLP/HTTP: a trace.TracerProvider. Create it with New;
// Shutdown exports the spans still waiting and stops it.
type Provider struct {
	*sdktrace.TracerProvider
}

// New returns the provider cfg describes, or nil when traces are off: callers then install nothing. It does no I/O;
// spans are exported in the background, in batches (the SDK's defaults: at most 2048 waiting, the rest dropped, so
// that a collector that is down or slow costs bounded memory and never holds a request).
func New(cfg Config, o Options) (*Provider, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(cfg.Endpoint), otlptracehttp.WithTimeout(cfg.Timeout)}
	if cfg.Protocol == ProtocolJSON {
		opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
	}
	if cfg.Headers != nil {
		opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
	}
	if cfg.Gzip {
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	}
	exp, err := otlptracehttp.New(context.Background(), opts...) // no I/O: it connects on the first export
	if err != nil {
		return nil, err
	}
	attrs := make([]attribute.KeyValue, 0, len(cfg.Attributes)+1)
	for _, kv := range cfg.Attributes {
		attrs = append(attrs, attribute.String(kv[0], kv[1]))
	}
	attrs = append(attrs, attribute.String("service.name", cmp.Or(cfg.ServiceName, o.ServiceName, "unknown_service")))
	res, err := resource.New(context.Background(), resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(&reportingExporter{SpanExporter: exp, log: log, every: time.Minute}),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler(cfg)),
	)
	return &Provider{tp}, nil
}

// sampler is the sampler cfg names.
func sampler(cfg Config) sdktrace.Sampler {
	var root sdktrace.Sampler
	switch cfg.Sampler {
	case "always_off", "parentbased_always_off":
		root = sdktrace.NeverSample()
	case "traceidratio", "parentbased_traceidratio":
		root = sdktrace.TraceIDRatioBased(cfg.SamplerArg)
	default:
		root = sdktrace.AlwaysSample()
	}
	switch cfg.Sampler {
	case "always_on", "always_off", "traceidratio":
		return root
	}
	return sdktrace.ParentBased(root)
}

// reportingExporter logs export failures itself, at most once per interval with the number of failures, rather than
// through the SDK's process-wide error handler, which would write one unstructured line per failed batch.
type reportingExporter struct {
	sdktrace.SpanExporter
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex
	last   time.Time
	failed int
}

func (e *reportingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failed++
	if now := time.Now(); now.Sub(e.last) >= e.every {
		e.log.Warn("traces: export failed; spans are dropped until the collector answers", "err", err,
			"failed_exports", e.failed, "interval", e.every.String())
		e.last, e.failed = now, 0
	}
	return nil
}
