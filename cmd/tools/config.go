package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/mcp-gateway/gateway/cmd/internal/envname"
	"github.com/mcp-gateway/gateway/proxy/tracing"
)

// minSecretLen is the shortest GATEWAY_IDENTITY_SECRET accepted: 32 bytes, the size of an HMAC-SHA256 key.
const minSecretLen = 32

// config is the tool service's configuration: one field per variable, parsed by caarlos0/env (see envname.Load).
type config struct {
	// ListenAddr is the host:port the service listens on; the MCP endpoint is /mcp. Default 127.0.0.1:3001, which
	// only a gateway on the same host can reach. Any host but localhost or a loopback IP address (an empty host and
	// 0.0.0.0 included) needs GATEWAY_IDENTITY_SECRET: without it anyone who reaches the port could claim any identity,
	// so the service refuses to start.
	ListenAddr string `env:"TOOLS_LISTEN_ADDR" envDefault:"127.0.0.1:3001"`

	// WorkOSAPIURL is the base URL of the WorkOS API, used by get-workos-user. Default https://api.workos.com.
	// It must be an absolute http or https URL; the API key is sent to it, in the clear over http.
	WorkOSAPIURL string `env:"WORKOS_API_URL" envDefault:"https://api.workos.com"`

	// WorkOSAPIKey is the WorkOS secret API key (sk_…) used by get-workos-user, read from WORKOS_API_KEY when
	// MCP_USE_OAUTH_WORKOS_API_KEY is blank. No default: without a key that tool answers with an error and the other
	// two work as usual.
	WorkOSAPIKey string `env:"MCP_USE_OAUTH_WORKOS_API_KEY" alias:"WORKOS_API_KEY"`

	// IdentitySecret is the secret the gateway signs identity headers with (at least 32 bytes). No default: when
	// empty, identity headers are trusted unsigned, so the service must be reachable from the gateway alone; when
	// set, a request whose signature is missing, wrong or stale is refused.
	IdentitySecret string `env:"GATEWAY_IDENTITY_SECRET"`

	// IdentityMaxAge is how far an identity signature's time may lie from this host's clock, either side.
	// Default 60s. Longer tolerates more clock skew and widens the window in which captured headers can be replayed.
	IdentityMaxAge time.Duration `env:"TOOLS_IDENTITY_MAX_AGE" envDefault:"60s"`

	// Stateless serves MCP without sessions (go-sdk StreamableHTTPOptions.Stateless). Default true: every POST is
	// served on its own, GET and DELETE answer 405, and every protocol version the go-sdk knows is served, 2026-07-28
	// included. false keeps sessions (and standalone GET streams), refuses 2026-07-28 requests (400, -32022), and with
	// several replicas needs requests routed by Mcp-Session-Id.
	Stateless bool `env:"TOOLS_STATELESS" envDefault:"true"`

	// JSONResponse answers POSTs with application/json instead of an event stream (go-sdk
	// StreamableHTTPOptions.JSONResponse). Default false.
	JSONResponse bool `env:"TOOLS_JSON_RESPONSE" envDefault:"false"`

	// LogLevel is the lowest level logged: debug, info, warn or error. Default info.
	LogLevel slog.Level `env:"TOOLS_LOG_LEVEL" envDefault:"info"`

	// traces is the traces' configuration, from the OTEL_* variables (tracing.FromEnv): off unless an exporter is
	// asked for.
	traces tracing.Config
}

// loadConfig reads the configuration from environ (never from the process environment) and validates it, reporting
// every problem at once.
func loadConfig(environ map[string]string) (config, error) {
	var c config
	err := envname.Load(&c, environ)
	var traceErr error
	c.traces, traceErr = tracing.FromEnv(environ)
	return c, errors.Join(err, traceErr)
}

// Validate reports every problem with c at once, each naming its variable.
func (c config) Validate() error {
	return errors.Join(c.checkListen(), c.checkWorkOSURL(), c.checkSecret(), c.checkMaxAge())
}

// checkListen checks that TOOLS_LISTEN_ADDR is host:port, on loopback unless identity signatures are checked.
func (c config) checkListen() error {
	host, _, err := net.SplitHostPort(c.ListenAddr)
	switch {
	case err != nil:
		return &envname.Error{Name: "TOOLS_LISTEN_ADDR", Problem: "must be host:port", Err: err}
	case c.IdentitySecret == "" && !isLoopbackHost(host):
		return &envname.Error{Name: "TOOLS_LISTEN_ADDR", Problem: fmt.Sprintf("%q is not a loopback address, and GATEWAY_IDENTITY_SECRET is not set: anyone "+
			"who reaches the port could call the tools as any user. Set GATEWAY_IDENTITY_SECRET to the gateway's value "+
			"(the same on both; generate one with: openssl rand -base64 32), or listen on 127.0.0.1", c.ListenAddr)}
	}
	return nil
}

// checkWorkOSURL checks that WORKOS_API_URL is an absolute http(s) URL without user information, query or fragment.
// Its problems do not repeat the value, which may hold a password.
func (c config) checkWorkOSURL() error {
	u, err := url.Parse(c.WorkOSAPIURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return &envname.Error{Name: "WORKOS_API_URL", Problem: "must be an absolute http or https URL"}
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return &envname.Error{Name: "WORKOS_API_URL", Problem: "must not carry user information, a query or a fragment"}
	}
	return nil
}

// checkSecret checks that GATEWAY_IDENTITY_SECRET, when set, is long enough.
func (c config) checkSecret() error {
	if s := c.IdentitySecret; s != "" && len(s) < minSecretLen {
		return &envname.Error{Name: "GATEWAY_IDENTITY_SECRET", Problem: fmt.Sprintf("must be at least %d bytes when set", minSecretLen)}
	}
	return nil
}

// checkMaxAge checks that TOOLS_IDENTITY_MAX_AGE is positive.
func (c config) checkMaxAge() error {
	if c.IdentityMaxAge <= 0 {
		return &envname.Error{Name: "TOOLS_IDENTITY_MAX_AGE", Problem: "must be positive"}
	}
	return nil
}

// isLoopbackHost reports whether the listen host is localhost or a loopback IP address. An empty host and 0.0.0.0
// listen on every interface; a host name other than localhost may resolve to any address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// unknownVariables returns, sorted by name, the TOOLS_* variables in environ that config does not read, each with
// the closest name it does read. Other names are not checked: the service shares GATEWAY_IDENTITY_SECRET with the
// gateway, and its WorkOS names with the mcp-use example.
func unknownVariables(environ map[string]string) []envname.Unknown {
	return envname.Find(environ, []string{"TOOLS_"}, envname.Tags(reflect.TypeFor[config]()))
}

// apiKey returns the WorkOS API key without surrounding white space; "" when none is set.
func (c config) apiKey() string { return strings.TrimSpace(c.WorkOSAPIKey) }
