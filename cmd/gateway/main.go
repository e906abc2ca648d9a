// Command gateway is the authenticating OAuth gateway for MCP servers. It is configured from the environment; see
// docs/configuration.md for every variable.
//
//	gateway                 serve
//	gateway --check         check the configuration, the authorization server and the upstream, then exit
//	gateway --healthcheck   ask a running gateway for /healthz (for container health checks)
//	gateway --dev           development mode: a local authorization server with demo users and the tool service,
//	                        on loopback only (also GATEWAY_DEV=true); not for production
//	gateway policy explain  the decision of the policy (GATEWAY_POLICY_FILE) for a token and a tool, and why; offline
//
// SIGHUP reloads the policy (GATEWAY_POLICY_FILE) and reopens the audit log file; SIGINT and SIGTERM stop the gateway gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcp-gateway/gateway/proxy"
	"github.com/mcp-gateway/gateway/proxy/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], environ(os.Environ()), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// environ turns KEY=value pairs into a map.
func environ(kv []string) map[string]string {
	m := make(map[string]string, len(kv))
	for _, e := range kv {
		if k, v, ok := strings.Cut(e, "="); ok {
			m[k] = v
		}
	}
	return m
}

// run parses the flags and runs the gateway, its checks, its health check or its development mode until ctx ends.
func run(ctx context.Context, args []string, env map[string]string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	healthcheck := fs.Bool("healthcheck", false, "ask the gateway configured by the environment for /healthz and exit 0 if it answers 200 (for container health checks; needs no shell)")
	check := fs.Bool("check", false, "check the configuration, the authorization server (metadata, keys, client registration, PKCE) and the upstream; print one line per check and exit non-zero if any fails")
	dev := fs.Bool("dev", false, "development mode (also GATEWAY_DEV=true): a local authorization server with demo users and the tool service, on loopback only; not for production")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gateway [--dev | --check | --healthcheck]\n       gateway policy explain --token <JWT or claims JSON> --tool <name>   (offline; the token is not verified)\n\nThe gateway is configured from the environment (GATEWAY_*, MCP_USE_OAUTH_WORKOS_*); see docs/configuration.md.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // -h asks for the usage, which is printed
		}
		return err
	}
	if fs.Arg(0) == "policy" && fs.NFlag() == 0 {
		return runPolicy(fs.Args()[1:], env, stdout, stderr)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	devMode := *dev
	if v := env["GATEWAY_DEV"]; v != "" && !devMode {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("GATEWAY_DEV: must be true or false (got %q)", v)
		}
		devMode = b
	}
	switch {
	case devMode && (*check || *healthcheck):
		return errors.New("--check and --healthcheck do not apply to development mode (--dev, GATEWAY_DEV)")
	case *check && *healthcheck:
		return errors.New("use either --check or --healthcheck")
	case devMode:
		return runDev(ctx, env, stdout, stderr)
	case *check:
		return runCheck(ctx, env, stdout)
	}

	cfg, err := config.Load(env)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	if *healthcheck {
		return checkHealth(ctx, cfg.ListenAddr)
	}
	logOut := newLineBatcher(stderr)
	defer logOut.Close()
	log := newLogger(cfg, logOut)
	logWarnings(log, cfg, env)
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("GATEWAY_LISTEN_ADDR: %w", err)
	}
	return serve(ctx, cfg, log, logOut, []net.Listener{ln}, nil)
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: cfg.Level}))
}

// sidecar is a server that runs in the gateway's process and stops with it: the development mode's authorization
// server and tool service.
type sidecar struct {
	srv *http.Server
	ln  net.Listener
}

// serve runs the gateway on lns (already bound; every one serves the same handler), its metrics listener and the
// sidecars until ctx ends, then shuts them all down gracefully, the gateway first. It closes lns on every path.
// logOut is where the log goes, and the audit log with GATEWAY_AUDIT_LOG=stderr.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, logOut io.Writer, lns []net.Listener, sidecars []sidecar) error {
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
		for _, s := range sidecars {
			s.ln.Close()
		}
	}
	logRedisTo(cfg, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	traces, err := startTraces(cfg, log)
	if err != nil {
		closeAll()
		return err
	}
	opts := proxy.Options{Logger: log, Reg: reg, AuditOut: logOut}
	if traces != nil {
		opts.Traces = traces
	}
	gw, err := proxy.New(cfg, opts)
	if err != nil {
		closeAll()
		return err
	}
	var mln net.Listener
	if cfg.MetricsAddr != "" {
		if mln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			closeAll()
			return fmt.Errorf("GATEWAY_METRICS_ADDR: %w", err)
		}
	}

	srv := gatewayServer(cfg, gw, log)
	servers := []*http.Server{srv}
	errc := make(chan error, len(lns)+len(sidecars)+1)
	for _, s := range sidecars {
		go func() { errc <- s.srv.Serve(s.ln) }()
	}
	maxConns := connectionCap(cfg.MaxConnections)
	var lim *connLimiter
	if maxConns > 0 {
		lim = newConnLimiter(maxConns)
		srv.ConnState = lim.track
	}
	for _, ln := range lns {
		if lim != nil {
			ln = newLimitListener(ln, lim)
		}
		go func() { errc <- srv.Serve(ln) }()
	}
	if mln != nil {
		msrv := metricsServer(reg)
		servers = append(servers, msrv)
		go func() { errc <- msrv.Serve(mln) }()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	for _, s := range sidecars {
		servers = append(servers, s.srv)
	}

	log.Info("gateway listening",
		"addr", lns[0].Addr().String(), "mcp_url", cfg.Resource, "issuer", cfg.Issuer, "issuers", cfg.IssuerList(), "upstream", cfg.Upstream.Redacted(),
		"audiences", cfg.AudienceList, "required_scopes", cfg.ScopeList, "allowed_origins", cfg.OriginList,
		"identity_signature", cfg.IdentitySecret != "", "max_connections", maxConns,
		"read_timeout", cfg.ReadTimeout.String(), "upstream_timeout", cfg.UpstreamTimeout.String())
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); gw.Run(runCtx) }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHangup(runCtx, hup, gw.ReloadPolicy, log)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	cancel()
	stopBy := time.Now().Add(cfg.ShutdownTimeout)
	shutdown(cfg, log, gw, servers)
	<-done
	flushTraces(traces, stopBy, log)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// reloadOnHangup reloads the policy (reload) on each signal from hup until ctx ends. A policy that does not load is
