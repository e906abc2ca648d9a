//go:build !nodev

package main

import (
	"cmp"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/mcp-gateway/gateway/cmd/gateway/internal/devauth"
	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/tools"
)

// devConfig is the configuration of development mode. The gateway itself is configured as in production (see
// config.Config); development mode fills in the issuer, the upstream and a few defaults, and refuses anything that
// would make it reachable from another machine.
type devConfig struct {
	// IssuerAddr is where the development authorization server listens, on loopback. Default 127.0.0.1:3002.
	IssuerAddr string `env:"GATEWAY_DEV_ISSUER_ADDR" envDefault:"127.0.0.1:3002"`
	// ToolsAddr is where the in-process tool service listens, on loopback. Default 127.0.0.1:0 (a free port).
	ToolsAddr string `env:"GATEWAY_DEV_TOOLS_ADDR" envDefault:"127.0.0.1:0"`
	// AutoLogin is the id or email of a demo user signed in without the sign-in and consent pages. Default empty
	// (the pages are shown). For scripts and CI.
	AutoLogin string `env:"GATEWAY_DEV_AUTOLOGIN"`

	// The gateway's own variables that development mode reads first. Defaults: listen on localhost:3000, public URL
	// http://localhost:<port>, no metrics listener.
	ListenAddr  string `env:"GATEWAY_LISTEN_ADDR"`
	Host        string `env:"HOST"`
	Port        string `env:"PORT"`
	PublicURL   string `env:"GATEWAY_PUBLIC_URL"`
	PublicAlias string `env:"MCP_URL"`
	MetricsAddr string `env:"GATEWAY_METRICS_ADDR" envDefault:"off"`
	UpstreamURL string `env:"GATEWAY_UPSTREAM_URL"`
}

// devPolicyYAML is the example policy that development mode loads unless GATEWAY_POLICY_FILE is set (docs/policy.md
// shows it): the demo admin may use every tool, the member get-workos-user too (permission users:read), the guest
// only get-user-info and get-user-permissions.
//
//go:embed dev-policy.yaml
var devPolicyYAML string

// inspectorOrigins are MCP Inspector's browser origins, allowed by default in development mode.
var inspectorOrigins = []string{"http://localhost:6274", "http://127.0.0.1:6274"}

// loadDevConfig reads and checks development mode's configuration, reporting every problem at once.
func loadDevConfig(environ map[string]string) (devConfig, error) {
	var c devConfig
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return c, err
	}
	listenName := "GATEWAY_LISTEN_ADDR"
	if c.ListenAddr == "" {
		c.ListenAddr = net.JoinHostPort(cmp.Or(c.Host, "localhost"), cmp.Or(c.Port, "3000"))
		listenName = "HOST and PORT"
	}
	var errs []error
	for _, a := range []struct{ name, addr string }{
		{listenName, c.ListenAddr},
		{"GATEWAY_DEV_ISSUER_ADDR", c.IssuerAddr},
		{"GATEWAY_DEV_TOOLS_ADDR", c.ToolsAddr},
	} {
		if err := checkLoopbackAddr(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.name, err))
		}
	}
	if c.MetricsAddr != "off" && c.MetricsAddr != "" {
		if err := checkLoopbackAddr(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("GATEWAY_METRICS_ADDR: %w", err))
		}
	}
	name, public := "GATEWAY_PUBLIC_URL", c.PublicURL
	if public == "" {
		name, public = "MCP_URL", c.PublicAlias
	}
	if public != "" {
		if u, err := url.Parse(public); err != nil || !config.IsLoopbackHost(u.Hostname()) {
			errs = append(errs, fmt.Errorf("%s: development mode serves this machine only, so the public URL must be on a loopback host such as http://localhost:3000 (got %q)", name, public))
		}
	}
	return c, errors.Join(errs...)
}

// checkLoopbackAddr accepts host:port whose host is localhost or a loopback IP address. An empty host would listen on
// every interface.
func checkLoopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be host:port (got %q)", addr)
	}
	if host != "localhost" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("development mode listens on loopback only: use localhost, 127.0.0.1 or [::1] (got %q)", addr)
		}
	}
	return nil
}

