// Command tools is the MCP tool service that runs behind the gateway: get-user-info, get-user-permissions and
// get-workos-user at /mcp, for the user the gateway names in its identity headers. It is configured by environment
// variables (see config) and logs JSON to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"

	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-gateway/gateway/cmd/internal/gcfloor"
	"github.com/mcp-gateway/gateway/proxy/tracing"
	"github.com/mcp-gateway/gateway/tools"
)

const (
	// readHeaderTimeout bounds how long a client may take to send request headers. There is no write timeout:
	// MCP responses may be event streams that stay open.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections left idle this long.
	idleTimeout = 2 * time.Minute
	// shutdownTimeout bounds how long in-flight requests may take to finish once shutdown starts.
	shutdownTimeout = 10 * time.Second
)

// gcFloor is the heap the service may reach before its garbage collector runs (see package gcfloor): the go-sdk
// allocates a 32 KiB decoder buffer per JSON message, and with the default setting collecting that garbage took more
// CPU than the tool calls. GOGC in the environment overrides it.
const gcFloor = 16 << 20

func main() {
	gcfloor.Set(gcFloor, os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, env.ToMap(os.Environ()), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tools:", err)
		os.Exit(1)
	}
}

// run serves the tool service until ctx is done, then shuts down gracefully. args are the command line, program name
// first; environ holds the environment variables (run never reads the process environment). Logs, including the
// "listening" line that carries the bound address as addr, go to stderr as JSON; stdout is not written.
func run(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) error {
	healthcheck, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg, err := loadConfig(environ)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	if healthcheck {
		return checkHealth(ctx, cfg.ListenAddr)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	warnInsecure(logger, cfg)
	for _, u := range unknownVariables(environ) {
		logger.Warn("unknown variable: the tool service does not read it, so its value is ignored",
			"name", u.Name, "closest_known", u.Suggestion)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return serve(ctx, cfg, logger, ln)
}

// parseFlags parses the command line (program name first) and reports whether --healthcheck was given. It returns
// flag.ErrHelp, after printing the usage, for -h and --help.
func parseFlags(args []string, stderr io.Writer) (healthcheck bool, err error) {
	name := "tools"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&healthcheck, "healthcheck", false, "ask the service listening on TOOLS_LISTEN_ADDR whether it answers, and exit 0 if it does "+
		"(for container health checks; needs no shell)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [--healthcheck]\n\nServes the MCP tools at /mcp behind the gateway; configured by environment variables.\n\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return healthcheck, nil
}

// serve serves the tools on ln until ctx is done, then shuts down: requests in flight may finish within
// shutdownTimeout, standalone event streams end at once. It closes ln.
func serve(ctx context.Context, cfg config, logger *slog.Logger, ln net.Listener) error {
	traces, err := tracing.New(cfg.traces, tracing.Options{ServiceName: "mcp-tools", Logger: logger})
	if err != nil {
		ln.Close()
		return fmt.Errorf("traces: %w", err)
	}
	var tracer trace.Tracer
	if traces != nil {
		tracer = traces.Tracer("github.com/mcp-gateway/gateway/tools")
		logger.Info("traces on: a span per tool call", "endpoint", cfg.traces.RedactedEndpoint(), "sampler", cfg.traces.Sampler)
	}
	// Standalone event streams (GET /mcp) stay open until the client goes away; endStreams ends them once shutdown
	// starts so that it does not wait for the timeout.
	endStreams, stopStreams := context.WithCancel(context.Background())
	defer stopStreams()
	srv := &http.Server{
		Handler: closeStreamsOn(endStreams, tools.Handler(tools.Options{
			HTTPClient:     &http.Client{},
			Logger:         logger,
			Now:            time.Now,
			WorkOSBaseURL:  cfg.WorkOSAPIURL,
			WorkOSAPIKey:   cfg.apiKey(),
			IdentitySecret: []byte(cfg.IdentitySecret),
			IdentityMaxAge: cfg.IdentityMaxAge,
			Stateful:       !cfg.Stateless,
			JSONResponse:   cfg.JSONResponse,
			Tracer:         tracer,
		})),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(stopStreams)

	logger.Info("listening", "addr", ln.Addr().String(), "path", tools.Path,
		"stateless", cfg.Stateless, "json_response", cfg.JSONResponse)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return shutdown(srv, served, traces, logger)
}

// shutdown stops srv gracefully within shutdownTimeout, from a fresh context (the serving one is done), closes it
// when that runs out, and waits for Serve, whose result served carries, to return; then it exports the spans still
// waiting (traces, when not nil) within what is left of shutdownTimeout, and at least a second.
func shutdown(srv *http.Server, served <-chan error, traces *tracing.Provider, logger *slog.Logger) error {
	logger.Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("shutdown: %w", err), srv.Close())
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve: %w", serr))
	}
	if traces != nil {
		if ctx.Err() != nil {
			ctx, cancel = context.WithTimeout(context.Background(), time.Second)
			defer cancel()
		}
		if terr := traces.Shutdown(ctx); terr != nil {
			logger.Warn("traces: spans still waiting were not exported", "err", terr)
		}
	}
	if err == nil {
		logger.Info("stopped")
	}
	return err
}

// healthcheckTimeout bounds a --healthcheck, connection and answer included.
const healthcheckTimeout = 3 * time.Second

// errUnhealthy is returned by checkHealth when something answers on the address but not as the tool service does.
var errUnhealthy = errors.New("healthcheck: the answer is not the tool service's")

// checkHealth asks the service listening on addr (TOOLS_LISTEN_ADDR; an unspecified host means loopback) whether it is
// alive. The service has no health endpoint and must not grow an unauthenticated one, so the check sends what it
// refuses: GET /mcp without a gateway identity. It is alive if it answers 401 with the JSON error "unauthenticated",
// which only the tool service's identity check sends; connection errors, time-outs and any other answer are failures.
// Each check therefore leaves one "request refused" line (reason unauthenticated) in the service's log.
func checkHealth(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("TOOLS_LISTEN_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: tools.Path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	client := &http.Client{Transport: &http.Transport{Proxy: nil}} // never through a proxy from the environment
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusUnauthorized || json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&body) != nil || body.Error != "unauthenticated" {
		return fmt.Errorf("%w: GET %s answered %s", errUnhealthy, u.String(), resp.Status)
	}
	return nil
}

// warnInsecure logs, once at start, every setting that weakens the service's security.
func warnInsecure(logger *slog.Logger, cfg config) {
	if cfg.IdentitySecret == "" {
		logger.Warn("GATEWAY_IDENTITY_SECRET is not set: identity headers are trusted without a signature, " +
			"so nothing but the gateway must be able to reach this service")
	}
	if u, err := url.Parse(cfg.WorkOSAPIURL); err == nil && u.Scheme == "http" && cfg.apiKey() != "" {
		logger.Warn("WORKOS_API_URL is plain http: the WorkOS API key travels unencrypted", "url", u.Redacted())
	}
	if cfg.apiKey() == "" {
		logger.Info("no WorkOS API key (MCP_USE_OAUTH_WORKOS_API_KEY or WORKOS_API_KEY): get-workos-user will answer with an error")
	}
}

// closeStreamsOn returns next with the context of every GET request (an MCP standalone event stream) cancelled when
// done is; other requests keep their own context so that they may finish.
func closeStreamsOn(done context.Context, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(done, cancel)
		defer stop()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
