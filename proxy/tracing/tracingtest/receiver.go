// Package tracingtest is an OTLP/HTTP trace receiver for tests and benchmarks, like net/http/httptest: it accepts the
// protobuf export requests an OpenTelemetry exporter sends to /v1/traces, decodes them, and keeps the spans (or only
// counts them).
package tracingtest

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// maxExport bounds an export request's body, decompressed.
const maxExport = 64 << 20

// Span is one span as a receiver got it, its ids in lower-case hex and its attributes as strings.
type Span struct {
	Service      string // the resource's service.name
	Name         string
	Kind         string // SPAN_KIND_SERVER, …
	TraceID      string
	SpanID       string
	ParentSpanID string // "" for a root
	TraceState   string
	Attributes   map[string]string
	StatusCode   string // STATUS_CODE_UNSET, STATUS_CODE_ERROR, …
}

// Receiver is an OTLP/HTTP trace receiver: an http.Handler for POST /v1/traces.
type Receiver struct {
	// CountOnly keeps no span, only their number: for benchmarks.
	CountOnly bool

	mu      sync.Mutex
	spans   []Span
	count   int
	changed chan struct{} // closed and replaced whenever spans arrive
}

// NewServer starts a Receiver on a loopback port, closed when t ends, and returns it with its endpoint URL (for
// OTEL_EXPORTER_OTLP_ENDPOINT).
func NewServer(t testing.TB) (*Receiver, string) {
	rc := &Receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv.URL
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body := io.Reader(http.MaxBytesReader(w, r.Body, maxExport))
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "bad gzip", http.StatusBadRequest)
			return
		}
		body = io.LimitReader(zr, maxExport)
	}
	b, err := io.ReadAll(body)
	var req collectorpb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		http.Error(w, "bad export request", http.StatusBadRequest)
		return
	}
	rc.add(&req)
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// add records the spans of req.
func (rc *Receiver) add(req *collectorpb.ExportTraceServiceRequest) {
	var got []Span
	n := 0
	for _, rs := range req.GetResourceSpans() {
		service := attributes(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
			if rc.CountOnly {
				continue
			}
			for _, s := range ss.GetSpans() {
				got = append(got, Span{Service: service, Name: s.GetName(), Kind: s.GetKind().String(),
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()), TraceState: s.GetTraceState(),
					Attributes: attributes(s.GetAttributes()), StatusCode: s.GetStatus().GetCode().String()})
			}
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.spans = append(rc.spans, got...)
	rc.count += n
	if rc.changed != nil {
		close(rc.changed)
		rc.changed = nil
	}
}

// attributes returns kvs with every value as a string.
func attributes(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch v.GetValue().(type) {
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = strconv.FormatInt(v.GetIntValue(), 10)
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = strconv.FormatBool(v.GetBoolValue())
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = strconv.FormatFloat(v.GetDoubleValue(), 'g', -1, 64)
		default:
			m[kv.GetKey()] = v.GetStringValue()
		}
	}
	return m
}

// Count returns the number of spans received so far.
func (rc *Receiver) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.count
}

// Spans returns the spans received so far, in the order they arrived.
func (rc *Receiver) Spans() []Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Span(nil), rc.spans...)
}

// Wait returns the spans received once match accepts them, or an error after timeout.
func (rc *Receiver) Wait(timeout time.Duration, match func([]Span) bool) ([]Span, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		spans := append([]Span(nil), rc.spans...)
		if rc.changed == nil {
			rc.changed = make(chan struct{})
		}
		changed := rc.changed
		rc.mu.Unlock()
		if match(spans) {
			return spans, nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return spans, fmt.Errorf("tracingtest: the spans expected did not arrive within %s (%d arrived)", timeout, len(spans))
		}
	}
}
