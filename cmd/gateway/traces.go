package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/tracing"
)

// startTraces returns the provider of the traces the OTEL_* variables ask for, and logs where they go; nil when
// they are off.
func startTraces(cfg *config.Config, log *slog.Logger) (*tracing.Provider, error) {
	traces, err := tracing.New(cfg.Traces, tracing.Options{ServiceName: "mcp-gateway", Logger: log})
	if err != nil {
		return nil, fmt.Errorf("traces: %w", err)
	}
	if traces != nil {
		log.Info("traces on: a span per request, its context sent upstream", "endpoint", cfg.Traces.RedactedEndpoint(),
			"protocol", cfg.Traces.Protocol, "sampler", cfg.Traces.Sampler, "user_id", cfg.TraceUserID)
	}
	return traces, nil
}

// flushTraces exports the spans still waiting, when traces are on, by stopBy (the end of GATEWAY_SHUTDOWN_TIMEOUT),
// and in at least a second: the spans of the last requests end when they do.
func flushTraces(traces *tracing.Provider, stopBy time.Time, log *slog.Logger) {
	if traces == nil {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), stopBy)
	if time.Until(stopBy) < time.Second {
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	}
	defer cancel()
	if err := traces.Shutdown(ctx); err != nil {
		log.Warn("traces: spans still waiting were not exported", "err", err)
	}
}
