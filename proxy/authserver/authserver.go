// Package authserver is Option B of the gateway: the OAuth authorization server MCP clients see when the gateway holds
// a client pre-registered at the real authorization server, so that MCP clients need not register there (Dynamic
// Client Registration may be off).
//
//	/register   answers RFC 7591 for any client; the client id is the registration itself, sealed (no database)
//	/authorize  checks the client and its redirect URI, asks the user's consent, then redirects to the upstream
//	            authorization endpoint with the pre-registered client id and the gateway's /callback
//	/callback   redirects to the client's redirect URI with a sealed code (bound to the client), the client's state
//	            and iss = the gateway (RFC 9207)
//	/token      authenticates the client, unwraps the code, substitutes the pre-registered client (and its secret,
//	            for authorization_code and refresh_token only) and the callback, and relays the upstream answer
//
// and its own metadata (RFC 8414) at /.well-known/oauth-authorization-server and /.well-known/openid-configuration.
//
// Every value the server hands out and later reads back (client ids, state, codes, the pending consent, the consent
// cookie) is sealed with AES-256-GCM under a key derived from Options.Key, with its purpose as additional data, so
// one kind can never be presented as another.
//
// The decisions are pure functions (protocol.go, seal.go, limits.go). The handlers (handlers.go, authorize.go) wrap
// them and return errors, which errors.go alone turns into what a client sees: an OAuth JSON error, a page for a
// person, or an error sent to the client's redirect URI. The server writes no log line per request: what it has to
// say of a request goes to Options.Note, for the request's one access line.
package authserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mcp-gateway/gateway/metadata"
	"github.com/mcp-gateway/gateway/proxy/cimd"
)

// Config is what the authorization server needs to know. proxy fills it from its validated configuration.
type Config struct {
	// PublicURL is the gateway's public origin, such as https://mcp.example.com, without a path: the issuer MCP clients
	// see and the base of every endpoint and of the callback. With https, the cookies are __Host- prefixed and Secure;
	// http is meant for a loopback address in development. Required.
	PublicURL string
	// Resource is the protected MCP server's resource identifier (RFC 8707): the only resource a client may ask for,
	// and the one sent to the authorization server, so that tokens are minted for this MCP server only. Required.
	Resource string
	// ResourceName names the MCP server on the consent page.
	ResourceName string
	// Issuer is the upstream authorization server's issuer: an authorization response that names another is refused.
	// Required.
	Issuer string

	// ClientID is the client pre-registered at the authorization server, whose callback is CallbackURL. Required.
	ClientID string
	// ClientSecret is ClientID's secret. Empty: a public client. It is sent with authorization_code and refresh_token
	// grants only, never with any other grant a client asks for.
	ClientSecret string
	// ClientAuthMethod is how ClientSecret is presented: client_secret_basic (the default when empty) or
	// client_secret_post. It must be the method the client was registered with.
	ClientAuthMethod string

	// Scopes is the allow-list of scopes MCP clients may ask for: an authorization or token request naming another is
	// refused with invalid_scope before the authorization server sees it. It is also the metadata's scopes_supported.
	// Empty: any well-formed scope is passed on, and scopes_supported is the authorization server's.
	Scopes []string
	// DefaultScope is sent upstream when a client asks for no scope. Empty: the protected resource's scopes (see
	// ScopesFor).
	DefaultScope []string
	// RequiredScopes are the scopes every token must carry at the MCP server: they are added to the protected
	// resource's scopes.
	RequiredScopes []string
	// TrustedProxies are the peers whose X-Forwarded-For names the client address that rate limits count. Empty: the
	// TCP peer is the client; a forwarded address is never believed.
	TrustedProxies []netip.Prefix
}

