package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcp-gateway/gateway/proxy/token"
)

// reqState is what the gateway learns about one request as it passes the middleware. One is allocated per request.
type reqState struct {
	reqID           string
	route           string
	principal       *token.Principal
	upstreamSession string       // the upstream's Mcp-Session-Id, after the binding was checked
	reason          token.Reason // why the request was refused, if it was
	attrs           []slog.Attr  // what the access line says of a refusal or failure beyond its reason (fixed texts, causes)
	canceled        bool
	body            *deadlineBody // the request body under the read timeout, if the request has one
	start           time.Time
	relayed         bool // the response continues on a relayed stream, which records the request when it ends
}

type stateKey struct{}

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

// routeName labels the request with a fixed route name for metrics and logs.
func routeName(name string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := stateOf(r.Context()); s != nil {
			s.route = name
		}
		next.ServeHTTP(w, r)
	})
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

// observe gives each request an id (an inbound X-Request-Id is not trusted: it is replaced), and records one access-log
// line and the request metrics when it ends, also when the handler aborts the response with a panic (a stream cut
// halfway). Shutdown waits for the requests it is observing.
func (g *Gateway) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.inflight.Add(1)
		defer g.inflight.Add(-1)
		st := &reqState{reqID: g.reqIDs.next(), route: "other", start: g.now()}
		w.Header().Set("X-Request-Id", st.reqID)
		sw := &statusWriter{ResponseWriter: w, st: st, writeTimeout: g.cfg.WriteTimeout}
		sw.conn, _ = w.(connDeadlines)
		if _, ok := r.Header["Expect"]; ok {
			sw.extendWrite() // the server writes 100 Continue before the handler writes anything
		}
		defer func() {
			if b := st.body; b != nil && !b.done.Load() {
				// Answered without reading the body (a refusal, mostly): the response said Connection: close, and
				// the server, which reads an unread body before it closes, gets no time to wait for it.
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
			g.record(r.Context(), st, r.Method, r.URL.Path, code, sw.bytes, g.now().Sub(st.start))
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	})
}

// record writes the access-log line and the request metrics of a request that ended with status code after d, having
// sent bytes of body. It is the request's only log line: a refusal's reason and cause are in it. Lines of requests
// without a verified caller are kept to a budget per interval (logBudget); metrics count every request.
func (g *Gateway) record(ctx context.Context, st *reqState, method, path string, code int, bytes int64, d time.Duration) {
	ml := methodLabel(method)
	g.metrics.Requests.WithLabelValues(st.route, ml, statusLabel(code)).Inc()
	g.metrics.Duration.WithLabelValues(st.route, ml).Observe(d.Seconds())
	level := slog.LevelInfo
	switch {
	case code >= 500 && !st.canceled:
		level = slog.LevelWarn
	case st.reason != "" && st.reason != token.ReasonNoToken:
		level = slog.LevelWarn
	}
	if !g.log.Enabled(ctx, level) {
		return
	}
	if st.principal == nil {
		key := string(st.reason)
		if key == "" {
			key = st.route
		}
		ok, dropped := g.logBudget.take(key, g.now())
		g.logDropped(dropped)
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
	g.log.LogAttrs(ctx, level, "request", attrs...)
}

// logDropped writes the summary of the access lines a past interval did not write, if there were any.
func (g *Gateway) logDropped(dropped map[string]int) {
	if len(dropped) == 0 {
		return
	}
	total := 0
	for _, n := range dropped {
		total += n
	}
	g.log.Warn("requests not logged one by one", "interval", g.logBudget.interval.String(), "total", total, "by_reason", dropped)
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

// checkOrigin refuses, before anything else, a request whose Origin header is present and not allowed (DNS rebinding
// defence), and answers CORS for allowed browser origins: preflights without authentication, and the headers a browser
// client must read (WWW-Authenticate to discover the authorization server, the MCP session and version headers).
func (g *Gateway) checkOrigin(next http.Handler) http.Handler {
	const (
		allowMethods  = "GET, POST, DELETE, OPTIONS"
		allowHeaders  = "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name"
		exposeHeaders = "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version, X-Request-Id"
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !g.originAllowed(origin) {
			g.refuse(r, ReasonOrigin, nil)
			writeJSONError(w, http.StatusForbidden, "forbidden", descriptions[ReasonOrigin])
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", exposeHeaders)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", allowMethods)
			h.Set("Access-Control-Allow-Headers", allowHeaders+paramHeaders(r.Header.Get("Access-Control-Request-Headers")))
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// paramHeaders allows the Mcp-Param-* headers a preflight asks for (their names are chosen per tool).
func paramHeaders(requested string) string {
	var b strings.Builder
	for _, h := range strings.Split(requested, ",") {
		h = strings.TrimSpace(h)
		if len(h) > len("mcp-param-") && strings.EqualFold(h[:len("mcp-param-")], "mcp-param-") && validScopeToken(h) && !strings.ContainsAny(h, ",;") {
			b.WriteString(", ")
			b.WriteString(h)
		}
	}
	return b.String()
}

func (g *Gateway) originAllowed(origin string) bool {
	return g.anyOrig || slices.ContainsFunc(g.origins, func(o string) bool { return strings.EqualFold(o, origin) })
}

// errBodyTimeout reports a request body that did not arrive within the read timeout.
var errBodyTimeout = errors.New("the request body did not arrive in time")

// boundBody gives a client timeout to send each part of its request body: every read of the body must complete
// within it, and the read deadline is cleared once the body is read, so that the response (an event stream, say) is
// not cut by it. Without it a client that declares a body and sends none holds a connection, a goroutine and a file
// descriptor for as long as it likes. Only the gateway's own reads count: while it waits for the upstream to take
// what it read, the client is not blamed. A request without a body is not touched.
func boundBody(timeout time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw, ok := w.(*statusWriter)
			if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || !ok || sw.conn == nil {
				next.ServeHTTP(w, r) // no body, or a connection without deadlines (a test recorder)
				return
			}
			b := &deadlineBody{ReadCloser: r.Body, conn: sw.conn, timeout: timeout, left: r.ContentLength}
			sw.st.body = b
			r.Body = b
			next.ServeHTTP(w, r)
		})
	}
}

// deadlineBody is a request body under boundBody's deadline.
type deadlineBody struct {
	io.ReadCloser
	conn     connDeadlines
	timeout  time.Duration
	until    time.Time   // the read deadline last set
	left     int64       // bytes still to come when the length is known; -1 when it is not
	done     atomic.Bool // read to its end: the deadline is cleared
	timedOut atomic.Bool // a read hit the deadline; the server then cancels the request's context too
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return b.ReadCloser.Read(p)
	}
	if now := time.Now(); b.until.Sub(now) < b.timeout/2 {
		b.until = now.Add(b.timeout)
		b.conn.SetReadDeadline(b.until)
	}
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	switch {
	case err == nil && b.left == 0, errors.Is(err, io.EOF):
		b.done.Store(true)
		b.conn.SetReadDeadline(time.Time{})
	case err != nil:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			b.timedOut.Store(true)
			return n, errBodyTimeout
		}
	}
	return n, err
}

