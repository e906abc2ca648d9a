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

	"github.com/caarlos0/env/v11"

	"github.com/mcp-gateway/gateway/cmd/internal/envname"
)

// minSecretLen is the shortest GATEWAY_IDENTITY_SECRET accepted: 32 bytes, the size of an HMAC-SHA256 key.
const minSecretLen = 32

// config is the tool service's configuration, read from the environment.
type config struct {
	// ListenAddr is the host:port the service listens on; the MCP endpoint is /mcp. Default 127.0.0.1:3001, which
	// only a gateway on the same host can reach. Any host but localhost or a loopback IP address (an empty host and
	// 0.0.0.0 included) needs GATEWAY_IDENTITY_SECRET: without it anyone who reaches the port could claim any identity,
	// so the service refuses to start.
	ListenAddr string `env:"TOOLS_LISTEN_ADDR" envDefault:"127.0.0.1:3001"`

	// WorkOSAPIURL is the base URL of the WorkOS API, used by get-workos-user. Default https://api.workos.com.
	// It must be an absolute http or https URL; the API key is sent to it, in the clear over http.
	WorkOSAPIURL string `env:"WORKOS_API_URL" envDefault:"https://api.workos.com"`

	// WorkOSAPIKey is the WorkOS secret API key (sk_…) used by get-workos-user. No default: without a key that
	// tool answers with an error and the other two work as usual.
	WorkOSAPIKey string `env:"MCP_USE_OAUTH_WORKOS_API_KEY"`

	// WorkOSAPIKeyAlias is read when WorkOSAPIKey is empty. No default.
	WorkOSAPIKeyAlias string `env:"WORKOS_API_KEY"`

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
	LogLevel string `env:"TOOLS_LOG_LEVEL" envDefault:"info"`
}

// varError is a configuration problem with one variable.
type varError struct {
	name    string
	problem string
	err     error
}

func (e *varError) Error() string {
	if e.err != nil {
		return e.name + ": " + e.problem + ": " + e.err.Error()
	}
	return e.name + ": " + e.problem
}

func (e *varError) Unwrap() error { return e.err }

// loadConfig reads the configuration from environ (never from the process environment) and validates it, reporting
// every problem at once.
func loadConfig(environ map[string]string) (config, error) {
	if environ == nil {
		environ = map[string]string{} // a nil map would make env read the process environment
	}
	var cfg config
	var errs []error
	failed := map[string]bool{}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		for _, e := range flatten(err) {
			var pe env.ParseError
			if errors.As(e, &pe) {
				name := envName(pe.Name)
				failed[name] = true
				e = &varError{name: name, problem: "invalid value", err: pe.Err}
			}
			errs = append(errs, e)
		}
	}
	for _, e := range flatten(cfg.Validate()) {
		// A variable that did not parse has been reported already; its zero value would only be reported again.
		var ve *varError
		if errors.As(e, &ve) && failed[ve.name] {
			continue
		}
		errs = append(errs, e)
	}
	return cfg, errors.Join(errs...)
}

// flatten returns the errors err joins, or err alone.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// envName returns the variable that config's field is read from.
func envName(field string) string {
	if f, ok := reflect.TypeFor[config]().FieldByName(field); ok {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		return name
	}
	return field
}

// Validate reports every problem with c at once, each naming its variable.
func (c config) Validate() error {
	var errs []error
	bad := func(name, problem string, err error) {
		errs = append(errs, &varError{name: name, problem: problem, err: err})
	}

	if host, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		bad("TOOLS_LISTEN_ADDR", "must be host:port", err)
	} else if c.IdentitySecret == "" && !isLoopbackHost(host) {
		bad("TOOLS_LISTEN_ADDR", fmt.Sprintf("%q is not a loopback address, and GATEWAY_IDENTITY_SECRET is not set: anyone "+
			"who reaches the port could call the tools as any user. Set GATEWAY_IDENTITY_SECRET to the gateway's value "+
			"(the same on both; generate one with: openssl rand -base64 32), or listen on 127.0.0.1", c.ListenAddr), nil)
	}
	if u, err := url.Parse(c.WorkOSAPIURL); err != nil {
		bad("WORKOS_API_URL", "must be an absolute http or https URL", nil) // err repeats the value, maybe a password
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("WORKOS_API_URL", "must be an absolute http or https URL", nil)
	} else if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		bad("WORKOS_API_URL", "must not carry user information, a query or a fragment", nil)
	}
	if s := c.IdentitySecret; s != "" && len(s) < minSecretLen {
		bad("GATEWAY_IDENTITY_SECRET", fmt.Sprintf("must be at least %d bytes when set", minSecretLen), nil)
	}
	if c.IdentityMaxAge <= 0 {
		bad("TOOLS_IDENTITY_MAX_AGE", "must be positive", nil)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("TOOLS_LOG_LEVEL", "must be debug, info, warn or error", nil)
	}
	return errors.Join(errs...)
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

// apiKey returns the WorkOS API key: MCP_USE_OAUTH_WORKOS_API_KEY, else WORKOS_API_KEY, else "".
func (c config) apiKey() string {
	if k := strings.TrimSpace(c.WorkOSAPIKey); k != "" {
		return k
	}
	return strings.TrimSpace(c.WorkOSAPIKeyAlias)
}

// parseLevel maps a TOOLS_LOG_LEVEL value to its slog level.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q", s)
}
