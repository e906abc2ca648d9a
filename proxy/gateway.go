// Package proxy is the authenticating gateway: it verifies OAuth bearer tokens issued by the configured authorization
// server, answers with the challenges and metadata MCP clients need to obtain one, and forwards authenticated requests
// to the MCP server behind it with the verified identity in headers (see package identity).
//
// One request goes, file by file: routes.go (the chi router: public routes, or the protected group) → observe.go
// (request id, access line, metrics; with traces, trace.go's span) → body.go (read deadline, size limit) → origin.go (Origin check, CORS) →
// authenticate.go (package token verifies) → session.go (session binding) → with a policy (GATEWAY_POLICY_FILE),
// authorize.go on the MCP endpoint (package authz reads and decides each MCP message by package policy, filters list
// answers and writes the audit events; policystore.go holds the policy in force and counts the decisions) →
// stream.go (a long-lived event stream takes package relay, anything else the reverse proxy) → forward.go (strip
// credentials and inbound identity headers, set the identity) → upstream → back, streamed. Whatever fails on the way
// is an *Error written by writeError (errors.go), the one place that decides what a client sees. The configuration is
// package config's.
//
// With a pre-registered client (config.Config.StaticClientID, "Option B"), the gateway is also the authorization
// server MCP clients see: package authserver, whose routes the gateway mounts (optionb.go joins the two).
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-gateway/gateway/metadata"
	"github.com/mcp-gateway/gateway/proxy/authserver"
	"github.com/mcp-gateway/gateway/proxy/authz"
	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/redisstore"
	"github.com/mcp-gateway/gateway/proxy/relay"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// Options are the gateway's injected dependencies. Zero values are replaced by defaults.
type Options struct {
	Logger *slog.Logger          // nil: discard
	Reg    prometheus.Registerer // nil: a private registry
	Now    func() time.Time      // nil: time.Now
	// ASClient fetches the authorization server's metadata and keys. nil: a client with a 10s timeout.
	ASClient *http.Client
	// UpstreamTransport carries requests to the upstream. nil: a transport tuned for one upstream.
	UpstreamTransport http.RoundTripper
	// AuditOut is where GATEWAY_AUDIT_LOG=stderr writes. nil: os.Stderr.
	AuditOut io.Writer
	// Traces records a server span per request and propagates its context upstream (package tracing's Provider, in
	// the binaries). nil: no traces, and nothing of them on the request path.
	Traces trace.TracerProvider
}

// Gateway is the authenticating reverse proxy. Create it with New, start its background work with Run, and serve
// Handler.
type Gateway struct {
	cfg      *config.Config
	log      *slog.Logger
	metrics  *Metrics
	now      func() time.Time
	asClient *http.Client
	obs      *observer

	// issuers are the authorization servers whose tokens are accepted, in the order of GATEWAY_ISSUER_URL; tokens
	// routes each token to its own (and opaque ones to the introspection endpoint).
	issuers []*issuer
	tokens  *token.Issuers
	binder  sessionBinder
	secret  []byte // identity signing key; nil: unsigned
	// mappedNames are the headers GATEWAY_CLAIM_HEADERS adds, which the signature lists (version 3); nil: version 2.
	mappedNames []string
	prmURL      string

	transport http.RoundTripper
	buffers   *bufferPool
	// streamRelay is whether long-lived event streams take the relay (package relay) rather than the reverse proxy
	// (GATEWAY_STREAM_RELAY, decided by connectUpstream); relays are those the upstream handlers built.
	streamRelay  bool
	relays       []*relay.Relay
	dialer       *net.Dialer
	upstreamAddr string // host:port of the upstream
	// upstreamOrigin is the upstream URL without its path.
	upstreamOrigin *url.URL

	asDoc   atomic.Pointer[metadata.Document]
	oidcDoc atomic.Pointer[metadata.Document]
	// upstreamAS is the first authorization server's metadata once discovered.
	upstreamAS atomic.Pointer[metadata.AuthServer]
	// authServer serves Option B (a pre-registered client); nil in Option A.
	authServer *authserver.Server

	// policy decides per caller what MCP messages may name (GATEWAY_POLICY_FILE); nil: no policy, every valid token
	// may use everything, and the request path is the one without policy.
	policy *policyStore
	// limits are the limits per user and per client address (GATEWAY_RATE_LIMIT_*, GATEWAY_MAX_STREAMS_USER).
	limits *limits
	// redis holds the state replicas share (GATEWAY_REDIS_URL); nil: each replica keeps its own in memory.
	redis      *redisstore.Client
	audit      *authz.AuditLog // nil: no audit events
	closeAudit func()

	readyMu    sync.Mutex
	readyAt    time.Time
	upstreamOK bool
	probe      *http.Client // /readyz's request to the upstream

	// closing ends with the start of a shutdown, and with it the event streams.
	closing    context.Context
	endStreams context.CancelFunc

	handler http.Handler

	// tracer starts the request spans; nil: traces are off.
	tracer trace.Tracer
}

