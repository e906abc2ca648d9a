// Package devauth is a development authorization server that behaves like WorkOS AuthKit, for `gateway --dev`. It
// is a development tool: it signs in demo users without passwords, keeps everything in memory and refuses to run on
// anything but a loopback issuer. The production gateway never calls it; a binary built with -tags nodev leaves it out.
//
// What it serves, at AuthKit's paths:
//
//   - RFC 8414 metadata at /.well-known/oauth-authorization-server and OpenID Connect discovery at
//     /.well-known/openid-configuration (the same document);
//   - the JSON Web Key Set at /oauth2/jwks: one RSA key made by New;
//   - open Dynamic Client Registration (RFC 7591) at /oauth2/register, public clients only (token_endpoint_auth_method
//     none). Client ids are self-contained (the registered metadata, encoded), so they survive a restart;
//   - /oauth2/authorize: authorization code with PKCE S256 required, RFC 8707 resource, RFC 9207 iss on the response.
//     A sign-in page lists the demo users, then a consent page; plain HTML forms, CSRF-protected, not frameable. With
//     Options.AutoLogin the pages are skipped;
//   - /oauth2/token: authorization_code and refresh_token grants; refresh tokens rotate, and reuse of a spent refresh
//     token or code revokes every token of that authorization;
//   - GET /user_management/users/{id}: a stand-in for the WorkOS User Management API, for the tool get-workos-user.
//
// Requests whose Host is not a loopback name with the issuer's port are refused (DNS rebinding).
//
// Access tokens are RS256 JWTs shaped like AuthKit's (sub user_…, org_id, sid, client_id, scope, jti) plus email,
// name, role, roles and permissions of the demo user, with aud set to the requested resource, or to
// Options.Resource when the client sends none.
package devauth

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Defaults used when the corresponding Options field is zero.
const (
	DefaultAccessTokenTTL  = time.Hour
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultCodeTTL         = 2 * time.Minute
	DefaultInteractionTTL  = 15 * time.Minute
)

// supportedScopes are the scopes AuthKit advertises; any other well-formed scope a client asks for is granted as well,
// so that GATEWAY_REQUIRED_SCOPES can be tried out.
var supportedScopes = []string{"email", "offline_access", "openid", "profile"}

// defaultScope is granted when a client asks for no scope.
const defaultScope = "openid profile email offline_access"

// Options configures New.
type Options struct {
	// Issuer is the server's own URL, http or https on a loopback host (localhost, 127.0.0.0/8, ::1), without a path.
	// Required. Every endpoint and the iss of every token are built from it.
	Issuer string

	// Resource is the resource identifier of the gateway (its MCP URL). Required. It is the only resource the server
	// issues tokens for (another one is refused with invalid_target), and the audience of tokens whose client sent no
	// resource parameter. AuthKit would issue its default audience then, which the gateway refuses.
	Resource string

	// Users are the accounts the sign-in page offers. Nil means DemoUsers().
	Users []User

	// AutoLogin is the id or email of a user who is signed in, and whose consent is given, without any page. Empty
	// means the pages are shown. For scripts and CI.
	AutoLogin string

	// APIKey is the bearer key of the WorkOS user API stand-in. Empty means a random sk_test_dev_… key; read it back
	// with APIKey.
	APIKey string

	// Key signs the tokens. Nil means a new 2048-bit RSA key.
	Key *rsa.PrivateKey

	// Token and code lifetimes. Zero means the Default… constants.
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	CodeTTL         time.Duration

	// Now is the clock. Nil means time.Now.
	Now func() time.Time

	// Logger receives one line per registration, sign-in and token. Nil discards. Tokens and codes are never logged.
	Logger *slog.Logger
}

// Server is the development authorization server. It is an http.Handler.
type Server struct {
	issuer    string
	port      string // of the issuer, as requests' Host must carry it
	resource  string
	users     []User
	autoLogin *User
	apiKey    string
	signer    jose.Signer
	jwks      []byte // the public key set, marshalled once
	meta      []byte // the metadata document, marshalled once
	accessTTL time.Duration
	refreshTT time.Duration
	codeTTL   time.Duration
	now       func() time.Time
	log       *slog.Logger
	started   time.Time

	mu    sync.Mutex
	state state

	mux *http.ServeMux
}

