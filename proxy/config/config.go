// Package config is the gateway's configuration: the environment variables it reads (Env), parsed by
// caarlos0/env and checked one concern at a time into an immutable Config. Load reports every problem at once, each
// naming its variable.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
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
	"github.com/mcp-gateway/gateway/proxy/identity"
	"github.com/mcp-gateway/gateway/proxy/tracing"
)

// Env is the gateway's environment: one field per variable, parsed by caarlos0/env (env and envDefault tags), the
// input of Load. The variables of the mcp-use WorkOS example keep working: a field's alias tag names the
// variable read in its place when its own is unset or empty, and HOST and PORT stand for GATEWAY_LISTEN_ADDR when that
// is unset (HOST:PORT, PORT 3000 when unset). The gateway's own names take precedence.
type Env struct {
	// WorkOSSubdomain is the AuthKit domain: "my-app-54", "my-app-54.authkit.app", a custom domain such as
	// "auth.example.com", or a full https:// URL. It becomes the issuer. Ignored when IssuerURL is set.
	WorkOSSubdomain string `env:"MCP_USE_OAUTH_WORKOS_SUBDOMAIN" alias:"WORKOS_SUBDOMAIN"`

	// IssuerURL is any OAuth 2.0 / OpenID Connect issuer, compared byte for byte with each token's iss, or several,
	// separated by commas: a token is accepted from any of them, checked with its own issuer's keys only. The first is
	// the one MCP clients sign in with (first in authorization_servers). It takes precedence over WorkOSSubdomain (list
	// the AuthKit URL here to accept it among others). Must be https, except for loopback hosts.
	IssuerURL string `env:"GATEWAY_ISSUER_URL"`

	// UpstreamURL is the MCP endpoint of the server behind the gateway. Requests to MCPPath go there; every other path the
	// gateway does not own goes to the same origin with its path unchanged. Both are authenticated.
	UpstreamURL string `env:"GATEWAY_UPSTREAM_URL" envDefault:"http://127.0.0.1:3001/mcp"`

	// ListenAddr is the address of the public listener. Default ":3000" (all interfaces), or HOST:PORT when either is
	// set.
	ListenAddr string `env:"GATEWAY_LISTEN_ADDR" envDefault:":3000"`

	// PublicURL is the origin clients use to reach the gateway. Default http://localhost and the port of ListenAddr
	// (http://localhost:3000 by default); there is none when that port is 0 or not a number, and then it must be set.
	// Every URL the gateway advertises is built from it, never from Host or X-Forwarded-* headers. Must be https except
	// on loopback.
	PublicURL string `env:"GATEWAY_PUBLIC_URL" alias:"MCP_URL"`

	// MCPPath is the public path of the MCP endpoint. Default "/mcp".
	MCPPath string `env:"GATEWAY_MCP_PATH" envDefault:"/mcp"`

	// Audiences are the aud values a token may carry; one must be present. Default: the resource identifier
	// (PublicURL + MCPPath). Adding values makes the gateway accept tokens issued for other resources.
	Audiences List `env:"GATEWAY_AUDIENCES"`

	// RequiredScopes must all be present in a token. Default none. Advertised in the challenge and in the protected
	// resource metadata.
	RequiredScopes List `env:"GATEWAY_REQUIRED_SCOPES"`

	// AllowedOrigins are the browser origins (scheme://host[:port]) allowed to call the gateway. A request whose Origin
	// header is present and not listed gets 403. Default: the origin of PublicURL only. "*" allows any origin, which
	// gives up DNS-rebinding protection.
	AllowedOrigins List `env:"GATEWAY_ALLOWED_ORIGINS"`

	// MetricsAddr is where Prometheus /metrics is served. Default "127.0.0.1:9090" (loopback); "off" disables it.
	MetricsAddr string `env:"GATEWAY_METRICS_ADDR" envDefault:"127.0.0.1:9090"`

	// IdentitySecret, when set (at least 32 bytes), makes the gateway sign the identity headers it forwards so that the
	// upstream can check them (see package identity). Default unset: no signature.
	IdentitySecret string `env:"GATEWAY_IDENTITY_SECRET"`

	// SessionSecret keys the binding of MCP sessions to users and, in Option B, the sealed client ids, codes, state and
	// consent (at least 32 bytes). Set the same value on every replica that shares one upstream. Default: derived from IdentitySecret, else random at start (sessions then do not survive
	// a restart of the gateway; clients re-initialize).
	SessionSecret string `env:"GATEWAY_SESSION_SECRET"`

	// LogLevel is debug, info, warn or error. Default info.
	LogLevel slog.Level `env:"GATEWAY_LOG_LEVEL" envDefault:"info"`

	// SigningAlgs is the allow-list of JWS algorithms. Default: every asymmetric algorithm. "none" and HS* are
	// refused: a public key must never serve as an HMAC secret.
	SigningAlgs List `env:"GATEWAY_SIGNING_ALGS" envDefault:"RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA"`

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

	// ShutdownTimeout is how long requests in flight may take to finish after a stop signal; event streams end at
	// once. Default 20s.
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

	// MaxConnections caps the client connections open at once: at the cap, a new client takes the place of the
	// connection idle the longest, else waits to be accepted. Default 0: half of what the open-file limit leaves after
	// 64 descriptors for the gateway's own use (each proxied request may hold a client and an upstream connection).
	// Negative: no cap.
	MaxConnections int `env:"GATEWAY_MAX_CONNECTIONS" envDefault:"0"`

	// UpstreamTimeout bounds the wait for the upstream's response head (status and headers) once the request is
	// sent, and how long the upstream may take to take each part of the request; past it the client gets 504. A
	// response body, such as an event stream, is not bounded by it. Default 30s.
	UpstreamTimeout time.Duration `env:"GATEWAY_UPSTREAM_TIMEOUT" envDefault:"30s"`

	// AllowUpgrade forwards protocol upgrades (Upgrade: websocket, h2c, …) to the upstream, which turns an
	// authenticated request into a raw two-way tunnel that the gateway no longer inspects. MCP uses no upgrade.
	// Default false: the offer is dropped and the request served as plain HTTP/1.1.
	AllowUpgrade bool `env:"GATEWAY_ALLOW_UPGRADE" envDefault:"false"`

	// StreamRelay chooses how long-lived event streams (a GET stream, a POST of subscriptions/listen) reach the
	// upstream: "auto" (default) through the relay (package relay: about 11 KiB of gateway memory per idle stream
	// instead of about 68 KiB, on a connection of its own that closes with the stream) when the upstream is http://
	// and no upstream transport is injected, else through the reverse proxy; "on" through the relay always (an
	// http:// upstream only; an injected transport then carries every other request); "off" through the reverse
	// proxy always. The choice is logged at start. Security is the same either way.
	StreamRelay string `env:"GATEWAY_STREAM_RELAY" envDefault:"auto"`

	// PolicyFile names a YAML policy (see package policy and docs/policy.md) that decides which tools, prompts and
	// resources each caller may see and use. Default unset: every valid token may use everything. A policy that does
	// not load stops the gateway at start; on reload (SIGHUP, or the file changing) the previous one stays.
	PolicyFile string `env:"GATEWAY_POLICY_FILE"`

	// AuditLog is where one audit event per MCP operation goes when a policy is set: "stderr" (default), "off", or a
	// file path (appended to).
	AuditLog string `env:"GATEWAY_AUDIT_LOG" envDefault:"stderr"`

	// AuditArguments is what an audit event records of a call's arguments: "off" (default: nothing) or "hash" (their
	// SHA-256). Arguments themselves are never recorded.
	AuditArguments string `env:"GATEWAY_AUDIT_ARGUMENTS" envDefault:"off"`

	// ResourceName is the resource_name in the protected resource metadata. Default "MCP server".
	ResourceName string `env:"GATEWAY_RESOURCE_NAME" envDefault:"MCP server"`

	// ClientID is the client pre-registered at the authorization server ("Option B"). Default unset (Option A: MCP
	// clients register at the authorization server themselves). When set, the gateway is an authorization-server facade:
	// it registers MCP clients itself, asks the user's consent for each, and signs them in at the authorization server
	// with this client id and its own callback (see package authserver).
	ClientID string `env:"MCP_USE_OAUTH_WORKOS_CLIENT_ID" alias:"WORKOS_CLIENT_ID"`

	// ClientSecret is the secret of ClientID, for a confidential pre-registered client. Default unset (a public client).
	// It is added to authorization_code and refresh_token grants only, never to any other grant.
	ClientSecret string `env:"MCP_USE_OAUTH_WORKOS_CLIENT_SECRET"`

	// ClientAuthMethod is how the gateway presents ClientSecret to the token endpoint: client_secret_basic (default) or
	// client_secret_post. It must be the method the client was registered with at the authorization server.
	ClientAuthMethod string `env:"GATEWAY_CLIENT_AUTH_METHOD" envDefault:"client_secret_basic"`

	// FacadeScopes is, in Option B, the allow-list of scopes MCP clients may ask for: an authorization or token request
	// naming any other scope is refused with invalid_scope before the authorization server sees it. It is also the
	// scopes_supported the gateway advertises. Default unset: any well-formed scope is passed on (the authorization
	// server decides) and scopes_supported is the authorization server's.
	FacadeScopes List `env:"GATEWAY_FACADE_SCOPES"`

	// FacadeDefaultScope is, in Option B, the scope sent to the authorization server when an MCP client sends none
	// (most clients send none unless a server advertises scopes, and some authorization servers refuse a request
	// without). Default unset: the scopes the protected resource metadata advertises (FacadeScopes, else the
	// authorization server's scopes_supported, without offline_access, plus RequiredScopes), which is what a client
	// following the MCP specification would ask for. With FacadeScopes set, every scope here must be in it.
	FacadeDefaultScope List `env:"GATEWAY_FACADE_DEFAULT_SCOPE"`

	// TrustedProxies are the addresses or CIDR ranges of reverse proxies in front of the gateway whose X-Forwarded-For
	// header names the client's address. Option B limits sign-ins, registrations and token requests per client address;
	// without this, every client behind a proxy has the proxy's address and shares one limit. Default unset: the address
	// of the TCP peer. Listing an address that is not your proxy lets whoever connects from it choose the address it is
	// counted under.
	TrustedProxies List `env:"GATEWAY_TRUSTED_PROXIES"`

	// RateLimitUser is the request rate each verified user (a token's sub) may send, with a burst: "20/s,burst=40"
	// (per s, m or h; the burst defaults to the rate per second, at least 1). Over it a request gets 429 with
	// Retry-After. Default unset: no limit.
	RateLimitUser Rate `env:"GATEWAY_RATE_LIMIT_USER"`

	// MaxStreamsUser caps the long-lived event streams each verified user holds open at once, relayed or proxied;
	// one more gets 429. Default 16. 0: no cap. Each stream holds two file descriptors.
	MaxStreamsUser int `env:"GATEWAY_MAX_STREAMS_USER" envDefault:"16"`

	// RateLimitAnonymous is the rate of requests without a valid token (answered 401) each client address may send
	// (IPv6 by /64, through GATEWAY_TRUSTED_PROXIES behind a proxy); over it they get 429. Default "20/s,burst=200",
	// far above a client's few 401s before it signs in; "off": no limit. Option B's endpoints have their own limits.
	RateLimitAnonymous Rate `env:"GATEWAY_RATE_LIMIT_ANONYMOUS" envDefault:"20/s,burst=200"`

	// RedisURL points every replica at one Redis (redis://[user:password@]host[:port][/db], rediss:// for TLS, with
	// go-redis's query options), which then holds the state they share: the rate limits (one budget per user and per
	// address across replicas) and Option B's single-use sign-in state. Default unset: each replica keeps both in its
	// own memory. While Redis does not answer, rate limits fall back to each replica's memory and a sign-in cannot
	// complete (see docs/replicas.md). The password is never logged.
	RedisURL string `env:"GATEWAY_REDIS_URL"`
	// ClaimHeaders adds headers taken from token claims, written "X-User-Email=email,X-Tenant=org_id" (nested claims
	// a.b; see identity.ClaimHeaders for how values are written). They are stripped from inbound requests in every
	// spelling and covered by the identity signature (version 3). Names the gateway sets, strips or relies on are
	// refused. Default unset: the built-in headers only.
	ClaimHeaders string `env:"GATEWAY_CLAIM_HEADERS"`
	// CIMD is whether Option B accepts Client ID Metadata Documents: an https client_id the gateway fetches. "on"
	// (default) or "off"; clients may register (DCR) either way.
	CIMD string `env:"GATEWAY_CIMD" envDefault:"on"`
	// InsecureCIMDAllowPrivate lets the gateway fetch metadata documents from loopback, private and other special-use
	// addresses, which an anonymous client could otherwise point at internal services. For tests only. Default false.
	InsecureCIMDAllowPrivate bool `env:"GATEWAY_CIMD_ALLOW_PRIVATE" envDefault:"false"`
	// CIMDCAFile is a PEM file of certificate authorities trusted for metadata document fetches, beside the system's.
	// Default unset: the system's only.
	CIMDCAFile string `env:"GATEWAY_CIMD_CA_FILE"`

	// IssuerAudiences are the audiences of one issuer when they differ from Audiences: entries "<issuer>=<audience>",
	// one per audience, separated by commas or white space. An issuer named here accepts only its own entries; any
	// other issuer accepts Audiences. Default unset.
	IssuerAudiences List `env:"GATEWAY_ISSUER_AUDIENCES"`

	// TokenValidation is how access tokens are verified: "auto" (default) verifies a JWT by its signature and
	// introspects any other token when IntrospectionClientID is set (else refuses it); "jwt" verifies JWTs only;
	// "introspection" introspects every token (RFC 7662), JWTs included.
	TokenValidation string `env:"GATEWAY_TOKEN_VALIDATION" envDefault:"auto"`

	// IntrospectionURL is the introspection endpoint. Default: the introspection issuer's introspection_endpoint.
	// Must be https, except for loopback hosts.
	IntrospectionURL string `env:"GATEWAY_INTROSPECTION_URL"`

	// IntrospectionIssuer is the issuer whose opaque tokens are introspected, one of IssuerURL: an opaque token does
	// not say who issued it, and it is never sent to any other. Default: the first issuer.
	IntrospectionIssuer string `env:"GATEWAY_INTROSPECTION_ISSUER"`

	// IntrospectionClientID and IntrospectionClientSecret are the gateway's own client credentials at the
	// authorization server, for introspection. Setting the id turns introspection on (see TokenValidation).
	IntrospectionClientID     string `env:"GATEWAY_INTROSPECTION_CLIENT_ID"`
	IntrospectionClientSecret string `env:"GATEWAY_INTROSPECTION_CLIENT_SECRET"`

	// IntrospectionAuthMethod is how the credentials are sent: client_secret_basic (default) or client_secret_post.
	IntrospectionAuthMethod string `env:"GATEWAY_INTROSPECTION_AUTH_METHOD" envDefault:"client_secret_basic"`

	// IntrospectionCacheTTL is how long an active token's introspection is trusted, at most until its exp: a revoked
	// token keeps working that long. Default 60s, at least 1s, at most 1h.
	IntrospectionCacheTTL time.Duration `env:"GATEWAY_INTROSPECTION_CACHE_TTL" envDefault:"60s"`

	// Traces: the OTEL_* variables (package tracing) switch them on; this one only adds to them.

	// TraceUserID puts the verified caller's subject (sub) on each request span as user.id. Default false: spans
	// name no user, so a trace backend with looser access than the gateway's logs does not learn who called what.
	TraceUserID bool `env:"GATEWAY_TRACE_USER_ID" envDefault:"false"`
}

