package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// reqState is what the gateway learns about one request as it passes the middleware. One is allocated per request.
type reqState struct {
	reqID           string
	route           string
	principal       *Principal
	upstreamSession string // the upstream's Mcp-Session-Id, after the binding was checked
	reason          Reason // why the request was refused, if it was
	canceled        bool
	start           time.Time
	relayed         bool // the response continues on a relayed stream, which records the request when it ends
}

func (s *reqState) id() string {
	if s == nil {
		return ""
	}
	return s.reqID
}

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	s, _ := ctx.Value(stateKey{}).(*reqState)
	return s
}

// PrincipalFromContext returns the verified caller of the request whose context ctx is, or nil.
func PrincipalFromContext(ctx context.Context) *Principal {
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
// underlying writer to http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe gives each request an id (an inbound X-Request-Id is not trusted: it is replaced), and records one access-log
// line and the request metrics when it ends.
func (g *Gateway) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &reqState{reqID: g.reqIDs.next(), route: "other", start: g.now()}
		w.Header().Set("X-Request-Id", st.reqID)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
		if st.relayed {
			return
		}
		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		g.record(r.Context(), st, r.Method, r.URL.Path, code, sw.bytes, g.now().Sub(st.start))
	})
}

// record writes the access-log line and the request metrics of a request that ended with status code after d, having
// sent bytes of body.
func (g *Gateway) record(ctx context.Context, st *reqState, method, path string, code int, bytes int64, d time.Duration) {
	ml := methodLabel(method)
	g.metrics.Requests.WithLabelValues(st.route, ml, statusLabel(code)).Inc()
	g.metrics.Duration.WithLabelValues(st.route, ml).Observe(d.Seconds())
	level := slog.LevelInfo
	if code >= 500 && !st.canceled {
		level = slog.LevelWarn
	}
	if !g.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("request_id", st.reqID), slog.String("method", method),
		slog.String("route", st.route), slog.String("path", path), slog.Int("status", code),
		slog.Int64("bytes", bytes), slog.Int64("duration_us", d.Microseconds()))
	if st.principal != nil {
		attrs = append(attrs, slog.String("sub", st.principal.Subject))
	}
	if st.reason != "" {
		attrs = append(attrs, slog.String("reason", string(st.reason)))
	}
	g.log.LogAttrs(ctx, level, "request", attrs...)
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
		tok, err := BearerToken(r.Header)
		switch {
		case errors.Is(err, ErrMultipleAuthorization):
			g.refuse(r, ReasonMalformed, err)
			w.Header().Set("WWW-Authenticate", Challenge{Error: "invalid_request", Description: "send exactly one Authorization header", ResourceMetadata: g.prmURL}.String())
			writeJSONError(w, http.StatusBadRequest, "invalid_request", "send exactly one Authorization header")
			return
		case errors.Is(err, ErrNoBearer):
			g.refuse(r, ReasonNoToken, nil)
			writeChallenge(w, ReasonNoToken, g.prmURL, g.scopes)
			return
		case err != nil:
			g.refuse(r, ReasonMalformed, err)
			writeChallenge(w, ReasonMalformed, g.prmURL, g.scopes)
			return
		}
		p, err := g.verifier.Verify(r.Context(), tok)
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) {
				ae = &AuthError{Reason: ReasonMalformed, Err: err}
			}
			g.refuse(r, ae.Reason, ae)
			if ae.Reason == ReasonKeysUnavailable {
				writeUnavailable(w, 5)
				return
			}
			writeChallenge(w, ae.Reason, g.prmURL, g.scopes)
			return
		}
		if missing := MissingScopes(p.Scopes, g.scopes); len(missing) > 0 {
			st.principal = p
			g.refuse(r, ReasonScope, nil, "missing_scopes", strings.Join(missing, " "))
			writeChallenge(w, ReasonScope, g.prmURL, g.scopes)
			return
		}
		st.principal = p
		next.ServeHTTP(w, r)
	})
}

// refuse counts and logs a refused request. The token is never logged.
func (g *Gateway) refuse(r *http.Request, reason Reason, err error, extra ...any) {
	st := stateOf(r.Context())
	st.reason = reason
	g.metrics.AuthFailures.WithLabelValues(string(reason)).Inc()
	if reason == ReasonNoToken {
		return // the first step of every OAuth flow: not worth a line beyond the access log
	}
	args := append([]any{"request_id", st.id(), "reason", string(reason)}, extra...)
	if err != nil {
		args = append(args, "err", err.Error())
	}
	var ae *AuthError
	if errors.As(err, &ae) && ae.Reason == ReasonAudience {
		args = append(args, "token_aud", ae.TokenAudience, "accepted", g.cfg.AudienceList,
			"fix", "with WorkOS, add "+g.cfg.Resource+" as a Resource Indicator in the dashboard (Connect → Configuration) so "+
				"tokens carry it as aud; otherwise set GATEWAY_AUDIENCES to the audience your authorization server issues for this resource")
	}
	g.log.Warn("request refused", args...)
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