// ScopesFor returns, for an authorization server whose metadata lists upstream as scopes_supported: the
// scopes_supported of this server's metadata (Scopes, else upstream), those of the protected resource metadata (the
// same without offline_access, plus RequiredScopes), and the scope sent upstream when a client sends none
// (DefaultScope, else the protected resource's).
func (c Config) ScopesFor(upstream []string) (advertised, resource, fallback []string) {
	advertised = c.Scopes
	if len(advertised) == 0 {
		advertised = upstream
	}
	resource = resourceScopes(advertised, c.RequiredScopes)
	fallback = c.DefaultScope
	if len(fallback) == 0 {
		fallback = resource
	}
	return advertised, resource, fallback
}

// CallbackURL is the gateway's redirect URI at the authorization server: the one URL to register there for ClientID.
func (c Config) CallbackURL() string { return c.PublicURL + callbackPath }

// validate reports every problem of c at once.
func (c Config) validate() error {
	var errs []error
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.Path != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		errs = append(errs, fmt.Errorf("public URL %q: must be an http(s) origin without a path, query or credentials", c.PublicURL))
	}
	if c.Resource == "" {
		errs = append(errs, errors.New("resource: must be set"))
	}
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer: must be set"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("client id: must be set"))
	}
	switch c.ClientAuthMethod {
	case "", "client_secret_basic", "client_secret_post":
	default:
		errs = append(errs, fmt.Errorf("client auth method %q: must be client_secret_basic or client_secret_post", c.ClientAuthMethod))
	}
	return errors.Join(errs...)
}

// Options are the server's injected dependencies.
type Options struct {
	// Key seals everything the server hands out and reads back: at least 32 secret bytes, the same on every replica
	// (else replicas refuse each other's client ids, codes and consents). Changing it invalidates every registered
	// client, which must then register again. Required.
	Key []byte
	// Client calls the authorization server's token endpoint; the server uses a copy that never follows redirects.
	// nil: a client with a 10s timeout.
	Client *http.Client
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// AuthServer returns the authorization server's metadata, or nil while it is not known yet (the endpoints that need
	// it answer temporarily_unavailable meanwhile). Required.
	AuthServer func() *metadata.AuthServer
	// Note receives what the server has to say of a request, for the request's access line: refused is true when the
	// request was refused (an OAuth error, an error page, or the authorization server's refusal passed on). The
	// attributes are fixed texts and causes, never a token, code or secret. nil: dropped. The server logs nothing per
	// request itself, so that nobody can make it write faster than the access log's budget allows.
	Note func(r *http.Request, refused bool, attrs ...slog.Attr)
	// Used is the replay memory of sign-in states. Give every replica the same shared store (package redisstore's
	// Once) so that a state used at one is refused at all. While it fails, callbacks are refused with 503 (the user
	// reloads the page). nil: this process's memory, bounded, forgetting the oldest states first.
	Used UsedStore
	// ClientMetadata resolves Client ID Metadata Documents: with it, an https client_id is the URL of the client's
	// metadata, which the server fetches (see package cimd), and the metadata says
	// client_id_metadata_document_supported. nil: only registered (sealed) client ids are known.
	ClientMetadata *cimd.Resolver
}

// Server is the authorization server. Create it with New and serve its Routes.
type Server struct {
	cfg      Config
	issuer   string // the gateway's public URL
	client   upstreamClient
	seal     *sealer
	used     UsedStore
	now      func() time.Time
	http     *http.Client // upstream token requests; never follows redirects
	upstream func() *metadata.AuthServer
	note     func(r *http.Request, refused bool, attrs ...slog.Attr)
	secure   bool // https public URL: __Host- cookies with Secure
	limits   limits
	doc      atomic.Pointer[metadataDoc]
	cimd     *cimd.Resolver // nil: metadata documents off
	routes   []Route
}