// Rate is a token bucket's refill rate and size, written "20/s,burst=40" (per s, m or h); the zero Rate (unset, or
// "off") is no limit.
type Rate struct {
	// PerSecond is the refill rate, in requests per second.
	PerSecond float64
	// Burst is the bucket's size.
	Burst int
}

// On reports whether r limits anything.
func (r Rate) On() bool { return r.PerSecond > 0 }

// UnmarshalText implements [encoding.TextUnmarshaler], through which caarlos0/env parses a Rate.
func (r *Rate) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	*r = Rate{}
	if s == "" || s == "off" {
		return nil
	}
	spec, burst, hasBurst := strings.Cut(s, ",")
	n, unit, ok := strings.Cut(strings.TrimSpace(spec), "/")
	per := map[string]float64{"s": 1, "m": 60, "h": 3600}[unit]
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || per == 0 || err != nil || count <= 0 {
		return fmt.Errorf("want a rate such as 20/s,burst=40 (per s, m or h) or off, got %q", s)
	}
	r.PerSecond = float64(count) / per
	r.Burst = max(1, int(math.Ceil(r.PerSecond)))
	if hasBurst {
		b, found := strings.CutPrefix(strings.TrimSpace(burst), "burst=")
		r.Burst, err = strconv.Atoi(b)
		if !found || err != nil || r.Burst <= 0 {
			return fmt.Errorf("want burst=N (N at least 1) after the rate, got %q", burst)
		}
	}
	return nil
}

