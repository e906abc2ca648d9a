package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/mcp-gateway/gateway/proxy/authserver"
)

// Config is the gateway's configuration, read from the environment by LoadConfig. Variable names from the mcp-use
// WorkOS example (MCP_USE_OAUTH_WORKOS_*, WORKOS_*, PORT, HOST, MCP_URL) keep working; GATEWAY_* names take precedence.
type Config struct {
	// WorkOSSubdomain is the AuthKit domain: "my-app-54", "my-app-54.authkit.app", a custom domain such as
	// "auth.example.com", or a full https:// URL. It becomes the issuer. Ignored when IssuerURL is set.
	WorkOSSubdomain      string `env:"MCP_USE_OAUTH_WORKOS_SUBDOMAIN"`
	WorkOSSubdomainAlias string `env:"WORKOS_SUBDOMAIN"`

	// IssuerURL is any OAuth 2.0 / OpenID Connect issuer, compared byte for byte with each token's iss. It takes
	// precedence over WorkOSSubdomain. Must be https, except for loopback hosts.
	IssuerURL string `env:"GATEWAY_ISSUER_URL"`

	// UpstreamURL is the MCP endpoint of the server behind the gateway. Requests to MCPPath go there; every other path the
	// gateway does not own goes to the same origin with its path unchanged. Both are authenticated.
	UpstreamURL string `env:"GATEWAY_UPSTREAM_URL" envDefault:"http://127.0.0.1:3001/mcp"`

	// ListenAddr is the address of the public listener. Default ":3000" (all interfaces), or HOST and PORT when set.
	ListenAddr string `env:"GATEWAY_LISTEN_ADDR"`
	Host       string `env:"HOST"`
	Port       string `env:"PORT"`

	// PublicURL is the origin clients use to reach the gateway (alias MCP_URL). Default http://localhost and the port of
	// ListenAddr (http://localhost:3000 by default); there is none when that port is 0 or not a number, and then it must
	// be set. Every URL the gateway advertises is built from it, never from Host or X-Forwarded-* headers. Must be https
	// except on loopback.
	PublicURL      string `env:"GATEWAY_PUBLIC_URL"`
	PublicURLAlias string `env:"MCP_URL"`

	// MCPPath is the public path of the MCP endpoint. Default "/mcp".
	MCPPath string `env:"GATEWAY_MCP_PATH" envDefault:"/mcp"`

	// Audiences are the aud values a token may carry, comma-separated; one must be present. Default: the resource
	// identifier (PublicURL + MCPPath). Adding values makes the gateway accept tokens issued for other resources.
	Audiences string `env:"GATEWAY_AUDIENCES"`

	// RequiredScopes must all be present in a token (comma- or space-separated). Default none. Advertised in the
	// challenge and in the protected resource metadata.
	RequiredScopes string `env:"GATEWAY_REQUIRED_SCOPES"`

	// AllowedOrigins are the browser origins (scheme://host[:port]) allowed to call the gateway, comma-separated.
	// A request whose Origin header is present and not listed gets 403. Default: the origin of PublicURL only.
	// "*" allows any origin, which gives up DNS-rebinding protection.
	AllowedOrigins string `env:"GATEWAY_ALLOWED_ORIGINS"`

	// MetricsAddr is where Prometheus /metrics is served. Default "127.0.0.1:9090" (loopback); "" or "off" disables it.
	MetricsAddr string `env:"GATEWAY_METRICS_ADDR" envDefault:"127.0.0.1:9090"`

	// IdentitySecret, when set (at least 32 bytes), makes the gateway sign the identity headers it forwards so that the
	// upstream can check them (see package identity). Default unset: no signature.
	IdentitySecret string `env:"GATEWAY_IDENTITY_SECRET"`

	// SessionSecret keys the binding of MCP sessions to users (at least 32 bytes). Set the same value on every replica
	// that shares one upstream. Default: derived from IdentitySecret, else random at start (sessions then do not survive
	// a restart of the gateway; clients re-initialize).
	SessionSecret string `env:"GATEWAY_SESSION_SECRET"`

	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `env:"GATEWAY_LOG_LEVEL" envDefault:"info"`

	// SigningAlgs is the allow-list of JWS algorithms, comma-separated. Default: every asymmetric algorithm.
	// "none" and HS* are refused: a public key must never serve as an HMAC secret.
	SigningAlgs string `env:"GATEWAY_SIGNING_ALGS" envDefault:"RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA"`

	// ClockSkew is the leeway for exp and nbf. Default 30s, at most 5m.
	ClockSkew time.Duration `env:"GATEWAY_CLOCK_SKEW" envDefault:"30s"`

	// JWKSRefreshInterval is how often the key set is fetched again, so that removed keys stop working. Default 5m.
	JWKSRefreshInterval time.Duration `env:"GATEWAY_JWKS_REFRESH_INTERVAL" envDefault:"5m"`

	// JWKSRefetchCooldown is the shortest time from the end of one key set fetch caused by an unknown kid to the start
	// of the next. Default 10s. Shorter picks up a rotated-in key sooner after a failed attempt, and lets clients that
	// send random kids make the gateway fetch the key set more often.
	JWKSRefetchCooldown time.Duration `env:"GATEWAY_JWKS_REFETCH_COOLDOWN" envDefault:"10s"`

	// MaxBodyBytes limits request bodies. Default 4 MiB.
	MaxBodyBytes int64 `env:"GATEWAY_MAX_BODY_BYTES" envDefault:"4194304"`

	// ShutdownTimeout is how long open requests and streams may run after a stop signal. Default 20s.
	ShutdownTimeout time.Duration `env:"GATEWAY_SHUTDOWN_TIMEOUT" envDefault:"20s"`

	// ReadHeaderTimeout bounds how long a client may take to send request headers. Default 10s.
	ReadHeaderTimeout time.Duration `env:"GATEWAY_READ_HEADER_TIMEOUT" envDefault:"10s"`

	// ReadTimeout bounds how long a client may take to send a request body: the body must start within it, and each
	// further piece must follow within it of the last. The deadline is cleared once the body is read, so responses
	// (event streams) are not cut. Default 30s. Longer lets slow clients hold a connection longer.
	ReadTimeout time.Duration `env:"GATEWAY_READ_TIMEOUT" envDefault:"30s"`

	// WriteTimeout bounds how long a client may take to take each part of a response: a client that stops reading
	// cannot hold a connection by it. An idle event stream is not cut: only bytes waiting to be taken count.
	// Default 30s.
	WriteTimeout time.Duration `env:"GATEWAY_WRITE_TIMEOUT" envDefault:"30s"`

	// MaxConnections caps the client connections open at once; further connections wait to be accepted. Default 0:
	// half of what the open-file limit leaves after 64 descriptors for the gateway's own use (each proxied request
	// may hold a client and an upstream connection). Negative: no cap.
	MaxConnections int `env:"GATEWAY_MAX_CONNECTIONS" envDefault:"0"`

	// UpstreamTimeout bounds the wait for the upstream's response head (status and headers) once the request is
	// sent, and how long the upstream may take to take each part of the request; past it the client gets 504. A
	// response body, such as an event stream, is not bounded by it. Default 30s.
	UpstreamTimeout time.Duration `env:"GATEWAY_UPSTREAM_TIMEOUT" envDefault:"30s"`

	// AllowUpgrade forwards protocol upgrades (Upgrade: websocket, h2c, …) to the upstream, which turns an
	// authenticated request into a raw two-way tunnel that the gateway no longer inspects. MCP uses no upgrade.
	// Default false: the offer is dropped and the request served as plain HTTP/1.1.
	AllowUpgrade bool `env:"GATEWAY_ALLOW_UPGRADE" envDefault:"false"`

	// ResourceName is the resource_name in the protected resource metadata. Default "MCP server".
	ResourceName string `env:"GATEWAY_RESOURCE_NAME" envDefault:"MCP server"`

	// ClientID is the client pre-registered at the authorization server ("Option B"). Default unset (Option A: MCP
	// clients register at the authorization server themselves). When set, the gateway is an authorization-server facade:
	// it registers MCP clients itself, asks the user's consent for each, and signs them in at the authorization server
	// with this client id and its own callback (see package authserver).
	ClientID      string `env:"MCP_USE_OAUTH_WORKOS_CLIENT_ID"`
	ClientIDAlias string `env:"WORKOS_CLIENT_ID"`

	// ClientSecret is the secret of ClientID, for a confidential pre-registered client. Default unset (a public client).
	// It is added to authorization_code and refresh_token grants only, never to any other grant.
	ClientSecret string `env:"MCP_USE_OAUTH_WORKOS_CLIENT_SECRET"`

	// ClientAuthMethod is how the gateway presents ClientSecret to the token endpoint: client_secret_basic (default) or
	// client_secret_post. It must be the method the client was registered with at the authorization server.
	ClientAuthMethod string `env:"GATEWAY_CLIENT_AUTH_METHOD" envDefault:"client_secret_basic"`

	// FacadeScopes is, in Option B, the allow-list of scopes MCP clients may ask for (comma- or space-separated): an
	// authorization or token request naming any other scope is refused with invalid_scope before the authorization
	// server sees it. It is also the scopes_supported the gateway advertises. Default unset: any well-formed scope is
	// passed on (the authorization server decides) and scopes_supported is the authorization server's.
	FacadeScopes string `env:"GATEWAY_FACADE_SCOPES"`

	// FacadeDefaultScope is, in Option B, the scope sent to the authorization server when an MCP client sends none
	// (most clients send none unless a server advertises scopes, and some authorization servers refuse a request
	// without). Default unset: the scopes the protected resource metadata advertises (FacadeScopes, else the
	// authorization server's scopes_supported, without offline_access, plus RequiredScopes), which is what a client
	// following the MCP specification would ask for. With FacadeScopes set, every scope here must be in it.
	FacadeDefaultScope string `env:"GATEWAY_FACADE_DEFAULT_SCOPE"`

	// TrustedProxies are the addresses or CIDR ranges of reverse proxies in front of the gateway (comma-separated)
	// whose X-Forwarded-For header names the client's address. Option B limits sign-ins, registrations and token
	// requests per client address; without this, every client behind a proxy has the proxy's address and shares one
	// limit. Default unset: the address of the TCP peer. Listing an address that is not your proxy lets whoever
	// connects from it choose the address it is counted under.
	TrustedProxies string `env:"GATEWAY_TRUSTED_PROXIES"`

	// Derived by LoadConfig; not read from the environment.
	Issuer   string     `env:"-"`
	Resource string     `env:"-"` // canonical URL of the MCP endpoint: PublicURL + MCPPath
	Public   *url.URL   `env:"-"`
	Upstream *url.URL   `env:"-"`
	Level    slog.Level `env:"-"`
	// StaticClientID is ClientID, else ClientIDAlias: non-empty means Option B.
	StaticClientID string `env:"-"`
	// Parsed lists.
	AudienceList []string `env:"-"`
	ScopeList    []string `env:"-"`
	OriginList   []string `env:"-"`
	AlgList      []string `env:"-"`
	// FacadeScopeList and FacadeDefaultScopeList are FacadeScopes and FacadeDefaultScope, parsed.
	FacadeScopeList        []string       `env:"-"`
	FacadeDefaultScopeList []string       `env:"-"`
	TrustedProxyList       []netip.Prefix `env:"-"`
}

