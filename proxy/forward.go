package proxy

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"

	"github.com/mcp-gateway/gateway/proxy/identity"
	"github.com/mcp-gateway/gateway/proxy/relay"
	"github.com/mcp-gateway/gateway/proxy/tracing"
)

// upstream forwards authenticated requests upstream: to the upstream's MCP endpoint (the path of the upstream URL),
// or to its origin with the request's path unchanged. Routing chooses which (Gateway.routes).
type upstream struct {
	g        *Gateway
	endpoint bool
	proxy    *httputil.ReverseProxy
	relay    *relay.Relay // long-lived event streams, when the gateway relays them (stream.go); nil: off
	policed  bool         // a policy is in force: answers may need Authorize's rewriting (package authz)
}

// upstreams are the two ways upstream.
func (g *Gateway) upstreams() (endpoint, origin *upstream) {
	return g.newUpstream(true), g.newUpstream(false)
}

func (g *Gateway) newUpstream(endpoint bool) *upstream {
	u := &upstream{g: g, endpoint: endpoint, policed: g.policy != nil}
	modify := g.modifyResponse
	if u.policed {
		modify = g.modifyPolicedResponse
	}
	u.proxy = &httputil.ReverseProxy{
		Rewrite:        u.rewrite,
		Transport:      g.transport,
		ModifyResponse: modify,
		ErrorHandler:   g.upstreamError,
		// Debug: what it reports (an upstream body cut halfway) concerns one request, whose access line says how it
		// ended; a line of its own per request would let an upstream multiply the log.
		ErrorLog:   slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		BufferPool: g.buffers,
		// FlushInterval 0: text/event-stream and unknown-length responses are flushed after every write anyway.
	}
	if g.streamRelay {
		u.relay = g.newRelay(u.rewrite)
	}
	return u
}

func (u *upstream) rewrite(pr *httputil.ProxyRequest) { u.g.rewrite(pr, u.endpoint) }

// upstreamError answers a request the upstream could not complete (see upstreamFailure).
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, r, upstreamFailure(r, err, g.cfg.MaxBodyBytes, g.cfg.Upstream.Redacted()))
}

// rewrite builds the upstream request: to the upstream URL for the MCP endpoint, else to the upstream origin with the
// path unchanged. Credentials, every inbound identity header and every inbound copy of a mapped header
// (GATEWAY_CLAIM_HEADERS), in any spelling, are removed before the verified identity is set, and every trailer. The outbound Host is the
// upstream's (SetURL), which the go-sdk's DNS-rebinding check requires.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest, endpoint bool) {
	st := stateOf(pr.In.Context())
	pr.SetURL(g.upstreamOrigin)
	if endpoint {
		pr.Out.URL.Path, pr.Out.URL.RawPath = g.cfg.Upstream.Path, g.cfg.Upstream.RawPath
	}
	// One pass builds the outbound headers without credentials or inbound identity headers, in a map sized for what
	// is added below, so that adding the identity does not grow it.
	extra := 6
	if st != nil && st.principal != nil {
		extra += len(st.principal.Headers())
	}
	h := make(http.Header, len(pr.Out.Header)+extra)
	mapped := g.cfg.ClaimHeaderMap // nil: none
	for k, v := range pr.Out.Header {
		if isGatewayHeader(k) || identity.IsIdentityHeader(k) || mapped.Owns(k) {
			continue
		}
		if (k == "Connection" || k == "Upgrade") && !g.cfg.AllowUpgrade {
			continue // an upgrade offer is dropped: the request is served as plain HTTP/1.1, never as a tunnel
		}
		h[k] = v
	}
	pr.Out.Header = h
	if g.tracer != nil {
		tracing.Inject(pr.In.Context(), h) // the request span's context, in place of the caller's; no baggage
	}
	// No trailer goes upstream: a client could send identity headers or credentials as trailer fields, past the
	// stripping above and outside the signature, and some servers merge trailers into the headers.
	pr.Out.Trailer = nil
	h["X-Forwarded-Proto"] = []string{g.cfg.Public.Scheme}
	h["X-Forwarded-Host"] = []string{g.cfg.Public.Host}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		h["X-Forwarded-For"] = []string{ip}
	}
	if st == nil || st.principal == nil {
		return // unreachable: the handler chain authenticates first
	}
	h["X-Request-Id"] = []string{st.reqID}
	for k, v := range st.principal.Headers() {
		h[k] = v
	}
	if st.upstreamSession != "" {
		h["Mcp-Session-Id"] = []string{st.upstreamSession}
	}
	if g.secret != nil {
		identity.Sign(pr.Out, g.secret, g.now(), g.mappedNames...)
	}
}

// isGatewayHeader reports whether name is, in any letter case and with '_' for '-', a header the gateway sets or
// checks itself (credentials, forwarding headers, the request id, the MCP session id), which no inbound copy may reach
// the upstream beside: PHP, WSGI and CGI upstreams read X_Forwarded_For and X-Forwarded-For as one variable. It
// allocates nothing: it runs for every header of every request.
func isGatewayHeader(name string) bool {
	switch len(name) {
	case len("cookie"):
		return identity.SameName(name, "cookie")
	case len("forwarded"):
		return identity.SameName(name, "forwarded")
	case len("x-request-id"):
		return identity.SameName(name, "x-request-id")
	case len("authorization"):
		return identity.SameName(name, "authorization")
	case len("mcp-session-id"):
		return identity.SameName(name, "mcp-session-id")
	case len("x-forwarded-for"):
		return identity.SameName(name, "x-forwarded-for")
	case len("x-forwarded-host"):
		return identity.SameName(name, "x-forwarded-host")
	case len("x-forwarded-proto"):
		return identity.SameName(name, "x-forwarded-proto")
	case len("proxy-authorization"):
		return identity.SameName(name, "proxy-authorization")
	}
	return false
}

// errUpgrade refuses an upstream's 101 Switching Protocols: the gateway offered no upgrade.
var errUpgrade = errors.New("upstream switched protocols, and upgrades are not forwarded (GATEWAY_ALLOW_UPGRADE)")

// modifyResponse binds a new MCP session to the caller and counts event streams.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols && !g.cfg.AllowUpgrade {
		return errUpgrade
	}
	g.bindResponseSession(resp.Header, stateOf(resp.Request.Context()))
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		g.metrics.OpenStreams.Inc()
		resp.Body = &streamBody{ReadCloser: resp.Body, done: g.metrics.OpenStreams.Dec}
	}
	return nil
}

// modifyPolicedResponse is modifyResponse with a policy in force: the answer then passes through the request's MCP
// exchange, which filters lists and merges the gateway's answers (authz.Exchange.ModifyResponse).
func (g *Gateway) modifyPolicedResponse(resp *http.Response) error {
	if err := g.modifyResponse(resp); err != nil {
		return err
	}
	if st := stateOf(resp.Request.Context()); st != nil && st.mcp != nil {
		return st.mcp.ModifyResponse(resp)
	}
	return nil
}

// bindResponseSession replaces an MCP session id the upstream issued with one bound to the caller.
func (g *Gateway) bindResponseSession(h http.Header, st *reqState) {
	if sid := h.Get("Mcp-Session-Id"); sid != "" && st != nil && st.principal != nil {
		h.Set("Mcp-Session-Id", g.binder.wrap(sid, st.principal))
	}
}

// streamBody calls done once when the stream's body is closed.
type streamBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *streamBody) Close() error {
	b.once.Do(b.done)
	return b.ReadCloser.Close()
}