// List is the value of a variable that holds several items, separated by commas, white space or both: "a, b c" holds
// a, b and c.
type List []string

// UnmarshalText implements [encoding.TextUnmarshaler], through which caarlos0/env parses a List.
func (l *List) UnmarshalText(text []byte) error {
	*l = fields(string(text))
	return nil
}

// Config is the gateway's configuration: Env validated, with the values derived from it. Load builds it and
// nothing changes it afterwards.
type Config struct {
	// Issuer is the issuer tokens must name in iss, compared byte for byte: GATEWAY_ISSUER_URL, else the AuthKit URL
	// of MCP_USE_OAUTH_WORKOS_SUBDOMAIN (see IssuerFromSubdomain).
	Issuer string
	// IssuerURL is GATEWAY_ISSUER_URL; empty when the issuer comes from MCP_USE_OAUTH_WORKOS_SUBDOMAIN.
	IssuerURL string
	// Public is the origin clients use to reach the gateway (GATEWAY_PUBLIC_URL or its default), lower-cased, without
	// a path.
	Public *url.URL
	// MCPPath is GATEWAY_MCP_PATH, the public path of the MCP endpoint.
	MCPPath string
	// Resource is the resource identifier, the canonical URL of the MCP endpoint: Public + MCPPath (Public alone when
	// MCPPath is "/").
	Resource string
	// Upstream is GATEWAY_UPSTREAM_URL, with the path "/" when it has none.
	Upstream *url.URL
	// ListenAddr is GATEWAY_LISTEN_ADDR (or HOST:PORT), the address of the public listener.
	ListenAddr string
	// MetricsAddr is GATEWAY_METRICS_ADDR; empty when the metrics listener is off.
	MetricsAddr string
	// Level is GATEWAY_LOG_LEVEL.
	Level slog.Level

	// AudienceList is GATEWAY_AUDIENCES, else Resource alone.
	AudienceList []string
	// ScopeList is GATEWAY_REQUIRED_SCOPES.
	ScopeList []string
	// OriginList is GATEWAY_ALLOWED_ORIGINS as lower-case scheme://host[:port] origins (or "*"), else Public's origin.
	OriginList []string
	// AlgList is GATEWAY_SIGNING_ALGS.
	AlgList []string

	// IdentitySecret is GATEWAY_IDENTITY_SECRET; empty: identity headers are forwarded unsigned.
	IdentitySecret string
	// SessionSecret is GATEWAY_SESSION_SECRET; empty: derived from IdentitySecret, else random at start.
	SessionSecret string

	// ClockSkew is GATEWAY_CLOCK_SKEW.
	ClockSkew time.Duration
	// JWKSRefreshInterval is GATEWAY_JWKS_REFRESH_INTERVAL.
	JWKSRefreshInterval time.Duration
	// JWKSRefetchCooldown is GATEWAY_JWKS_REFETCH_COOLDOWN.
	JWKSRefetchCooldown time.Duration
	// MaxBodyBytes is GATEWAY_MAX_BODY_BYTES.
	MaxBodyBytes int64
	// ShutdownTimeout is GATEWAY_SHUTDOWN_TIMEOUT.
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout is GATEWAY_READ_HEADER_TIMEOUT.
	ReadHeaderTimeout time.Duration
	// ReadTimeout is GATEWAY_READ_TIMEOUT.
	ReadTimeout time.Duration
	// WriteTimeout is GATEWAY_WRITE_TIMEOUT.
	WriteTimeout time.Duration
	// MaxConnections is GATEWAY_MAX_CONNECTIONS: 0 for the default cap, negative for none.
	MaxConnections int
	// UpstreamTimeout is GATEWAY_UPSTREAM_TIMEOUT.
	UpstreamTimeout time.Duration
	// AllowUpgrade is GATEWAY_ALLOW_UPGRADE: protocol upgrades are forwarded as tunnels the gateway does not inspect.
	AllowUpgrade bool
	// StreamRelay is GATEWAY_STREAM_RELAY: auto, on or off (see Env.StreamRelay and streamPath).
	StreamRelay string
	// PolicyFile is GATEWAY_POLICY_FILE; "" means no policy.
	PolicyFile string
	// AuditLog is GATEWAY_AUDIT_LOG: "stderr", "off" or a file path.
	AuditLog string
	// AuditArguments is GATEWAY_AUDIT_ARGUMENTS: "off" or "hash".
	AuditArguments string
	// ResourceName is GATEWAY_RESOURCE_NAME.
	ResourceName string

	// StaticClientID is MCP_USE_OAUTH_WORKOS_CLIENT_ID (or WORKOS_CLIENT_ID): non-empty means Option B.
	StaticClientID string
	// ClientSecret is MCP_USE_OAUTH_WORKOS_CLIENT_SECRET.
	ClientSecret string
	// ClientAuthMethod is GATEWAY_CLIENT_AUTH_METHOD: client_secret_basic or client_secret_post.
	ClientAuthMethod string
	// FacadeScopeList is GATEWAY_FACADE_SCOPES.
	FacadeScopeList []string
	// FacadeDefaultScopeList is GATEWAY_FACADE_DEFAULT_SCOPE.
	FacadeDefaultScopeList []string
	// TrustedProxyList is GATEWAY_TRUSTED_PROXIES as masked prefixes (an address is a prefix of its full length).
	TrustedProxyList []netip.Prefix
	// RateLimitUser is GATEWAY_RATE_LIMIT_USER; the zero Rate is no limit.
	RateLimitUser Rate
	// MaxStreamsUser is GATEWAY_MAX_STREAMS_USER; 0 is no cap.
	MaxStreamsUser int
	// RateLimitAnonymous is GATEWAY_RATE_LIMIT_ANONYMOUS; the zero Rate is no limit.
	RateLimitAnonymous Rate
	// RedisURL is GATEWAY_REDIS_URL; empty: no Redis, every replica keeps its state in memory. Read it with
	// RedisOptions; never log it (it may hold a password).
	RedisURL string

	// ClaimHeaderMap is GATEWAY_CLAIM_HEADERS, parsed; nil when unset.
	ClaimHeaderMap *identity.ClaimHeaders
	// CIMD is GATEWAY_CIMD == "on".
	CIMD bool
	// InsecureCIMDAllowPrivate is GATEWAY_CIMD_ALLOW_PRIVATE.
	InsecureCIMDAllowPrivate bool
	// CIMDCAFile is GATEWAY_CIMD_CA_FILE.
	CIMDCAFile string

	// Issuers are the issuers tokens are accepted from, in the order of GATEWAY_ISSUER_URL, each with its audiences
	// (GATEWAY_ISSUER_AUDIENCES, else AudienceList). The first is Issuer.
	Issuers []Issuer
	// TokenValidation is GATEWAY_TOKEN_VALIDATION: auto, jwt or introspection.
	TokenValidation string
	// Introspection is how opaque tokens are introspected; nil when they are not.
	Introspection *Introspection

	// Traces is the traces' configuration, from the OTEL_* variables (see tracing.FromEnv); off unless an exporter is
	// asked for.
	Traces tracing.Config
	// TraceUserID is GATEWAY_TRACE_USER_ID.
	TraceUserID bool

	// readFrom is the alias each variable was read from, when it was.
	readFrom readFrom
}

