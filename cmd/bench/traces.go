package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/mcp-gateway/gateway/proxy/tracing/tracingtest"
)

func init() {
	variants = append(variants, variant{name: "g gateway + traces", env: tracesEnv})
}

// tracesEnv is set-up (g)'s environment: traces on, every request sampled (OTEL_TRACES_SAMPLER=always_on, the most a
// gateway records), exported over OTLP/HTTP to a receiver in the bench process that decodes each export, counts its
// spans and keeps nothing. The tool service is unchanged (no spans of its own). The cleanup, once the gateway has
// stopped and sent its last spans, stops the receiver and prints how many it got.
func tracesEnv(_ context.Context, _ string) ([]string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	rc := &tracingtest.Receiver{CountOnly: true}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	cleanup := func() {
		srv.Close()
		fmt.Fprintf(os.Stderr, "g gateway + traces: the receiver got %d spans\n", rc.Count())
	}
	return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + ln.Addr().String(), "OTEL_TRACES_SAMPLER=always_on",
		"OTEL_SERVICE_NAME=mcp-gateway-bench"}, cleanup, nil
}