// asymmetric lists the JWS algorithms the gateway accepts at all.
var asymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// LoadConfig reads the configuration from environ (use a map in tests; nil is not the process environment here) and
// validates it. The error reports every problem at once, each naming its variable.
func LoadConfig(environ map[string]string) (*Config, error) {
	if environ == nil {
		environ = map[string]string{}
	}
	var c Config
	errs, failed := parseErrors(env.ParseWithOptions(&c, env.Options{Environment: environ}))
	if err := errors.Join(append(errs, c.validate(failed))...); err != nil {
		return nil, err
	}
	return &c, nil
}

// parseErrors restates caarlos0/env's errors with the variable's name, and returns the set of variables that failed.
func parseErrors(err error) ([]error, map[string]bool) {
	if err == nil {
		return nil, nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return []error{err}, nil
	}
	var out []error
	failed := map[string]bool{}
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := reflect.TypeFor[Config]().FieldByName(pe.Name); ok {
				name := f.Tag.Get("env")
				failed[name] = true
				out = append(out, fmt.Errorf("%s: %w", name, pe.Err))
				continue
			}
		}
		out = append(out, e)
	}
	return out, failed
}

// validate checks every field, fills the derived ones and returns every problem joined. Variables in failed could not be
// parsed and are reported already.
func (c *Config) validate(failed map[string]bool) error {
	var errs []error
	bad := func(name, format string, args ...any) {
		if !failed[name] {
			errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
		}
	}

	// Issuer.
	switch {
	case c.IssuerURL != "":
		if err := checkBaseURL(c.IssuerURL, true); err != nil {
			bad("GATEWAY_ISSUER_URL", "%v", err)
		}
		c.Issuer = c.IssuerURL
	default:
		name, sub := "MCP_USE_OAUTH_WORKOS_SUBDOMAIN", c.WorkOSSubdomain
		if sub == "" {
			name, sub = "WORKOS_SUBDOMAIN", c.WorkOSSubdomainAlias
		}
		if sub == "" {
			bad("GATEWAY_ISSUER_URL", "no issuer: set GATEWAY_ISSUER_URL, or MCP_USE_OAUTH_WORKOS_SUBDOMAIN to your AuthKit subdomain (e.g. my-app-54)")
			break
		}
		iss, err := IssuerFromSubdomain(sub)
		if err != nil {
			bad(name, "%v", err)
		}
		c.Issuer = iss
	}

	// Public URL and MCP path → resource identifier.
	public, publicName := c.PublicURL, "GATEWAY_PUBLIC_URL"
	if public == "" && c.PublicURLAlias != "" {
		public, publicName = c.PublicURLAlias, "MCP_URL"
	}
	var publicErr error
	switch {
	case public != "":
		if publicErr = checkBaseURL(public, false); publicErr != nil {
			bad(publicName, "%v", publicErr)
		}
	default:
		listen := listenAddr(c.ListenAddr, c.Host, c.Port)
		if _, _, publicErr = net.SplitHostPort(listen); publicErr != nil {
			break // reported below as GATEWAY_LISTEN_ADDR's: the default needs its port
		}
		if public, publicErr = defaultPublicURL(listen); publicErr != nil {
			bad(publicName, "%v", publicErr)
		}
	}
	if publicErr == nil {
		u, _ := url.Parse(public)
		if u.Path != "" && u.Path != "/" {
			bad(publicName, "must be an origin without a path (got path %q); set the endpoint path with GATEWAY_MCP_PATH", u.Path)
		}
		c.Public = &url.URL{Scheme: strings.ToLower(u.Scheme), Host: strings.ToLower(u.Host)}
	}
	switch p := c.MCPPath; {
	case !strings.HasPrefix(p, "/"):
		bad("GATEWAY_MCP_PATH", "must start with / (got %q)", p)
	case p != "/" && strings.HasSuffix(p, "/"):
		bad("GATEWAY_MCP_PATH", "must not end with / (got %q)", p)
	case strings.ContainsAny(p, "?#%*{} \t"):
		bad("GATEWAY_MCP_PATH", "must be a plain path (got %q)", p)
	case isOwnedPath(p):
		bad("GATEWAY_MCP_PATH", "%q is a path the gateway serves itself", p)
	case (c.ClientID != "" || c.ClientIDAlias != "") && authserver.OwnsPath(p):
		bad("GATEWAY_MCP_PATH", "%q is a path the gateway serves itself when MCP_USE_OAUTH_WORKOS_CLIENT_ID is set", p)
	}
	if c.Public != nil {
		c.Resource = c.Public.String() + c.MCPPath
		if c.MCPPath == "/" {
			c.Resource = c.Public.String()
		}
	}

	// Upstream.
	if u, err := url.Parse(c.UpstreamURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		bad("GATEWAY_UPSTREAM_URL", "must be an absolute http(s) URL without credentials, query or fragment (got %q)", c.UpstreamURL)
	} else {
		if u.Path == "" {
			u.Path = "/"
		}
		c.Upstream = u
	}

	// Listener.
	c.ListenAddr = listenAddr(c.ListenAddr, c.Host, c.Port)
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		bad("GATEWAY_LISTEN_ADDR", "must be host:port or :port (got %q)", c.ListenAddr)
	}
	if c.MetricsAddr == "off" {
		c.MetricsAddr = ""
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			bad("GATEWAY_METRICS_ADDR", "must be host:port, or off (got %q)", c.MetricsAddr)
		}
	}

	// Audiences and scopes.
	c.AudienceList = fields(c.Audiences)
	if len(c.AudienceList) == 0 && c.Resource != "" {
		c.AudienceList = []string{c.Resource}
	}
	c.ScopeList = fields(c.RequiredScopes)
	for _, s := range c.ScopeList {
		if !validScopeToken(s) {
			bad("GATEWAY_REQUIRED_SCOPES", "%q is not a valid scope", s)
		}
	}

	// Origins.
	c.OriginList = nil
	for _, o := range fields(c.AllowedOrigins) {
		if o == "*" {
			c.OriginList = append(c.OriginList, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			bad("GATEWAY_ALLOWED_ORIGINS", "%q is not an origin like https://app.example.com", o)
			continue
		}
		c.OriginList = append(c.OriginList, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	if len(c.OriginList) == 0 && c.Public != nil {
		c.OriginList = []string{c.Public.String()}
	}

	// Secrets.
	if c.IdentitySecret != "" && len(c.IdentitySecret) < 32 {
		bad("GATEWAY_IDENTITY_SECRET", "must be at least 32 bytes (got %d); generate one with: openssl rand -base64 32", len(c.IdentitySecret))
	}
	if c.SessionSecret != "" && len(c.SessionSecret) < 32 {
		bad("GATEWAY_SESSION_SECRET", "must be at least 32 bytes (got %d); generate one with: openssl rand -base64 32", len(c.SessionSecret))
	}

	// Option B.
	c.StaticClientID = cmp.Or(c.ClientID, c.ClientIDAlias)
	if c.ClientSecret != "" && c.StaticClientID == "" {
		bad("MCP_USE_OAUTH_WORKOS_CLIENT_SECRET", "is set without MCP_USE_OAUTH_WORKOS_CLIENT_ID; set the client id it belongs to, or unset it")
	}
	if c.ClientAuthMethod != "client_secret_basic" && c.ClientAuthMethod != "client_secret_post" {
		bad("GATEWAY_CLIENT_AUTH_METHOD", "must be client_secret_basic or client_secret_post (got %q)", c.ClientAuthMethod)
	}
	if strings.ContainsAny(c.StaticClientID, " \t\r\n") {
		bad("MCP_USE_OAUTH_WORKOS_CLIENT_ID", "must not contain white space")
	}
	c.FacadeScopeList = fields(c.FacadeScopes)
	c.FacadeDefaultScopeList = fields(c.FacadeDefaultScope)
	for _, v := range []struct {
		name string
		list []string
	}{{"GATEWAY_FACADE_SCOPES", c.FacadeScopeList}, {"GATEWAY_FACADE_DEFAULT_SCOPE", c.FacadeDefaultScopeList}} {
		name, list := v.name, v.list
		if len(list) > 0 && c.StaticClientID == "" {
			bad(name, "is set without MCP_USE_OAUTH_WORKOS_CLIENT_ID; it applies to Option B only")
		}
		for _, s := range list {
			if !validScopeToken(s) {
				bad(name, "%q is not a valid scope", s)
			}
		}
	}
	if len(c.FacadeScopeList) > 0 {
		for _, s := range c.FacadeDefaultScopeList {
			if !slices.Contains(c.FacadeScopeList, s) {
				bad("GATEWAY_FACADE_DEFAULT_SCOPE", "%q is not in GATEWAY_FACADE_SCOPES", s)
			}
		}
		for _, s := range c.ScopeList {
			if !slices.Contains(c.FacadeScopeList, s) {
				bad("GATEWAY_REQUIRED_SCOPES", "%q is not in GATEWAY_FACADE_SCOPES, so no client could obtain a token with it", s)
			}
		}
	}
	c.TrustedProxyList = nil
	for _, p := range fields(c.TrustedProxies) {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				bad("GATEWAY_TRUSTED_PROXIES", "%q is neither an IP address nor a CIDR range such as 10.0.0.0/8", p)
				continue
			}
			pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		c.TrustedProxyList = append(c.TrustedProxyList, pfx.Masked())
	}

	// Logging.
	if err := c.Level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		bad("GATEWAY_LOG_LEVEL", "must be debug, info, warn or error (got %q)", c.LogLevel)
	}

	// Algorithms.
	c.AlgList = fields(c.SigningAlgs)
	if len(c.AlgList) == 0 {
		bad("GATEWAY_SIGNING_ALGS", "must name at least one algorithm")
	}
	for _, a := range c.AlgList {
		if !slices.Contains(asymmetric, a) {
			bad("GATEWAY_SIGNING_ALGS", "%q is not allowed; choose from %s", a, strings.Join(asymmetric, ","))
		}
	}

	// Durations and sizes.
	if c.ClockSkew < 0 || c.ClockSkew > 5*time.Minute {
		bad("GATEWAY_CLOCK_SKEW", "must be between 0s and 5m (got %s)", c.ClockSkew)
	}
	if c.JWKSRefreshInterval < time.Minute {
		bad("GATEWAY_JWKS_REFRESH_INTERVAL", "must be at least 1m (got %s)", c.JWKSRefreshInterval)
	}
	if c.JWKSRefetchCooldown < time.Second {
		bad("GATEWAY_JWKS_REFETCH_COOLDOWN", "must be at least 1s (got %s)", c.JWKSRefetchCooldown)
	}
	if c.MaxBodyBytes < 1024 {
		bad("GATEWAY_MAX_BODY_BYTES", "must be at least 1024 (got %d)", c.MaxBodyBytes)
	}
	if c.ShutdownTimeout <= 0 {
		bad("GATEWAY_SHUTDOWN_TIMEOUT", "must be positive (got %s)", c.ShutdownTimeout)
	}
	if c.ReadHeaderTimeout <= 0 {
		bad("GATEWAY_READ_HEADER_TIMEOUT", "must be positive (got %s)", c.ReadHeaderTimeout)
	}
	if c.ReadTimeout <= 0 {
		bad("GATEWAY_READ_TIMEOUT", "must be positive (got %s)", c.ReadTimeout)
	}
	if c.WriteTimeout <= 0 {
		bad("GATEWAY_WRITE_TIMEOUT", "must be positive (got %s)", c.WriteTimeout)
	}
	if c.UpstreamTimeout <= 0 {
		bad("GATEWAY_UPSTREAM_TIMEOUT", "must be positive (got %s)", c.UpstreamTimeout)
	}
	return errors.Join(errs...)
}