// Issuer is one issuer tokens are accepted from.
type Issuer struct {
	// URL is the issuer, compared byte for byte with a token's iss.
	URL string
	// Audiences are the aud values its tokens may carry; one must be present.
	Audiences []string
}

// Introspection is how opaque tokens are verified (RFC 7662).
type Introspection struct {
	// Issuer is GATEWAY_INTROSPECTION_ISSUER, else the first issuer.
	Issuer string
	// URL is GATEWAY_INTROSPECTION_URL; "" means the issuer's introspection_endpoint.
	URL string
	// ClientID and ClientSecret are GATEWAY_INTROSPECTION_CLIENT_ID and _SECRET.
	ClientID, ClientSecret string
	// PostAuth is whether GATEWAY_INTROSPECTION_AUTH_METHOD is client_secret_post.
	PostAuth bool
	// CacheTTL is GATEWAY_INTROSPECTION_CACHE_TTL.
	CacheTTL time.Duration
}

// asymmetric lists the JWS algorithms the gateway accepts at all.
var asymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Load reads the configuration from environ (use a map in tests; nil is not the process environment here) and
// validates it. The error reports every problem at once, each on its own line and naming its variable.
func Load(environ map[string]string) (*Config, error) {
	e, from, parseErrs, failed := parseEnv(environ)
	c, err := e.config(from)
	var traceErr error
	c.Traces, traceErr = tracing.FromEnv(environ)
	c.TraceUserID = e.TraceUserID
	if err := errors.Join(append(parseErrs, append(without(err, failed), traceErr)...)...); err != nil {
		return nil, err
	}
	return c, nil
}