// New builds a gateway for a validated configuration. It does no I/O: Run discovers the authorization server.
func New(cfg *config.Config, o Options) (*Gateway, error) {
	g := &Gateway{cfg: cfg, log: o.Logger, now: o.Now, asClient: o.ASClient}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.asClient == nil {
		g.asClient = &http.Client{Timeout: 10 * time.Second}
	}
	reg := o.Reg
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	g.metrics = NewMetrics(reg)
	g.obs = &observer{log: g.log, metrics: g.metrics, now: g.now, reqIDs: newRequestIDs(), writeTimeout: cfg.WriteTimeout,
		budget: logBudget{interval: logBudgetInterval, max: logBudgetLines}, traceUser: cfg.TraceUserID}
	if o.Traces != nil {
		g.tracer = o.Traces.Tracer("github.com/mcp-gateway/gateway/proxy")
	}
	g.limits = newLimits(cfg, g.metrics, g.log, g.now)
	var used authserver.UsedStore // nil: in memory
	if g.redis = g.newRedis(reg); g.redis != nil {
		g.limits.shareThrough(g.redis)
		used = g.redis.Once(redisStatePrefix)
	}

	prm, err := metadata.WellKnownURL(cfg.Resource, "oauth-protected-resource")
	if err != nil {
		return nil, fmt.Errorf("protected resource metadata URL: %w", err)
	}
	g.prmURL = prm
	g.binder = newSessionBinder(g.key("session-binding", false), cfg.IssuerList())
	if cfg.IdentitySecret != "" {
		g.secret = []byte(cfg.IdentitySecret)
	}
	g.mappedNames = cfg.ClaimHeaderMap.Names()
	if cfg.StaticClientID != "" {
		resolver, err := clientMetadata(cfg, g.now, g.log)
		if err != nil {
			return nil, err
		}
		g.authServer, err = authserver.New(cfg.AuthServer(), authserver.Options{Key: g.key("oauth-facade", true),
			Client: g.asClient, Now: g.now, AuthServer: g.upstreamAS.Load, Note: noteOAuth, Used: used, ClientMetadata: resolver})
		if err != nil {
			return nil, err
		}
		g.log.Info("pre-registered client: the gateway is the authorization server MCP clients see (Option B)",
			"client_id", cfg.StaticClientID, "callback", g.authServer.Callback(), "confidential", cfg.ClientSecret != "")
	}
	g.newIssuers()
	if err := g.loadPolicy(o); err != nil {
		return nil, err
	}
	g.connectUpstream(o.UpstreamTransport)
	g.closing, g.endStreams = context.WithCancel(context.Background())
	g.handler = g.routes()
	for _, is := range cfg.Issuers {
		if !slices.Contains(is.Audiences, cfg.Resource) {
			g.log.Warn("the audiences of an issuer (GATEWAY_AUDIENCES, or GATEWAY_ISSUER_AUDIENCES) do not include the resource identifier that "+
				"the protected resource metadata advertises; clients that request a token for it will be refused", "issuer", is.URL,
				"resource", cfg.Resource, "audiences", is.Audiences)
		}
	}
	return g, nil
}