// New returns a server for o, or an error naming what is wrong with o.
func New(o Options) (*Server, error) {
	var errs []error
	if err := checkLoopbackURL(o.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	}
	if u, err := url.Parse(o.Resource); o.Resource == "" || err != nil || !u.IsAbs() || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("resource: %q is not an absolute URL without a fragment", o.Resource))
	}
	s := &Server{
		issuer:    strings.TrimSuffix(o.Issuer, "/"),
		resource:  o.Resource,
		users:     o.Users,
		apiKey:    o.APIKey,
		accessTTL: cmpOr(o.AccessTokenTTL, DefaultAccessTokenTTL),
		refreshTT: cmpOr(o.RefreshTokenTTL, DefaultRefreshTokenTTL),
		codeTTL:   cmpOr(o.CodeTTL, DefaultCodeTTL),
		now:       o.Now,
		log:       o.Logger,
	}
	if s.users == nil {
		s.users = DemoUsers()
	}
	if err := validateUsers(s.users); err != nil {
		errs = append(errs, err)
	}
	if o.AutoLogin != "" {
		if u, ok := s.findUser(o.AutoLogin); ok {
			s.autoLogin = &u
		} else {
			errs = append(errs, fmt.Errorf("autologin: no user with id or email %q; the users are %s", o.AutoLogin, userList(s.users)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.apiKey == "" {
		s.apiKey = "sk_test_dev_" + randomToken(24)
	}
	s.started = s.now().UTC()
	iu, _ := url.Parse(s.issuer)
	s.port = iu.Port()
	if s.port == "" {
		s.port = map[string]string{"http": "80", "https": "443"}[iu.Scheme]
	}

	key := o.Key
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("generate signing key: %w", err)
		}
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("key thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	s.signer, err = jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	if s.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}); err != nil {
		return nil, fmt.Errorf("marshal key set: %w", err)
	}
	if s.meta, err = json.MarshalIndent(s.metadata(), "", "  "); err != nil {
		return nil, fmt.Errorf("marshal metadata: %w", err)
	}
	s.state = newState()
	s.mux = s.routes()
	return s, nil
}

// Issuer returns the issuer URL.
func (s *Server) Issuer() string { return s.issuer }

// APIKey returns the key the WorkOS user API stand-in accepts.
func (s *Server) APIKey() string { return s.apiKey }

// Users returns the accounts the server signs in.
func (s *Server) Users() []User { return slices.Clone(s.users) }

// AutoLogin returns the user signed in without a page, if any.
func (s *Server) AutoLogin() (User, bool) {
	if s.autoLogin == nil {
		return User{}, false
	}
	return *s.autoLogin, true
}

// ServeHTTP serves every endpoint of the server to requests addressed to it: a request whose Host is not a loopback
// name with the issuer's port is refused, so that a web page cannot reach the server through DNS rebinding.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil { // no port: the scheme's default
		host, port = r.Host, map[bool]string{false: "80", true: "443"}[r.TLS != nil]
	}
	if port != s.port || !isLoopbackHost(host) {
		writeJSONError(w, http.StatusMisdirectedRequest, "invalid_request", "this server answers requests for "+s.issuer+" only")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Endpoint paths, as AuthKit names them.
const (
	pathAuthorize = "/oauth2/authorize"
	pathToken     = "/oauth2/token"
	pathRegister  = "/oauth2/register"
	pathJWKS      = "/oauth2/jwks"
)

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/.well-known/oauth-authorization-server", public("GET", s.serveMetadata))
	mux.Handle("/.well-known/openid-configuration", public("GET", s.serveMetadata))
	mux.Handle(pathJWKS, public("GET", s.serveJWKS))
	mux.Handle(pathRegister, public("POST", s.register))
	mux.Handle(pathToken, public("POST", s.token))
	mux.HandleFunc("GET "+pathAuthorize, s.authorize)
	mux.HandleFunc("GET /interaction/{id}", s.showInteraction)
	mux.HandleFunc("POST /interaction/{id}/sign-in", s.signIn)
	mux.HandleFunc("POST /interaction/{id}/consent", s.consent)
	mux.HandleFunc("GET /user_management/users/{id}", s.workosUser)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	return mux
}

// metadata is the authorization server's RFC 8414 / OpenID Connect discovery document.
func (s *Server) metadata() map[string]any {
	return map[string]any{
		"issuer":                                         s.issuer,
		"authorization_endpoint":                         s.issuer + pathAuthorize,
		"token_endpoint":                                 s.issuer + pathToken,
		"registration_endpoint":                          s.issuer + pathRegister,
		"jwks_uri":                                       s.issuer + pathJWKS,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none"},
		"scopes_supported":                               supportedScopes,
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"claims_supported":                               []string{"sub", "email", "email_verified", "name", "given_name", "family_name", "org_id", "sid"},
		"authorization_response_iss_parameter_supported": true,
	}
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.meta)
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.jwks)
}

// public wraps an endpoint that browser clients call with fetch: CORS for any origin (no credentials are involved),
// OPTIONS preflight, and 405 for other methods.
func public(method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodOptions:
			hd.Set("Access-Control-Allow-Methods", method+", OPTIONS")
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				hd.Set("Access-Control-Allow-Headers", req)
			}
			hd.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
		case method:
			h(w, r)
		case http.MethodHead:
			if method != http.MethodGet {
				hd.Set("Allow", method+", OPTIONS")
				writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+method)
				return
			}
			h(w, r)
		default:
			hd.Set("Allow", method+", OPTIONS")
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+method)
		}
	})
}

// writeJSON answers status with a JSON body that must not be cached.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(body)
	w.Write([]byte("\n"))
}

// writeJSONError answers with an OAuth error body {"error": code, "error_description": description}.
func writeJSONError(w http.ResponseWriter, status int, code, description string) {
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, description})
	writeJSON(w, status, b)
}

// checkLoopbackURL accepts an http(s) URL on a loopback host without a path, query or fragment.
func checkLoopbackURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q must be an origin without path, query or user information", s)
	}
	if !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("%q is not on a loopback host: the development authorization server serves this machine only", s)
	}
	return nil
}

// isLoopbackHost reports whether host is localhost or a loopback IP address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// randomToken returns n random bytes, base64url-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// s256 is the PKCE S256 transformation of a code verifier.
func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}