// logged by the gateway, which keeps the one in force.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, reload func() error, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := reload(); errors.Is(err, proxy.ErrNoPolicy) {
				log.Info("SIGHUP: no policy to reload (GATEWAY_POLICY_FILE is unset)")
			}
		}
	}
}

// gatewayServer is the public server for gw.
func gatewayServer(cfg *config.Config, gw *proxy.Gateway, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           gw.Handler(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// No ReadTimeout or WriteTimeout: they would cut event streams. The gateway bounds request bodies itself
		// (GATEWAY_READ_TIMEOUT), and open streams end when a shutdown starts.
	}
	srv.RegisterOnShutdown(gw.EndStreams)
	return srv
}

// metricsServer serves reg's /metrics.
func metricsServer(reg *prometheus.Registry) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
}

// shutdown stops servers within GATEWAY_SHUTDOWN_TIMEOUT, the gateway's first (servers[0]), and waits for the
// gateway's own streams and access lines.
func shutdown(cfg *config.Config, log *slog.Logger, gw *proxy.Gateway, servers []*http.Server) {
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	// A fresh context: the serving context is already cancelled.
	sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer scancel()
	// The gateway first: its Shutdown ends the event streams (gw.EndStreams) and lets requests in flight finish.
	for i, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			log.Warn("open requests did not finish in time; closing them", "err", err)
			s.Close()
		}
		if i == 0 {
			// Streams relayed on taken-over connections, which the server does not see, and the access lines of
			// requests that Close cut: their handlers are still returning.
			wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
			if sctx.Err() == nil {
				wctx, wcancel = sctx, func() {}
			}
			if err := gw.Shutdown(wctx); err != nil {
				log.Warn("some requests were still ending when the gateway stopped", "err", err)
			}
			wcancel()
		}
	}
}

// connectionCap returns the number of client connections the gateway accepts at once for GATEWAY_MAX_CONNECTIONS
// configured: the value itself when positive, none (0) when negative, and when 0 half of what the open-file limit
// leaves after 64 descriptors for the gateway's own use, since a proxied request may hold two (client and upstream).
func connectionCap(configured int) int {
	switch {
	case configured > 0:
		return configured
	case configured < 0:
		return 0
	}
	files := openFileLimit()
	if files <= 0 {
		return 0
	}
	return max(files-64, 32) / 2
}

// connLimiter holds the places under GATEWAY_MAX_CONNECTIONS, shared by every listener of the gateway, and knows
// which connections are idle between requests: when a new client arrives and every place is taken, the connection
// idle the longest is closed to make room, so that idle keep-alive connections cannot keep everybody else waiting.
type connLimiter struct {
	sem   chan struct{}
	idled chan struct{} // a connection went idle
	mu    sync.Mutex
	idle  map[net.Conn]time.Time // keep-alive connections between requests, since when
}

func newConnLimiter(n int) *connLimiter {
	return &connLimiter{sem: make(chan struct{}, n), idled: make(chan struct{}, 1), idle: make(map[net.Conn]time.Time)}
}

// track is the server's ConnState hook.
func (l *connLimiter) track(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s != http.StateIdle {
		delete(l.idle, c)
		return
	}
	l.idle[c] = time.Now()
	select {
	case l.idled <- struct{}{}:
	default:
	}
}

// shedIdle closes the connection idle the longest and reports whether there was one.
func (l *connLimiter) shedIdle() bool {
	l.mu.Lock()
	var oldest net.Conn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(l.idle, oldest)
	l.mu.Unlock()
	if oldest == nil {
		return false
	}
	oldest.Close() // gives its place back at once
	return true
}

// limitListener gives each connection it accepts a place under its limiter. When there is none, it closes the
// longest idle connection, or waits for a place; the clients behind it wait in the kernel's queue.
type limitListener struct {
	net.Listener
	lim    *connLimiter
	done   chan struct{}
	closed sync.Once
}

func newLimitListener(ln net.Listener, lim *connLimiter) *limitListener {
	return &limitListener{Listener: ln, lim: lim, done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept() // first a client, so that idle connections are closed only for one that waits
	if err != nil {
		return nil, err
	}
	for {
		select {
		case l.lim.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.lim.sem }}, nil
		default:
		}
		if l.lim.shedIdle() {
			continue
		}
		select {
		case l.lim.sem <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.lim.sem }}, nil
		case <-l.lim.idled:
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

func (l *limitListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its place back once, when closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// checkHealth asks the gateway listening on addr for /healthz over loopback.
func checkHealth(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", req.URL, resp.Status)
	}
	return nil
}