// Variable returns the variable that name's value was read from: name, or the alias read in its place when name was
// unset (WORKOS_CLIENT_ID for MCP_USE_OAUTH_WORKOS_CLIENT_ID, say).
func (c *Config) Variable(name string) string { return c.readFrom.name(name) }

// readFrom maps a variable to the alias its value was read from, when it was.
type readFrom map[string]string

// name returns the variable v's value was read from.
func (r readFrom) name(v string) string { return cmp.Or(r[v], v) }

// varError is a problem with the value of one variable.
type varError struct {
	name string
	err  error
}

func (e *varError) Error() string { return e.name + ": " + e.err.Error() }
func (e *varError) Unwrap() error { return e.err }

// bad returns the problem format describes with variable name.
func bad(name, format string, args ...any) error {
	return &varError{name: name, err: fmt.Errorf(format, args...)}
}

// parseEnv parses environ, with the aliases applied, into an Env. It returns the aliases read, the values that did not
// parse (each naming its variable) and the names of their variables.
func parseEnv(environ map[string]string) (Env, readFrom, []error, map[string]bool) {
	environ, from := withAliases(environ)
	var e Env
	err := env.ParseWithOptions(&e, env.Options{Environment: environ})
	if err == nil {
		return e, from, nil, nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return e, from, []error{err}, nil
	}
	var errs []error
	failed := map[string]bool{}
	for _, err := range agg.Errors {
		var pe env.ParseError
		if !errors.As(err, &pe) {
			errs = append(errs, err)
			continue
		}
		f, _ := reflect.TypeFor[Env]().FieldByName(pe.Name)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		failed[name] = true
		if pe.Type == reflect.TypeFor[slog.Level]() {
			err = bad(name, "must be debug, info, warn or error (got %q)", environ[name])
		} else {
			err = &varError{name: name, err: pe.Err}
		}
		errs = append(errs, err)
	}
	return e, from, errs, failed
}

// withAliases returns a copy of environ, never nil (caarlos0/env would read the process environment), in which each
// Env variable that is unset or empty takes its alias's value when that is set, and GATEWAY_LISTEN_ADDR, unset or
// empty, is HOST:PORT when either is set (PORT 3000 when unset). It also returns the aliases it read.
func withAliases(environ map[string]string) (map[string]string, readFrom) {
	out, from := make(map[string]string, len(environ)+1), readFrom{}
	maps.Copy(out, environ)
	for f := range reflect.TypeFor[Env]().Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if alias := f.Tag.Get("alias"); alias != "" && out[name] == "" && out[alias] != "" {
			out[name], from[name] = out[alias], alias
		}
	}
	if out["GATEWAY_LISTEN_ADDR"] == "" && (out["HOST"] != "" || out["PORT"] != "") {
		out["GATEWAY_LISTEN_ADDR"] = net.JoinHostPort(out["HOST"], cmp.Or(out["PORT"], "3000"))
	}
	return out, from
}

// without returns the problems err joins, leaving out those about a variable in failed: it did not parse, was
// reported as such, and its zero value would only be reported again.
func without(err error, failed map[string]bool) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, without(e, failed)...)
		}
		return out
	}
	var ve *varError
	if errors.As(err, &ve) && failed[ve.name] {
		return nil
	}
	return []error{err}
}