// listenAddr is the address of the public listener: GATEWAY_LISTEN_ADDR when set, else HOST and PORT, PORT being 3000
// when unset.
func listenAddr(listen, host, port string) string {
	if listen != "" {
		return listen
	}
	return net.JoinHostPort(host, cmp.Or(port, "3000"))
}

// DefaultPublicURL returns the public URL the gateway uses when environ sets neither GATEWAY_PUBLIC_URL nor MCP_URL:
// http://localhost and the port it listens on (GATEWAY_LISTEN_ADDR, else HOST and PORT; :3000 by default). There is
// none, and an error says why, when that port is 0 (known only once bound) or not a number.
func DefaultPublicURL(environ map[string]string) (string, error) {
	addr := listenAddr(environ["GATEWAY_LISTEN_ADDR"], environ["HOST"], environ["PORT"])
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("must be set: the listen address %q is not host:port, so there is no default", addr)
	}
	return defaultPublicURL(addr)
}

// defaultPublicURL is DefaultPublicURL for the listen address addr, which is host:port.
func defaultPublicURL(addr string) (string, error) {
	_, port, _ := net.SplitHostPort(addr)
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", fmt.Errorf("must be set: the listen address %q (GATEWAY_LISTEN_ADDR, or HOST and PORT) has no fixed port "+
			"number, so there is no default http://localhost:<port>; set the origin clients use, e.g. http://localhost:3000", addr)
	}
	return "http://localhost:" + strconv.FormatUint(n, 10), nil
}

