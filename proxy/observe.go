package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-gateway/gateway/proxy/authz"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// reqState is what the gateway learns about one request as it passes the middleware. One is allocated per request.
type reqState struct {
	reqID           string
	route           string       // the route's name, from the pattern routing matched (see observer.label)
	rctx            *chi.Context // what routing decided
	principal       *token.Principal
	upstreamSession string       // the upstream's Mcp-Session-Id, after the binding was checked
	reason          token.Reason // why the request was refused, if it was
	attrs           []slog.Attr  // what the access line says of a refusal or failure beyond its reason (fixed texts, causes)
	upstreamErr     string       // the kind of upstream failure, if there was one
	canceled        bool
	body            *deadlineBody // the request body under the read timeout, if the request has one
	start           time.Time
	relayed         bool // the response continues on a relayed stream, which records the request when it ends
	// streamEnd gives back the caller's stream slot (GATEWAY_MAX_STREAMS_USER) this long-lived stream holds; the
	// relay's stream takes it over when it takes over the connection.
	streamEnd func()
	// mcp is what Authorize learnt of the request's MCP messages, when a policy is in force and the answer needs it.
	mcp *authz.Exchange
	// span is the request's server span when traces are on (trace.go), ended when the request is recorded; nil: off.
	span trace.Span
}

type stateKey struct{}

// note records, for the access line and the metrics, why the request was refused or failed.
func (st *reqState) note(e *Error) {
	if e.Reason != "" {
		st.reason = e.Reason
	}
	if e.Upstream != "" {
		st.upstreamErr = e.Upstream
		st.canceled = st.canceled || e.Status == 499
	}
	st.attrs = append(st.attrs, e.Attrs...)
	if e.Cause != nil {
		st.attrs = append(st.attrs, slog.String("err", e.Cause.Error()))
	}
}

func stateOf(ctx context.Context) *reqState {
	s, _ := ctx.Value(stateKey{}).(*reqState)
	return s
}

// PrincipalFromContext returns the verified caller of the request whose context ctx is, or nil.
func PrincipalFromContext(ctx context.Context) *token.Principal {
	if s := stateOf(ctx); s != nil {
		return s.principal
	}
	return nil
}

// statusWriter records the status and size of a response. It passes Flush through (event streams) and exposes the
// underlying writer to http.ResponseController. Each write must be taken by the client within the write timeout
// (see extendWrite), and a response that starts before the request body was read says Connection: close (see
// started).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	st     *reqState

	conn         connDeadlines // the connection's deadlines; nil when the writer has none (a test recorder)
	writeTimeout time.Duration
	writeUntil   time.Time // the write deadline last set
}

// connDeadlines is what the server's response writer offers to bound the connection's reads and writes.
type connDeadlines interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// extendWrite moves the connection's write deadline to writeTimeout from now when less than half of it is left, so
// that a client that stops reading cannot hold a handler blocked in Write (and its connection) for ever, while an
// event stream may stay idle as long as it likes: the deadline only bounds bytes waiting to be taken. It also bounds
// what the server writes for the request after the handler (the final flush).
func (w *statusWriter) extendWrite() {
	if w.conn == nil {
		return
	}
	if now := time.Now(); w.writeUntil.Sub(now) < w.writeTimeout/2 {
		w.writeUntil = now.Add(w.writeTimeout)
		w.conn.SetWriteDeadline(w.writeUntil)
	}
}

// started is called once, before the response head is written. When the request body has not been read (the
// gateway refused the request before reading it), the connection is closed after the response: otherwise the server
// would first read and discard the body, which a client that declared one and sends nothing holds up until the read
// timeout.
func (w *statusWriter) started(code int) {
	w.status = code
	if b := w.st.body; b != nil && !b.done.Load() {
		w.Header().Set("Connection", "close")
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.started(code)
	}
	w.extendWrite()
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.started(http.StatusOK)
	}
	w.extendWrite()
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.started(http.StatusOK)
	}
	w.extendWrite()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observer gives each request its state and an id (an inbound X-Request-Id is not trusted: it is replaced), and
// records one access-log line and the request metrics when it ends, also when the handler aborts the response with a
// panic (a stream cut halfway). The route a line and its metrics name is the one routing matched (label). Shutdown
// waits for the requests it is observing (inflight).
type observer struct {
	log          *slog.Logger
	metrics      *Metrics
	now          func() time.Time
	reqIDs       requestIDs
	budget       logBudget
	writeTimeout time.Duration
	// routes names route patterns for metrics and logs; a pattern not in it is "other".
	routes map[string]string
	// traceUser puts the caller's subject on request spans (GATEWAY_TRACE_USER_ID).
	traceUser bool

	inflight atomic.Int64
}

// label names the route that routing matched for st's request.
func (o *observer) label(st *reqState) string {
	if st.route == "" {
		st.route = "other"
		if st.rctx != nil {
			if name, ok := o.routes[st.rctx.RoutePattern()]; ok {
				st.route = name
			}
		}
	}
	return st.route
}

// middleware observes every request that passes it.
func (o *observer) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.inflight.Add(1)
		defer o.inflight.Add(-1)
		st := &reqState{reqID: o.reqIDs.next(), start: o.now(), rctx: chi.RouteContext(r.Context())}
		w.Header().Set("X-Request-Id", st.reqID)
		sw := &statusWriter{ResponseWriter: w, st: st, writeTimeout: o.writeTimeout}
		sw.conn, _ = w.(connDeadlines)
		if _, ok := r.Header["Expect"]; ok {
			sw.extendWrite() // the server writes 100 Continue before the handler writes anything
		}
		defer o.end(r, st, sw)
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	})
}

