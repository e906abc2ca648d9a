// Command tools is the MCP tool service that runs behind the gateway: get-user-info, get-user-permissions and
// get-workos-user at /mcp, for the user the gateway names in its identity headers. It is configured by environment
// variables (see config) and logs JSON to stderr.
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
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"

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

func main() {
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
	name := "tools"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\nServes the MCP tools at /mcp behind the gateway; configured by environment variables.\n", name)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	cfg, err := loadConfig(environ)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	level, _ := parseLevel(cfg.LogLevel) // Validate checked it
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	warnInsecure(logger, cfg)

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
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
			Stateless:      cfg.Stateless,
			JSONResponse:   cfg.JSONResponse,
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
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if err != nil {
		err = errors.Join(fmt.Errorf("shutdown: %w", err), srv.Close())
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve: %w", serr))
	}
	if err == nil {
		logger.Info("stopped")
	}
	return err
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