// config checks e, one concern at a time, and derives the Config from it. The error joins every problem found.
func (e *Env) config(from readFrom) (*Config, error) {
	c := &Config{
		IssuerURL: e.IssuerURL, MCPPath: e.MCPPath, ListenAddr: e.ListenAddr, Level: e.LogLevel,
		ScopeList: e.RequiredScopes, AlgList: e.SigningAlgs,
		IdentitySecret: e.IdentitySecret, SessionSecret: e.SessionSecret,
		ClockSkew: e.ClockSkew, JWKSRefreshInterval: e.JWKSRefreshInterval, JWKSRefetchCooldown: e.JWKSRefetchCooldown,
		MaxBodyBytes: e.MaxBodyBytes, ShutdownTimeout: e.ShutdownTimeout, ReadHeaderTimeout: e.ReadHeaderTimeout,
		ReadTimeout: e.ReadTimeout, WriteTimeout: e.WriteTimeout, MaxConnections: e.MaxConnections,
		UpstreamTimeout: e.UpstreamTimeout, AllowUpgrade: e.AllowUpgrade, ResourceName: e.ResourceName,
		StreamRelay: e.StreamRelay, PolicyFile: e.PolicyFile, AuditLog: e.AuditLog, AuditArguments: e.AuditArguments,
		StaticClientID: e.ClientID, ClientSecret: e.ClientSecret, ClientAuthMethod: e.ClientAuthMethod,
		FacadeScopeList: e.FacadeScopes, FacadeDefaultScopeList: e.FacadeDefaultScope,
		RateLimitUser: e.RateLimitUser, MaxStreamsUser: e.MaxStreamsUser, RateLimitAnonymous: e.RateLimitAnonymous,
		RedisURL: e.RedisURL, readFrom: from,
	}
	var issuerErr, publicErr, upstreamErr, listenErr, originErr, proxyErr error
	c.Issuer, issuerErr = e.issuer(from)
	c.Public, publicErr = e.public(from)
	c.Resource = resourceURL(c.Public, e.MCPPath)
	c.Upstream, upstreamErr = e.upstream()
	c.MetricsAddr, listenErr = e.listeners()
	c.AudienceList = e.audiences(c.Resource)
	c.OriginList, originErr = e.origins(c.Public)
	c.TrustedProxyList, proxyErr = e.trustedProxies()
	identityErr := errors.Join(e.identitySources(c), e.issuerSources(c))
	return c, errors.Join(issuerErr, publicErr, e.checkMCPPath(), upstreamErr, listenErr, e.checkScopes(), originErr,
		e.checkSecrets(), e.checkOptionB(), proxyErr, e.checkAlgs(), e.checkLimits(), e.checkStreamRelay(c.Upstream),
		e.checkAudit(), checkRedisURL(e.RedisURL), identityErr)
}

// identitySources checks and copies GATEWAY_CLAIM_HEADERS and the GATEWAY_CIMD variables.
func (e *Env) identitySources(c *Config) error {
	var errs []error
	m, err := identity.ParseClaimHeaders(e.ClaimHeaders)
	if err != nil {
		errs = append(errs, bad("GATEWAY_CLAIM_HEADERS", "%w", err))
	} else if len(m.Names()) > 0 {
		c.ClaimHeaderMap = m
	}
	switch e.CIMD {
	case "on", "off":
		c.CIMD = e.CIMD == "on"
	default:
		errs = append(errs, bad("GATEWAY_CIMD", "must be on or off (got %q)", e.CIMD))
	}
	if e.ClientID == "" {
		if e.InsecureCIMDAllowPrivate {
			errs = append(errs, bad("GATEWAY_CIMD_ALLOW_PRIVATE", "is set without MCP_USE_OAUTH_WORKOS_CLIENT_ID; it applies to Option B only"))
		}
		if e.CIMDCAFile != "" {
			errs = append(errs, bad("GATEWAY_CIMD_CA_FILE", "is set without MCP_USE_OAUTH_WORKOS_CLIENT_ID; it applies to Option B only"))
		}
	}
	c.InsecureCIMDAllowPrivate, c.CIMDCAFile = e.InsecureCIMDAllowPrivate, e.CIMDCAFile
	return errors.Join(errs...)
}

// checkAudit checks GATEWAY_AUDIT_LOG and GATEWAY_AUDIT_ARGUMENTS.
func (e *Env) checkAudit() error {
	var errs []error
	if e.AuditLog == "" {
		errs = append(errs, bad("GATEWAY_AUDIT_LOG", "must be stderr, off or a file path"))
	}
	if e.AuditArguments != "off" && e.AuditArguments != "hash" {
		errs = append(errs, bad("GATEWAY_AUDIT_ARGUMENTS", "must be off or hash (got %q)", e.AuditArguments))
	}
	return errors.Join(errs...)
}

// issuer returns the issuer: GATEWAY_ISSUER_URL, else the AuthKit domain's URL.
func (e *Env) issuer(from readFrom) (string, error) {
	if list := fields(e.IssuerURL); len(list) > 0 {
		if err := checkBaseURL(list[0], true); err != nil {
			return "", &varError{name: "GATEWAY_ISSUER_URL", err: err}
		}
		return list[0], nil
	}
	if e.WorkOSSubdomain == "" {
		return "", bad("GATEWAY_ISSUER_URL", "no issuer: set GATEWAY_ISSUER_URL, or MCP_USE_OAUTH_WORKOS_SUBDOMAIN to your AuthKit subdomain (e.g. my-app-54)")
	}
	iss, err := IssuerFromSubdomain(e.WorkOSSubdomain)
	if err != nil {
		return "", &varError{name: from.name("MCP_USE_OAUTH_WORKOS_SUBDOMAIN"), err: err}
	}
	return iss, nil
}

// public returns the origin clients use: GATEWAY_PUBLIC_URL, else http://localhost and the listen port. It is nil when
// there is none; a listen address without a port is listeners' to report.
func (e *Env) public(from readFrom) (*url.URL, error) {
	name, public := from.name("GATEWAY_PUBLIC_URL"), e.PublicURL
	switch {
	case public != "":
		if err := checkBaseURL(public, false); err != nil {
			return nil, &varError{name: name, err: err}
		}
	default:
		if _, _, err := net.SplitHostPort(e.ListenAddr); err != nil {
			return nil, nil
		}
		var err error
		if public, err = defaultPublicURL(e.ListenAddr); err != nil {
			return nil, &varError{name: name, err: err}
		}
	}
	u, _ := url.Parse(public)
	if u.Path != "" && u.Path != "/" {
		return nil, bad(name, "must be an origin without a path (got path %q); set the endpoint path with GATEWAY_MCP_PATH", u.Path)
	}
	return &url.URL{Scheme: strings.ToLower(u.Scheme), Host: strings.ToLower(u.Host)}, nil
}

// resourceURL returns the resource identifier: public + path, or public alone for the path "/"; "" without public.
func resourceURL(public *url.URL, path string) string {
	switch {
	case public == nil:
		return ""
	case path == "/":
		return public.String()
	}
	return public.String() + path
}