// end records a request when its handler returns, or panics (re-panicking after).
func (o *observer) end(r *http.Request, st *reqState, sw *statusWriter) {
	if b := st.body; b != nil && !b.done.Load() {
		// Answered without reading the body (a refusal, mostly): the response said Connection: close, and the server,
		// which reads an unread body before it closes, gets no time to wait for it.
		b.conn.SetReadDeadline(time.Now())
	}
	if st.relayed {
		return // the relayed stream owns the connection and records the request when it ends
	}
	sw.extendWrite() // the server's final flush of the response
	p := recover()
	code := sw.status
	switch {
	case p != nil && code == 0:
		code = http.StatusInternalServerError
	case code == 0:
		code = http.StatusOK
	}
	if p != nil {
		st.canceled = true // cut short: the client did not get the whole response
	}
	o.record(r.Context(), st, r.Method, r.URL.Path, code, sw.bytes, o.now().Sub(st.start))
	if p != nil {
		panic(p)
	}
}

// record writes the access-log line and the request metrics of a request that ended with status code after d, having
// sent bytes of body. It is the request's only log line: a refusal's reason and cause are in it. Lines of requests
// without a verified caller are kept to a budget per interval (logBudget); metrics count every request.
func (o *observer) record(ctx context.Context, st *reqState, method, path string, code int, bytes int64, d time.Duration) {
	if st.span != nil {
		endSpan(st, code, o.traceUser)
	}
	ml, route := methodLabel(method), o.label(st)
	o.metrics.Requests.WithLabelValues(route, ml, statusLabel(code)).Inc()
	o.metrics.Duration.WithLabelValues(route, ml).Observe(d.Seconds())
	if st.reason != "" && st.reason != ReasonOAuth {
		o.metrics.AuthFailures.WithLabelValues(string(st.reason)).Inc()
	}
	if st.upstreamErr != "" {
		o.metrics.UpstreamErrors.WithLabelValues(st.upstreamErr).Inc()
	}
	level := slog.LevelInfo
	switch {
	case code >= 500 && !st.canceled:
		level = slog.LevelWarn
	case st.reason != "" && st.reason != token.ReasonNoToken:
		level = slog.LevelWarn
	}
	if !o.log.Enabled(ctx, level) {
		return
	}
	if st.principal == nil {
		key := string(st.reason)
		if key == "" {
			key = st.route
		}
		ok, dropped := o.budget.take(key, o.now())
		o.logDropped(dropped)
		if !ok {
			return
		}
	}
	attrs := make([]slog.Attr, 0, 16) // a constant size: the slice stays on the stack for most lines
	attrs = append(attrs, slog.String("request_id", st.reqID), slog.String("method", method),
		slog.String("route", st.route), slog.String("path", path), slog.Int("status", code),
		slog.Int64("bytes", bytes), slog.Int64("duration_us", d.Microseconds()))
	if st.principal != nil {
		attrs = append(attrs, slog.String("sub", st.principal.Subject))
	}
	if st.reason != "" {
		attrs = append(attrs, slog.String("reason", string(st.reason)))
	}
	attrs = append(attrs, st.attrs...)
	o.log.LogAttrs(ctx, level, "request", attrs...)
}

// logDropped writes the summary of the access lines a past interval did not write, if there were any.
func (o *observer) logDropped(dropped map[string]int) {
	if len(dropped) == 0 {
		return
	}
	total := 0
	for _, n := range dropped {
		total += n
	}
	o.log.Warn("requests not logged one by one", "interval", o.budget.interval.String(), "total", total, "by_reason", dropped)
}

// logBudget keeps the access lines of requests without a verified caller (refusals, metadata, the Option B
// endpoints: what anyone can send) to max per interval, so that nobody can make the gateway write its logs as fast as
// it answers. Past the budget, requests are counted by key (their refusal reason, else their route) and the counts are
// written as one summary line when the interval ends.
type logBudget struct {
	interval time.Duration
	max      int

	mu      sync.Mutex
	start   time.Time
	used    int
	dropped map[string]int
}

// The access-log budget for requests without a verified caller.
const (
	logBudgetInterval = 10 * time.Second
	logBudgetLines    = 100
)

// take reports whether a line for key may be written at now. When now starts a new interval, it also returns the
// counts of the lines the interval before did not write, for the caller to summarise.
func (b *logBudget) take(key string, now time.Time) (ok bool, dropped map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.start) >= b.interval || now.Before(b.start) {
		dropped, b.dropped = b.dropped, nil
		b.start, b.used = now, 0
	}
	if b.used < b.max {
		b.used++
		return true, dropped
	}
	if b.dropped == nil {
		b.dropped = make(map[string]int) // keyed by reason or route name: a bounded set
	}
	b.dropped[key]++
	return false, dropped
}

// flush returns the counts of an interval that has ended, so that a summary is written even when no request follows.
func (b *logBudget) flush(now time.Time) map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.dropped) == 0 || now.Sub(b.start) < b.interval {
		return nil
	}
	dropped := b.dropped
	b.dropped, b.start, b.used = nil, now, 0
	return dropped
}

// statusLabels holds the code label of every status from 100 to 599, so that labelling allocates nothing.
var statusLabels = func() (l [500]string) {
	for i := range l {
		l[i] = strconv.Itoa(i + 100)
	}
	return l
}()

// statusLabel keeps the code label to known values.
func statusLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return statusLabels[code-100]
}