// New returns a server for cfg. It does no I/O. It fails when cfg or the required options are missing or malformed.
func New(cfg Config, o Options) (*Server, error) {
	errs := []error{cfg.validate()}
	if len(o.Key) < 32 {
		errs = append(errs, errors.New("key: must be at least 32 bytes"))
	}
	if o.AuthServer == nil {
		errs = append(errs, errors.New("authorization server metadata: must be given"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("authorization server: %w", err)
	}
	u, _ := url.Parse(cfg.PublicURL) // validated
	s := &Server{
		cfg:    cfg,
		issuer: cfg.PublicURL,
		client: upstreamClient{
			ID:         cfg.ClientID,
			Secret:     cfg.ClientSecret,
			AuthMethod: cfg.ClientAuthMethod,
			Callback:   cfg.CallbackURL(),
		},
		seal:     newSealer(o.Key),
		used:     o.Used,
		now:      o.Now,
		upstream: o.AuthServer,
		note:     o.Note,
		secure:   u.Scheme == "https",
		limits:   newLimits(),
		cimd:     o.ClientMetadata,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.used == nil {
		s.used = newUsedSet(usedStates)
	}
	if s.note == nil {
		s.note = func(*http.Request, bool, ...slog.Attr) {}
	}
	c := http.Client{Timeout: 10 * time.Second}
	if o.Client != nil {
		c = *o.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.http = &c
	s.routes = s.buildRoutes()
	return s, nil
}

// The paths the server owns, besides its metadata.
const (
	authorizePath = "/authorize"
	tokenPath     = "/token"
	registerPath  = "/register"
	callbackPath  = "/callback"
)

// The paths of the server's metadata (RFC 8414, and OpenID Connect Discovery for clients that look there).
const (
	asMetadataPath   = "/.well-known/oauth-authorization-server"
	oidcMetadataPath = "/.well-known/openid-configuration"
)

// OwnsPath reports whether p is one of the paths the server answers (see Server.Routes), which an MCP endpoint must
// therefore not use.
func OwnsPath(p string) bool {
	switch p {
	case authorizePath, tokenPath, registerPath, callbackPath, asMetadataPath, oidcMetadataPath:
		return true
	}
	return false
}

// Route is one endpoint of the server: its path (matched exactly), a fixed name for metrics and logs, and its handler.
// Each handler checks the method itself and answers OPTIONS where browsers send a preflight.
type Route struct {
	Path    string
	Name    string
	Handler http.Handler
}

// Routes returns every endpoint the server owns, to be mounted at the root of the gateway's public URL.
func (s *Server) Routes() []Route { return slices.Clone(s.routes) }

func (s *Server) buildRoutes() []Route {
	meta := s.metadataHandler()
	return []Route{
		{Path: asMetadataPath, Name: "as_metadata", Handler: meta},
		{Path: oidcMetadataPath, Name: "oidc_metadata", Handler: meta},
		{Path: registerPath, Name: "oauth_register", Handler: s.api(s.register)},
		{Path: authorizePath, Name: "oauth_authorize", Handler: s.browser(s.authorize)},
		{Path: callbackPath, Name: "oauth_callback", Handler: s.browser(s.callback)},
		{Path: tokenPath, Name: "oauth_token", Handler: s.api(s.token)},
	}
}

// Issuer is the server's issuer: the gateway's public URL.
func (s *Server) Issuer() string { return s.issuer }

// Callback is the gateway's redirect URI at the authorization server.
func (s *Server) Callback() string { return s.client.Callback }

// ResourceScopes is the scopes_supported of the protected resource metadata for the authorization server's metadata as
// (nil before it is known): see Config.ScopesFor.
func (s *Server) ResourceScopes(as *metadata.AuthServer) []string {
	_, resource, _ := s.scopes(as)
	return resource
}

// scopes returns the server's scopes for the upstream metadata as (nil before discovery): see Config.ScopesFor.
func (s *Server) scopes(as *metadata.AuthServer) (advertised, resource, fallback []string) {
	var upstream []string
	if as != nil {
		upstream = as.ScopesSupported
	}
	return s.cfg.ScopesFor(upstream)
}

// scopePolicy is the scope policy for authorization requests: the allow-list, and the scope sent when a client sends
// none.
func (s *Server) scopePolicy(as *metadata.AuthServer) scopePolicy {
	_, _, fallback := s.scopes(as)
	return scopePolicy{allowed: s.cfg.Scopes, fallback: fallback}
}