// limitBody refuses a body declared larger than the limit at once and cuts one that grows past it.
func (g *Gateway) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > g.cfg.MaxBodyBytes {
			writeJSONError(w, http.StatusRequestEntityTooLarge, "request_too_large", "the request body is too large")
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate verifies the bearer token and the required scopes, and records the principal.
func (g *Gateway) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateOf(r.Context())
		tok, err := token.BearerToken(r.Header)
		switch {
		case errors.Is(err, token.ErrMultipleAuthorization):
			g.refuse(r, token.ReasonMalformed, err)
			w.Header().Set("WWW-Authenticate", Challenge{Error: "invalid_request", Description: "send exactly one Authorization header", ResourceMetadata: g.prmURL}.String())
			writeJSONError(w, http.StatusBadRequest, "invalid_request", "send exactly one Authorization header")
			return
		case errors.Is(err, token.ErrNoBearer):
			g.refuse(r, token.ReasonNoToken, nil)
			writeChallenge(w, token.ReasonNoToken, g.prmURL, g.scopes)
			return
		case err != nil:
			g.refuse(r, token.ReasonMalformed, err)
			writeChallenge(w, token.ReasonMalformed, g.prmURL, g.scopes)
			return
		}
		p, err := g.verifier.Verify(r.Context(), tok)
		if err != nil {
			var ae *token.AuthError
			if !errors.As(err, &ae) {
				ae = &token.AuthError{Reason: token.ReasonMalformed, Err: err}
			}
			g.refuse(r, ae.Reason, ae)
			if ae.Reason == token.ReasonKeysUnavailable {
				writeUnavailable(w, 5)
				return
			}
			writeChallenge(w, ae.Reason, g.prmURL, g.scopes)
			return
		}
		if missing := token.MissingScopes(p.Scopes, g.scopes); len(missing) > 0 {
			st.principal = p
			g.refuse(r, token.ReasonScope, nil, slog.String("missing_scopes", strings.Join(missing, " ")))
			writeChallenge(w, token.ReasonScope, g.prmURL, g.scopes)
			return
		}
		st.principal = p
		next.ServeHTTP(w, r)
	})
}

// refuse counts a refused request and notes, for its access line, why. The token is never logged.
func (g *Gateway) refuse(r *http.Request, reason token.Reason, err error, extra ...slog.Attr) {
	st := stateOf(r.Context())
	st.reason = reason
	g.metrics.AuthFailures.WithLabelValues(string(reason)).Inc()
	st.attrs = append(st.attrs, extra...)
	if err != nil {
		st.attrs = append(st.attrs, slog.String("err", err.Error()))
	}
	var ae *token.AuthError
	if errors.As(err, &ae) && ae.Reason == token.ReasonAudience {
		st.attrs = append(st.attrs, slog.Any("token_aud", ae.TokenAudience), slog.Any("accepted", g.cfg.AudienceList),
			slog.String("fix", "with WorkOS, add "+g.cfg.Resource+" as a Resource Indicator in the dashboard (Connect → Configuration) so "+
				"tokens carry it as aud; otherwise set GATEWAY_AUDIENCES to the audience your authorization server issues for this resource"))
	}
}

// bindSession checks that an Mcp-Session-Id was issued to the caller and records the upstream's id for it.
func (g *Gateway) bindSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Values("Mcp-Session-Id")
		if len(v) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		st := stateOf(r.Context())
		up, ok := "", len(v) == 1
		if ok {
			up, ok = g.binder.open(v[0], st.principal.Subject)
		}
		if !ok {
			g.refuse(r, ReasonSession, nil)
			writeJSONError(w, http.StatusNotFound, "session_not_found", descriptions[ReasonSession])
			return
		}
		st.upstreamSession = up
		next.ServeHTTP(w, r)
	})
}