// loadPolicy loads GATEWAY_POLICY_FILE, when it is set, and opens the audit log that goes with it. A policy that
// does not load stops the gateway.
func (g *Gateway) loadPolicy(o Options) error {
	g.closeAudit = func() {}
	if g.cfg.PolicyFile == "" {
		return nil
	}
	var err error
	if g.policy, err = newPolicyStore(g.cfg.PolicyFile, g.metrics, g.log); err != nil {
		return err
	}
	g.audit, g.closeAudit, err = authz.OpenAuditLog(g.cfg.AuditLog, o.AuditOut, authz.AuditOptions{Issuer: g.cfg.Issuer,
		HashArguments: g.cfg.AuditArguments == "hash", Now: g.now, Dropped: g.metrics.AuditDropped.Inc})
	if err != nil {
		return fmt.Errorf("GATEWAY_AUDIT_LOG: %w", err)
	}
	return nil
}

// ReloadPolicy reads the policy file again and puts it in force for the requests that follow, and opens the audit
// log's file again (after a log rotation). A file that does not load leaves the policy in force; the error says why
// (and is logged). Without a policy it returns ErrNoPolicy.
func (g *Gateway) ReloadPolicy() error {
	if g.policy == nil {
		return ErrNoPolicy
	}
	if err := g.audit.Reopen(); err != nil {
		g.log.Error("audit log not reopened; events keep going to the file open", "file", g.cfg.AuditLog, "err", err)
	}
	return g.policy.reload()
}

// key returns the key for one purpose: derived from GATEWAY_SESSION_SECRET, else from GATEWAY_IDENTITY_SECRET, else
// random (it then ends with the process, and replicas do not share it; warn says whether to say so).
func (g *Gateway) key(purpose string, warn bool) []byte {
	switch {
	case g.cfg.SessionSecret != "":
		return derive(g.cfg.SessionSecret, purpose)
	case g.cfg.IdentitySecret != "":
		return derive(g.cfg.IdentitySecret, purpose)
	}
	if warn {
		g.log.Warn("neither GATEWAY_SESSION_SECRET nor GATEWAY_IDENTITY_SECRET is set: client registrations, codes and " +
			"consents are sealed with a random key, so they end with this process and replicas do not accept each other's")
	}
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// derive returns a 32-byte key for one purpose from a configured secret: SHA-256 of a purpose label and the secret
// (at least 32 bytes). It must stay as it is: session ids and Option B's client ids, which clients keep across
// restarts, upgrades and replicas, are bound or sealed under keys it derived.
func derive(secret, purpose string) []byte {
	k := sha256.Sum256([]byte("mcp-gateway/" + purpose + "\x00" + secret))
	return k[:]
}

// connectUpstream sets up the way to the upstream: transport (the default, tuned for one upstream, unless one is
// injected), the relay for event streams, and /readyz's probe.
func (g *Gateway) connectUpstream(transport http.RoundTripper) {
	cfg := g.cfg
	g.upstreamOrigin = &url.URL{Scheme: cfg.Upstream.Scheme, Host: cfg.Upstream.Host}
	g.upstreamAddr = cfg.Upstream.Host
	if cfg.Upstream.Port() == "" {
		g.upstreamAddr = net.JoinHostPort(cfg.Upstream.Hostname(), "80")
	}
	g.dialer = upstreamDialer()
	g.probe = &http.Client{
		Timeout:       time.Second,
		Transport:     &http.Transport{DialContext: g.dial, DisableKeepAlives: true, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	g.streamRelay = g.chooseStreamPath(transport != nil)
	if transport == nil {
		transport = newUpstreamTransport(g.dial, cfg.UpstreamTimeout)
	} else {
		g.probe.Transport = transport
	}
	g.transport = transport
	g.buffers = newBufferPool()
}

// upstreamDialer connects to the upstream.
func upstreamDialer() *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
}

// dial connects to the upstream. Each write on the connection must be taken within GATEWAY_UPSTREAM_TIMEOUT, so that
// an upstream that stops reading a request body cannot hold the request (the transport's response-header timeout only
// starts once the body is written).
func (g *Gateway) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := g.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &writeBoundConn{Conn: c, timeout: g.cfg.UpstreamTimeout}, nil
}

// writeBoundConn gives each write timeout to complete; reads are not bounded by it.
type writeBoundConn struct {
	net.Conn
	timeout time.Duration
	until   time.Time // the write deadline last set; writes come from one goroutine at a time
}

func (c *writeBoundConn) Write(p []byte) (int, error) {
	if now := time.Now(); c.until.Sub(now) < c.timeout/2 {
		c.until = now.Add(c.timeout)
		c.Conn.SetWriteDeadline(c.until)
	}
	return c.Conn.Write(p)
}

// newUpstreamTransport returns a transport for a single upstream: many idle connections, no compression (so that
// event streams are never buffered), the response head within headTimeout (a body, such as an event stream, may take
// as long as it likes), HTTP/1.1.
func newUpstreamTransport(dial func(context.Context, string, string) (net.Conn, error), headTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: headTimeout,
		// Default (4 KiB) connection buffers: an idle event stream holds its upstream connection, so every KiB here is
		// paid per open stream, and a request with identity headers still fits in one write.
	}
}