// checkMCPPath checks that GATEWAY_MCP_PATH is a plain absolute path that the gateway does not serve itself.
func (e *Env) checkMCPPath() error {
	switch p := e.MCPPath; {
	case !strings.HasPrefix(p, "/"):
		return bad("GATEWAY_MCP_PATH", "must start with / (got %q)", p)
	case p != "/" && strings.HasSuffix(p, "/"):
		return bad("GATEWAY_MCP_PATH", "must not end with / (got %q)", p)
	case strings.ContainsAny(p, "?#%*{} \t"):
		return bad("GATEWAY_MCP_PATH", "must be a plain path (got %q)", p)
	case gatewayPath(p):
		return bad("GATEWAY_MCP_PATH", "%q is a path the gateway serves itself", p)
	case e.ClientID != "" && authserver.OwnsPath(p):
		return bad("GATEWAY_MCP_PATH", "%q is a path the gateway serves itself when MCP_USE_OAUTH_WORKOS_CLIENT_ID is set", p)
	}
	return nil
}

// upstream returns GATEWAY_UPSTREAM_URL, an absolute http(s) URL without credentials, query or fragment, with the path
// "/" when it has none.
func (e *Env) upstream() (*url.URL, error) {
	u, err := url.Parse(e.UpstreamURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, bad("GATEWAY_UPSTREAM_URL", "must be an absolute http(s) URL without credentials, query or fragment (got %q)", e.UpstreamURL)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// checkStreamRelay checks GATEWAY_STREAM_RELAY: auto, on or off, and on only for an http:// upstream (nil: not
// known, reported as GATEWAY_UPSTREAM_URL's).
func (e *Env) checkStreamRelay(upstream *url.URL) error {
	switch {
	case e.StreamRelay != "auto" && e.StreamRelay != "on" && e.StreamRelay != "off":
		return bad("GATEWAY_STREAM_RELAY", "must be auto, on or off (got %q)", e.StreamRelay)
	case e.StreamRelay == "on" && upstream != nil && upstream.Scheme != "http":
		return bad("GATEWAY_STREAM_RELAY", "on needs an http:// upstream: the relay speaks plain HTTP/1.1 (GATEWAY_UPSTREAM_URL is %s)", upstream.Scheme)
	}
	return nil
}

// listeners checks the listen and metrics addresses, and returns the metrics address: "" when it is off.
func (e *Env) listeners() (string, error) {
	var errs []error
	if _, _, err := net.SplitHostPort(e.ListenAddr); err != nil {
		errs = append(errs, bad("GATEWAY_LISTEN_ADDR", "must be host:port or :port (got %q)", e.ListenAddr))
	}
	metrics := e.MetricsAddr
	if metrics == "off" {
		metrics = ""
	}
	if metrics != "" {
		if _, _, err := net.SplitHostPort(metrics); err != nil {
			errs = append(errs, bad("GATEWAY_METRICS_ADDR", "must be host:port, or off (got %q)", metrics))
		}
	}
	return metrics, errors.Join(errs...)
}

// audiences returns GATEWAY_AUDIENCES, else the resource identifier.
func (e *Env) audiences(resource string) []string {
	if len(e.Audiences) == 0 && resource != "" {
		return []string{resource}
	}
	return e.Audiences
}

// checkScopes checks that every required scope is a scope-token.
func (e *Env) checkScopes() error {
	var errs []error
	for _, s := range e.RequiredScopes {
		if !validScopeToken(s) {
			errs = append(errs, bad("GATEWAY_REQUIRED_SCOPES", "%q is not a valid scope", s))
		}
	}
	return errors.Join(errs...)
}

// origins returns GATEWAY_ALLOWED_ORIGINS as lower-case origins ("*" kept), else the public origin.
func (e *Env) origins(public *url.URL) ([]string, error) {
	var origins []string
	var errs []error
	for _, o := range e.AllowedOrigins {
		if o == "*" {
			origins = append(origins, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			errs = append(errs, bad("GATEWAY_ALLOWED_ORIGINS", "%q is not an origin like https://app.example.com", o))
			continue
		}
		origins = append(origins, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	if len(origins) == 0 && public != nil {
		origins = []string{public.String()}
	}
	return origins, errors.Join(errs...)
}

// checkSecrets checks that each secret set is at least 32 bytes.
func (e *Env) checkSecrets() error {
	var errs []error
	for _, s := range []struct{ name, value string }{
		{"GATEWAY_IDENTITY_SECRET", e.IdentitySecret},
		{"GATEWAY_SESSION_SECRET", e.SessionSecret},
	} {
		if s.value != "" && len(s.value) < 32 {
			errs = append(errs, bad(s.name, "must be at least 32 bytes (got %d); generate one with: openssl rand -base64 32", len(s.value)))
		}
	}
	return errors.Join(errs...)
}

// checkOptionB checks the pre-registered client and the facade's scopes: each set only with a client id, well formed,
// and the scopes a client could be refused within the allow-list.
func (e *Env) checkOptionB() error {
	var errs []error
	if e.ClientSecret != "" && e.ClientID == "" {
		errs = append(errs, bad("MCP_USE_OAUTH_WORKOS_CLIENT_SECRET", "is set without MCP_USE_OAUTH_WORKOS_CLIENT_ID; set the client id it belongs to, or unset it"))
	}
	if e.ClientAuthMethod != "client_secret_basic" && e.ClientAuthMethod != "client_secret_post" {
		errs = append(errs, bad("GATEWAY_CLIENT_AUTH_METHOD", "must be client_secret_basic or client_secret_post (got %q)", e.ClientAuthMethod))
	}
	if strings.ContainsAny(e.ClientID, " \t\r\n") {
		errs = append(errs, bad("MCP_USE_OAUTH_WORKOS_CLIENT_ID", "must not contain white space"))
	}
	for _, v := range []struct {
		name string
		list List
	}{{"GATEWAY_FACADE_SCOPES", e.FacadeScopes}, {"GATEWAY_FACADE_DEFAULT_SCOPE", e.FacadeDefaultScope}} {
		if len(v.list) > 0 && e.ClientID == "" {
			errs = append(errs, bad(v.name, "is set without MCP_USE_OAUTH_WORKOS_CLIENT_ID; it applies to Option B only"))
		}
		for _, s := range v.list {
			if !validScopeToken(s) {
				errs = append(errs, bad(v.name, "%q is not a valid scope", s))
			}
		}
	}
	if len(e.FacadeScopes) == 0 {
		return errors.Join(errs...)
	}
	for _, s := range e.FacadeDefaultScope {
		if !slices.Contains(e.FacadeScopes, s) {
			errs = append(errs, bad("GATEWAY_FACADE_DEFAULT_SCOPE", "%q is not in GATEWAY_FACADE_SCOPES", s))
		}
	}
	for _, s := range e.RequiredScopes {
		if !slices.Contains(e.FacadeScopes, s) {
			errs = append(errs, bad("GATEWAY_REQUIRED_SCOPES", "%q is not in GATEWAY_FACADE_SCOPES, so no client could obtain a token with it", s))
		}
	}
	return errors.Join(errs...)
}

// trustedProxies returns GATEWAY_TRUSTED_PROXIES as masked prefixes, an address as the prefix of its full length.
func (e *Env) trustedProxies() ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	var errs []error
	for _, p := range e.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				errs = append(errs, bad("GATEWAY_TRUSTED_PROXIES", "%q is neither an IP address nor a CIDR range such as 10.0.0.0/8", p))
				continue
			}
			pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		prefixes = append(prefixes, pfx.Masked())
	}
	return prefixes, errors.Join(errs...)
}

// checkAlgs checks that GATEWAY_SIGNING_ALGS names at least one algorithm, and only asymmetric ones.
func (e *Env) checkAlgs() error {
	if len(e.SigningAlgs) == 0 {
		return bad("GATEWAY_SIGNING_ALGS", "must name at least one algorithm")
	}
	var errs []error
	for _, a := range e.SigningAlgs {
		if !slices.Contains(asymmetric, a) {
			errs = append(errs, bad("GATEWAY_SIGNING_ALGS", "%q is not allowed; choose from %s", a, strings.Join(asymmetric, ",")))
		}
	}
	return errors.Join(errs...)
}

// checkLimits checks the durations and sizes.
func (e *Env) checkLimits() error {
	var errs []error
	if e.ClockSkew < 0 || e.ClockSkew > 5*time.Minute {
		errs = append(errs, bad("GATEWAY_CLOCK_SKEW", "must be between 0s and 5m (got %s)", e.ClockSkew))
	}
	if e.JWKSRefreshInterval < time.Minute {
		errs = append(errs, bad("GATEWAY_JWKS_REFRESH_INTERVAL", "must be at least 1m (got %s)", e.JWKSRefreshInterval))
	}
	if e.JWKSRefetchCooldown < time.Second {
		errs = append(errs, bad("GATEWAY_JWKS_REFETCH_COOLDOWN", "must be at least 1s (got %s)", e.JWKSRefetchCooldown))
	}
	if e.MaxStreamsUser < 0 {
		errs = append(errs, bad("GATEWAY_MAX_STREAMS_USER", "must be 0 (no cap) or more (got %d)", e.MaxStreamsUser))
	}
	if e.MaxBodyBytes < 1024 {
		errs = append(errs, bad("GATEWAY_MAX_BODY_BYTES", "must be at least 1024 (got %d)", e.MaxBodyBytes))
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{
		{"GATEWAY_SHUTDOWN_TIMEOUT", e.ShutdownTimeout},
		{"GATEWAY_READ_HEADER_TIMEOUT", e.ReadHeaderTimeout},
		{"GATEWAY_READ_TIMEOUT", e.ReadTimeout},
		{"GATEWAY_WRITE_TIMEOUT", e.WriteTimeout},
		{"GATEWAY_UPSTREAM_TIMEOUT", e.UpstreamTimeout},
	} {
		if t.d <= 0 {
			errs = append(errs, bad(t.name, "must be positive (got %s)", t.d))
		}
	}
	return errors.Join(errs...)
}

// DefaultPublicURL returns the public URL the gateway uses when environ sets neither GATEWAY_PUBLIC_URL nor MCP_URL:
// http://localhost and the port it listens on (GATEWAY_LISTEN_ADDR, else HOST and PORT; :3000 by default). There is
// none, and an error says why, when that port is 0 (known only once bound) or not a number.
func DefaultPublicURL(environ map[string]string) (string, error) {
	e, _, _, _ := parseEnv(environ) // only the listen address is read: a string, which always parses
	if _, _, err := net.SplitHostPort(e.ListenAddr); err != nil {
		return "", fmt.Errorf("must be set: the listen address %q is not host:port, so there is no default", e.ListenAddr)
	}
	return defaultPublicURL(e.ListenAddr)
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

// CallbackURL is the gateway's redirect URI at the authorization server in Option B: the one URL to register there for
// the pre-registered client.
func (c *Config) CallbackURL() string { return c.AuthServer().CallbackURL() }

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

// AuthServer is what Option B's authorization server (package authserver) needs of the configuration.
func (c *Config) AuthServer() authserver.Config {
	var public string
	if c.Public != nil {
		public = c.Public.String()
	}
	return authserver.Config{
		PublicURL:        public,
		Resource:         c.Resource,
		ResourceName:     c.ResourceName,
		Issuer:           c.Issuer,
		ClientID:         c.StaticClientID,
		ClientSecret:     c.ClientSecret,
		ClientAuthMethod: c.ClientAuthMethod,
		Scopes:           c.FacadeScopeList,
		DefaultScope:     c.FacadeDefaultScopeList,
		RequiredScopes:   c.ScopeList,
		TrustedProxies:   c.TrustedProxyList,
	}
}

// gatewayPath reports whether the gateway answers path p itself instead of forwarding it, in either mode: the MCP
// endpoint cannot be one of them. In Option B the gateway also owns the authorization server's paths
// (authserver.OwnsPath).
func gatewayPath(p string) bool {
	return p == "/healthz" || p == "/readyz" || p == "/.well-known" || strings.HasPrefix(p, "/.well-known/")
}