// OptionB reports whether a pre-registered client is configured, making the gateway an authorization-server facade.
func (c *Config) OptionB() bool { return c.StaticClientID != "" }

// FacadeScopesFor returns, in Option B, for an authorization server whose metadata lists upstream as scopes_supported:
// the scopes_supported of the gateway's own authorization server metadata (FacadeScopes, else upstream), those of
// the protected resource metadata (the same without offline_access, plus RequiredScopes), and the scope sent
// upstream when a client sends none (FacadeDefaultScope, else the protected resource metadata's).
func (c *Config) FacadeScopesFor(upstream []string) (advertised, resource, fallback []string) {
	return c.authServerConfig().ScopesFor(upstream)
}

// CallbackURL is the gateway's redirect URI at the authorization server in Option B: the one URL to register there for
// the pre-registered client.
func (c *Config) CallbackURL() string { return c.authServerConfig().CallbackURL() }

// FacadeIssuer is the issuer MCP clients see in Option B: the public URL.
func (c *Config) FacadeIssuer() string { return c.Public.String() }

// IssuerFromSubdomain turns the value of MCP_USE_OAUTH_WORKOS_SUBDOMAIN into an issuer URL: "my-app-54" →
// https://my-app-54.authkit.app; "my-app-54.authkit.app" or a custom domain → https://<that domain>; a full https:// URL
// is kept (without a trailing slash).
func IssuerFromSubdomain(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "://") {
		if err := checkBaseURL(s, true); err != nil {
			return "", err
		}
		return strings.TrimSuffix(s, "/"), nil
	}
	host := strings.TrimSuffix(strings.ToLower(s), ".")
	if !strings.Contains(host, ".") {
		host += ".authkit.app"
	}
	for _, label := range strings.Split(host, ".") {
		if !validLabel(label) {
			return "", fmt.Errorf("%q is not a subdomain such as my-app-54, a domain such as my-app-54.authkit.app, or an https:// URL", s)
		}
	}
	return "https://" + host, nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// checkBaseURL accepts an absolute http(s) URL without credentials, query or fragment; http only on a loopback host.
// An issuer may have a path; a public URL's path is checked by the caller.
func checkBaseURL(s string, issuer bool) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("must be an absolute https:// URL (got %q)", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return fmt.Errorf("must not have credentials, a query or a fragment (got %q)", s)
	}
	if u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) {
		what := "the public URL"
		if issuer {
			what = "the issuer"
		}
		return fmt.Errorf("must use https: http:// is accepted only for loopback hosts, and %s %q is not one", what, u.Hostname())
	}
	return nil
}

// IsLoopbackHost reports whether host (without port) is localhost or a loopback IP address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// validScopeToken reports whether s is a scope-token (RFC 6749 §3.3) that can also travel in a challenge.
func validScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// fields splits a list separated by commas and/or whitespace.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}