// listenLoopback binds addr (checked by checkLoopbackAddr) and makes sure the bound address is loopback. For localhost
// it binds 127.0.0.1 and, when it can, [::1] on the same port as well, because clients try either.
func listenLoopback(addr string) ([]net.Listener, error) {
	host, port, _ := net.SplitHostPort(addr)
	first := addr
	if host == "localhost" {
		first = net.JoinHostPort("127.0.0.1", port)
	}
	ln, err := net.Listen("tcp", first)
	if err != nil {
		return nil, err
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("bound %s, which is not loopback", ln.Addr())
	}
	lns := []net.Listener{ln}
	if host == "localhost" {
		if ln6, err := net.Listen("tcp", net.JoinHostPort("::1", portOf(ln))); err == nil {
			lns = append(lns, ln6)
		}
	}
	return lns, nil
}

// urlHost is the host:port to put in a URL for a listener bound from configured: "localhost" stays a name, an IP
// address is the bound one.
func urlHost(configured string, ln net.Listener) string {
	if host, _, _ := net.SplitHostPort(configured); host == "localhost" {
		return net.JoinHostPort("localhost", portOf(ln))
	}
	return ln.Addr().String()
}

func portOf(ln net.Listener) string {
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// runDev runs development mode: the development authorization server, the tool service and the gateway, each on its
// own loopback listener, in this process. The gateway runs exactly as in production, with the development server as
// its issuer and the tool service as its upstream.
func runDev(ctx context.Context, environ map[string]string, stdout, stderr io.Writer) (err error) {
	dc, err := loadDevConfig(environ)
	if err != nil {
		return fmt.Errorf("development mode:\n%w", err)
	}
	var open []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range open {
				ln.Close()
			}
		}
	}()
	bind := func(name, addr string) ([]net.Listener, error) {
		lns, err := listenLoopback(addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		open = append(open, lns...)
		return lns, nil
	}
	gwLns, err := bind("GATEWAY_LISTEN_ADDR", dc.ListenAddr)
	if err != nil {
		return err
	}
	asLns, err := bind("GATEWAY_DEV_ISSUER_ADDR", dc.IssuerAddr)
	if err != nil {
		return err
	}
	issuer := "http://" + urlHost(dc.IssuerAddr, asLns[0])
	ownTools := dc.UpstreamURL == ""
	var toolsLns []net.Listener
	toolsURL := ""
	if ownTools {
		if toolsLns, err = bind("GATEWAY_DEV_TOOLS_ADDR", dc.ToolsAddr); err != nil {
			return err
		}
		toolsURL = "http://" + toolsLns[0].Addr().String() + tools.Path
	}

	genv, ignored := devGatewayEnv(environ, dc, issuer, gwLns[0], toolsURL)
	examplePolicy, removePolicy, err := devPolicy(genv)
	if err != nil {
		return err
	}
	defer removePolicy()
	cfg, err := config.Load(genv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	log := newLogger(cfg, stderr)
	logWarnings(log, cfg, environ)
	if len(ignored) > 0 {
		log.Warn("development mode uses its own authorization server; ignoring these variables", "ignored", ignored)
	}
	as, err := devauth.New(devauth.Options{Issuer: issuer, Resource: cfg.Resource, AutoLogin: dc.AutoLogin, Logger: log.With("service", "devauth")})
	if err != nil {
		return fmt.Errorf("GATEWAY_DEV_AUTOLOGIN or the development authorization server: %w", err)
	}
	sidecars := make([]sidecar, 0, len(asLns)+1)
	for _, ln := range asLns {
		sidecars = append(sidecars, sidecar{ln: ln, srv: devServer(as, log)})
	}
	if ownTools {
		h := tools.Handler(tools.Options{
			Logger:         log.With("service", "tools"),
			WorkOSBaseURL:  issuer,
			WorkOSAPIKey:   as.APIKey(),
			IdentitySecret: []byte(cfg.IdentitySecret),
		})
		sidecars = append(sidecars, sidecar{ln: toolsLns[0], srv: devServer(h, log)})
	}

	log.Warn("development mode", "mcp_url", cfg.Resource, "issuer", issuer, "upstream", cfg.Upstream.Redacted(),
		"autologin", dc.AutoLogin, "note", "demo users sign in without passwords; for this machine only")
	printBanner(stdout, cfg, as, ownTools, examplePolicy)
	return serve(ctx, cfg, log, stderr, gwLns, sidecars)
}

// devPolicy sets GATEWAY_POLICY_FILE in genv, unless it is set, to the example policy written to a new temporary
// directory, and reports whether it did; remove deletes the directory (a no-op when the policy is the user's). The
// gateway reads the policy from a file in development mode as in production.
func devPolicy(genv map[string]string) (example bool, remove func(), err error) {
	if genv["GATEWAY_POLICY_FILE"] != "" {
		return false, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "gateway-dev-")
	if err != nil {
		return false, nil, fmt.Errorf("development mode: the example policy: %w", err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(devPolicyYAML), 0o600); err != nil {
		os.RemoveAll(dir)
		return false, nil, fmt.Errorf("development mode: the example policy: %w", err)
	}
	genv["GATEWAY_POLICY_FILE"] = path
	return true, func() { os.RemoveAll(dir) }, nil
}

// devGatewayEnv is the gateway's configuration in development mode: the user's, with the development server as issuer,
// the listener gwLn, the tool service at toolsURL when it is not empty, and development defaults. ignored lists the
// user's variables that development mode replaces.
func devGatewayEnv(environ map[string]string, dc devConfig, issuer string, gwLn net.Listener, toolsURL string) (genv map[string]string, ignored []string) {
	genv = maps.Clone(environ)
	ignored = []string{}
	for _, k := range []string{"GATEWAY_ISSUER_URL", "MCP_USE_OAUTH_WORKOS_SUBDOMAIN", "WORKOS_SUBDOMAIN", "MCP_USE_OAUTH_WORKOS_CLIENT_ID", "WORKOS_CLIENT_ID"} {
		if genv[k] != "" {
			ignored = append(ignored, k)
		}
		delete(genv, k)
	}
	genv["GATEWAY_ISSUER_URL"] = issuer
	genv["GATEWAY_LISTEN_ADDR"] = gwLn.Addr().String()
	genv["GATEWAY_METRICS_ADDR"] = dc.MetricsAddr
	if toolsURL != "" {
		genv["GATEWAY_UPSTREAM_URL"] = toolsURL
	}
	setDefault := func(k, v string) {
		if genv[k] == "" {
			genv[k] = v
		}
	}
	if dc.PublicURL == "" && dc.PublicAlias == "" {
		genv["GATEWAY_PUBLIC_URL"] = "http://" + urlHost(dc.ListenAddr, gwLn)
	}
	public := cmp.Or(genv["GATEWAY_PUBLIC_URL"], genv["MCP_URL"])
	setDefault("GATEWAY_ALLOWED_ORIGINS", strings.Join(append([]string{strings.TrimSuffix(public, "/")}, inspectorOrigins...), ","))
	setDefault("GATEWAY_IDENTITY_SECRET", randomSecret())
	setDefault("GATEWAY_SHUTDOWN_TIMEOUT", "2s")
	return genv, ignored
}

// devServer is the HTTP server of a sidecar.
func devServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// randomSecret returns 32 random bytes, base64-encoded: the identity secret shared by the gateway and the in-process
// tool service.
func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// printBanner tells a developer what runs and how to connect a client.
func printBanner(w io.Writer, cfg *config.Config, as *devauth.Server, ownTools, examplePolicy bool) {
	mcpURL := cfg.Resource
	upstream := cfg.Upstream.Redacted()
	if ownTools {
		upstream += "  (the tool service, in this process)"
	}
	policy := cfg.PolicyFile + "  (GATEWAY_POLICY_FILE)"
	if examplePolicy {
		policy = cfg.PolicyFile + `
                 the example policy (docs/policy.md): the admin may use every tool, the member get-workos-user
                 and the two self tools, the guest get-user-info and get-user-permissions only;
                 set GATEWAY_POLICY_FILE to use yours`
	}
	fmt.Fprintf(w, `
MCP gateway: development mode. Not for production: demo users sign in without passwords. Loopback only.

  MCP URL        %s
  issuer         %s  (development authorization server; its signing key is new at every start)
  upstream       %s
  policy         %s

Connect a client:
  MCP Inspector  npx @modelcontextprotocol/inspector
                 then Transport Type "Streamable HTTP", URL %s, Connect
  Claude Code    claude mcp add --transport http gateway-dev %s
                 then /mcp in Claude Code, choose gateway-dev, Authenticate

`, mcpURL, as.Issuer(), upstream, policy, mcpURL, mcpURL)
	if u, ok := as.AutoLogin(); ok {
		fmt.Fprintf(w, "Signed in automatically as %s (%s): GATEWAY_DEV_AUTOLOGIN is set, no pages are shown.\n\n", u.ID, u.Email)
	} else {
		fmt.Fprintln(w, "Demo users (choose one on the sign-in page, or set GATEWAY_DEV_AUTOLOGIN=<id or email>):")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, u := range as.Users() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", u.ID, u.Email, u.Name(), strings.Join(append([]string{cmp.Or(u.OrgID, "no organization")}, u.Roles...), ", "))
	}
	tw.Flush()
	fmt.Fprintln(w)
}