// Handler returns the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Ready reports whether the key set of at least one issuer is loaded.
func (g *Gateway) Ready() bool { return len(g.issuersNotReady()) < len(g.issuers) }

func (g *Gateway) onKeyFetch(issuer string, err error) {
	if err != nil {
		g.metrics.JWKSFetches.WithLabelValues("error").Inc()
		g.log.Warn("key set fetch failed; keeping the keys already loaded", "issuer", issuer, "err", err)
		return
	}
	g.metrics.JWKSFetches.WithLabelValues("ok").Inc()
	g.metrics.KeysLoaded.Set(1)
}

// Run discovers each authorization server and loads its keys, each retrying with backoff until it succeeds (its
// tokens are answered with 503 meanwhile), then refreshes the keys every JWKSRefreshInterval. With a policy, it also
// reloads the policy when its file changes. It returns when ctx ends.
func (g *Gateway) Run(ctx context.Context) {
	if g.policy != nil {
		go g.policy.watch(ctx, policyPollInterval)
	}
	var wg sync.WaitGroup
	for _, is := range g.issuers {
		wg.Go(func() { g.runIssuer(ctx, is) })
	}
	defer wg.Wait()
	logs := time.NewTicker(logBudgetInterval)
	defer logs.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-logs.C:
			g.obs.logDropped(g.obs.budget.flush(g.now()))
		}
	}
}

// upstreamReachable reports whether the upstream answers an HTTP request (any status: a refusal is an answer) within
// a second, cached for a second so that probes cannot amplify load. An upstream that accepts connections but never
// answers is not ready.
func (g *Gateway) upstreamReachable(ctx context.Context) bool {
	g.readyMu.Lock()
	defer g.readyMu.Unlock()
	now := g.now()
	if !g.readyAt.IsZero() && now.Sub(g.readyAt) < time.Second {
		return g.upstreamOK
	}
	// Not the caller's context: a caller that hangs up must not decide what the next second's probes say.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	ok := false
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, g.cfg.Upstream.String(), nil)
	if err == nil {
		req.Header.Set("User-Agent", "mcp-gateway-readyz")
		var resp *http.Response
		if resp, err = g.probe.Do(req); err == nil {
			resp.Body.Close()
			ok = true
		}
	}
	g.readyAt, g.upstreamOK = g.now(), ok
	return ok
}

// requestIDs makes request ids: a random per-process prefix and a counter, unique without a random read per request.
type requestIDs struct {
	prefix string
	n      *atomic.Uint64
}

func newRequestIDs() requestIDs {
	return requestIDs{prefix: rand.Text()[:10] + "-", n: new(atomic.Uint64)}
}

func (r requestIDs) next() string {
	return r.prefix + fmt.Sprint(r.n.Add(1))
}

// bufferPool lends the reverse proxy its copy buffers, so that a response does not allocate one. An open event stream
// holds its buffer while it waits for the next event, so the size is a trade between copy calls on large responses and
// memory per idle stream.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 4<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(p []byte) { b.p.Put(&p) }
