package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-gateway/gateway/cmd/internal/envname"
	"github.com/mcp-gateway/gateway/metadata"
	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/identity"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// checkTimeout bounds each network request of gateway --check.
const checkTimeout = 10 * time.Second

// checkResult is one line of gateway --check.
type checkResult struct {
	name   string
	ok     bool
	detail string
	fix    string // what to do about a failure
	skip   bool   // not checked, because a check it depends on failed
}

// runCheck loads the configuration as the gateway would, checks it against the authorization server and the upstream,
// prints one line per check (✓ or ✗, with a fix under each ✗) and fails if any check failed.
func runCheck(ctx context.Context, env map[string]string, stdout io.Writer) error {
	results := runChecks(ctx, env, &http.Client{Timeout: checkTimeout}, time.Now)
	failed := 0
	for _, r := range results {
		switch {
		case r.skip:
			fmt.Fprintf(stdout, "- %s: %s\n", r.name, r.detail)
		case r.ok:
			fmt.Fprintf(stdout, "✓ %s: %s\n", r.name, r.detail)
		default:
			failed++
			fmt.Fprintf(stdout, "✗ %s: %s\n  fix: %s\n", r.name, r.detail, r.fix)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(results))
	}
	fmt.Fprintf(stdout, "all %d checks passed\n", len(results))
	return nil
}

// runChecks runs every check in order. Checks that need something an earlier check could not provide are skipped.
func runChecks(ctx context.Context, env map[string]string, client *http.Client, now func() time.Time) []checkResult {
	c := &checker{ctx: ctx, env: env, client: client, now: now}
	c.publicURL()
	c.variables()
	if !c.configuration() {
		c.toolsErr = errors.New("the configuration is invalid")
		c.policy()
		return c.out
	}
	if c.issuer() {
		c.jwks()
		c.registration()
		c.pkce()
	}
	c.staticClient()
	c.claimHeaders()
	c.clientMetadata()
	c.audience()
	c.upstream()
	c.redis()
	c.policy()
	return c.out
}

// checker holds what one run of the checks has found so far.
type checker struct {
	ctx    context.Context
	env    map[string]string
	client *http.Client
	now    func() time.Time

	out     []checkResult
	cfg     *config.Config       // the configuration, once loaded
	authKit bool                 // whether the issuer is WorkOS AuthKit, to word fixes for its dashboard
	doc     *metadata.AuthServer // the authorization server's metadata, when it could be read

	tools    []string // the upstream's tools, listed when a policy is set
	toolsErr error    // why they could not be listed
}

func (c *checker) pass(name, format string, args ...any) {
	c.out = append(c.out, checkResult{name: name, ok: true, detail: fmt.Sprintf(format, args...)})
}

func (c *checker) fail(name, detail, fix string) {
	c.out = append(c.out, checkResult{name: name, detail: detail, fix: fix})
}

func (c *checker) skip(reason string, names ...string) {
	for _, n := range names {
		c.out = append(c.out, checkResult{name: n, skip: true, detail: "not checked: " + reason})
	}
}

// publicURL checks that the public URL is https or on a loopback host.
func (c *checker) publicURL() {
	if detail, fix := checkPublicURL(c.env); fix == "" {
		c.pass("public URL", "%s", detail)
	} else {
		c.fail("public URL", detail, fix)
	}
}

// variables checks that every GATEWAY_* variable set is one the gateway reads: one failure per other one.
func (c *checker) variables() {
	unknown := unknownVariables(c.env)
	if len(unknown) == 0 {
		c.pass("variables", "every GATEWAY_* variable set is one the gateway reads")
	}
	for _, u := range unknown {
		c.fail("variables", fmt.Sprintf("%s is not a variable the gateway reads, so its value is ignored; the closest one it reads is %s", u.Name, u.Suggestion),
			unknownVariableFix(u))
	}
}

// configuration loads the configuration as the gateway does, and reports whether it is valid. When it is not, every
// check that needs it is skipped.
func (c *checker) configuration() bool {
	cfg, err := config.Load(c.env)
	if err != nil {
		c.fail("configuration", "invalid: "+strings.ReplaceAll(err.Error(), "\n", "; "),
			"correct each variable named above (docs/configuration.md describes them), then run --check again")
		c.skip("the configuration is invalid", "issuer reachable", "issuer metadata", "JWKS", "client registration", "PKCE",
			"static client id", "audience", "upstream")
		return false
	}
	c.cfg, c.authKit = cfg, isAuthKit(cfg)
	c.pass("configuration", "loaded; issuer %s, MCP URL %s, upstream %s; %s", cfg.Issuer, cfg.Resource, cfg.Upstream.Redacted(), limitsSummary(cfg))
	return true
}

// issuer fetches the authorization server's metadata and checks it exactly as the gateway does at start. It reports
// whether a document could be read for the checks that follow; when none could, they are skipped.
func (c *checker) issuer() bool {
	doc, err := metadata.Discover(c.ctx, c.client, c.cfg.Issuer)
	var derr *metadata.DiscoveryError
	switch {
	case err == nil:
		c.pass("issuer reachable", "%s answered", doc.URL)
		c.pass("issuer metadata", "issuer %q matches, jwks_uri %s", doc.Issuer, doc.JWKSURI)
		c.doc = doc
	case !errors.As(err, &derr) || firstAnswered(derr) == "":
		fix := "check GATEWAY_ISSUER_URL and that this machine can reach it (DNS, proxy, firewall)"
		if c.authKit {
			fix = "check MCP_USE_OAUTH_WORKOS_SUBDOMAIN against the AuthKit domain in the WorkOS dashboard (Connect → Configuration), and that this machine can reach it"
		}
		c.fail("issuer reachable", err.Error(), fix)
		c.skip("the issuer did not answer", "issuer metadata", "JWKS", "client registration", "PKCE")
	default:
		c.pass("issuer reachable", "%s answered", firstAnswered(derr))
		c.doc = lenientMetadata(c.ctx, c.client, derr)
		detail, fix := metadataFailure(derr, c.doc, c.cfg.Issuer, c.authKit)
		c.fail("issuer metadata", detail, fix)
	}
	return c.doc != nil
}

// jwks checks that the key set loads and holds keys the gateway can verify tokens with.
func (c *checker) jwks() {
	detail, err := checkJWKS(c.ctx, c.client, c.cfg, c.doc.JWKSURI)
	if err == nil {
		c.pass("JWKS", "%s", detail)
		return
	}
	fix := "the issuer's jwks_uri must answer with a JSON Web Key Set holding public signing keys in GATEWAY_SIGNING_ALGS"
	if c.authKit {
		fix = "AuthKit serves its keys at " + strings.TrimSuffix(c.cfg.Issuer, "/") + "/oauth2/jwks; check the issuer, and GATEWAY_SIGNING_ALGS (AuthKit signs with RS256)"
	}
	c.fail("JWKS", err.Error(), fix)
}

// registration checks that MCP clients can register: at the authorization server in Option A, with the gateway (which
// then needs the authorization and token endpoints) in Option B.
func (c *checker) registration() {
	doc := c.doc
	switch {
	case c.cfg.OptionB() && (doc.AuthorizationEndpoint == "" || doc.TokenEndpoint == ""):
		c.fail("client registration", "the metadata lacks authorization_endpoint or token_endpoint, which the gateway needs to sign MCP clients in with the pre-registered client (Option B)",
			"use an authorization server that supports the authorization code grant, and check the issuer")
		return
	case c.cfg.OptionB():
		c.pass("client registration", "not needed at the authorization server: the gateway registers MCP clients itself (Option B) and signs them in at %s, then redeems codes at %s",
			doc.AuthorizationEndpoint, doc.TokenEndpoint)
		return
	}
	var ways []string
	if doc.RegistrationEndpoint != "" {
		ways = append(ways, "Dynamic Client Registration ("+doc.RegistrationEndpoint+")")
	}
	if doc.ClientIDMetadataDocumentSupported {
		ways = append(ways, "Client ID Metadata Documents")
	}
	if len(ways) > 0 {
		c.pass("client registration", "%s", strings.Join(ways, " and "))
		return
	}
	fix := "enable Dynamic Client Registration (RFC 7591) or Client ID Metadata Documents on the authorization server, " +
		"or pre-register one client there and set MCP_USE_OAUTH_WORKOS_CLIENT_ID (Option B)"
	if c.authKit {
		fix = "in the WorkOS dashboard, open Connect → Configuration and turn on Dynamic Client Registration (and/or Client ID Metadata Document); " +
			"or, if you cannot, pre-register one client and set MCP_USE_OAUTH_WORKOS_CLIENT_ID (Option B)"
	}
	c.fail("client registration", "the metadata has neither registration_endpoint (Dynamic Client Registration) nor client_id_metadata_document_supported (Client ID Metadata Documents): MCP clients cannot register, and browser clients report a CORS error", fix)
}

// pkce checks that the authorization server advertises PKCE with S256, without which MCP clients refuse it.
func (c *checker) pkce() {
	if slices.Contains(c.doc.CodeChallengeMethodsSupported, "S256") {
		c.pass("PKCE", "S256 advertised")
		return
	}
	c.fail("PKCE", fmt.Sprintf("code_challenge_methods_supported is %q, without S256: MCP clients refuse such an authorization server", c.doc.CodeChallengeMethodsSupported),
		"enable PKCE with S256 on the authorization server and advertise it in its metadata (AuthKit does by default: is the issuer really AuthKit?)")
}

// staticClient says whether a pre-registered client is configured (Option B) and, if so, what to register for it and
// how the gateway deals with scopes and client addresses. It always passes.
func (c *checker) staticClient() {
	cfg := c.cfg
	name, id := staticClientID(cfg)
	if id == "" {
		c.pass("static client id", "none set; clients register themselves")
		return
	}
	kind := "a public client (no MCP_USE_OAUTH_WORKOS_CLIENT_SECRET)"
	if cfg.ClientSecret != "" {
		kind = "a confidential client (" + cfg.ClientAuthMethod + ")"
	}
	note := ""
	if cfg.SessionSecret == "" && cfg.IdentitySecret == "" {
		note = "; set GATEWAY_SESSION_SECRET (or GATEWAY_IDENTITY_SECRET), or registrations end with the process"
	}
	var upstreamScopes []string
	if c.doc != nil {
		upstreamScopes = c.doc.ScopesSupported
	}
	addrs := "per-address limits count the TCP peer (set GATEWAY_TRUSTED_PROXIES behind a reverse proxy)"
	if len(cfg.TrustedProxyList) > 0 {
		addrs = fmt.Sprintf("per-address limits count the X-Forwarded-For address from %v (GATEWAY_TRUSTED_PROXIES)", cfg.TrustedProxyList)
	}
	c.pass("static client id", "%s is set (%s, %s): Option B, the gateway is the authorization server MCP clients see; register %s as the client's redirect URI at the authorization server; resource pinned to %s; %s; %s%s",
		name, id, kind, cfg.CallbackURL(), cfg.Resource, facadeScopes(cfg, upstreamScopes), addrs, note)
}

// facadeScopes says, in Option B, which scopes clients may ask for, which are advertised, and which are sent upstream
// for a client that sends none, given the authorization server's scopes_supported.
func facadeScopes(cfg *config.Config, upstream []string) string {
	advertised, _, fallback := cfg.AuthServer().ScopesFor(upstream)
	scopes := "scopes: any the client asks for (GATEWAY_FACADE_SCOPES unset)"
	if len(cfg.FacadeScopeList) > 0 {
		scopes = "scopes: only " + strings.Join(cfg.FacadeScopeList, " ") + " (GATEWAY_FACADE_SCOPES)"
	}
	switch {
	case len(advertised) == 0:
		scopes += ", none advertised"
	case len(cfg.FacadeScopeList) == 0:
		scopes += ", advertised: the authorization server's " + strings.Join(advertised, " ")
	}
	switch {
	case len(cfg.FacadeDefaultScopeList) > 0:
		scopes += "; sent when a client sends none: " + strings.Join(fallback, " ") + " (GATEWAY_FACADE_DEFAULT_SCOPE)"
	case len(fallback) > 0:
		scopes += "; sent when a client sends none: " + strings.Join(fallback, " ") + " (what the protected resource metadata advertises)"
	default:
		scopes += "; a client that sends no scope sends none upstream (set GATEWAY_FACADE_DEFAULT_SCOPE if the authorization server needs one)"
	}
	return scopes
}

// audience checks that tokens issued for the resource identifier, which MCP clients ask for, are accepted.
func (c *checker) audience() {
	cfg := c.cfg
	if !slices.Contains(cfg.AudienceList, cfg.Resource) {
		c.fail("audience", fmt.Sprintf("GATEWAY_AUDIENCES is %q, without the resource identifier %s: tokens that MCP clients request for this resource (RFC 8707) are refused", cfg.AudienceList, cfg.Resource),
			fmt.Sprintf("add %s to GATEWAY_AUDIENCES, or unset it (it defaults to the resource identifier)", cfg.Resource))
		return
	}
	note := ""
	if c.authKit {
		note = " (in WorkOS, add it as a Resource Indicator so that access tokens carry it)"
	}
	c.pass("audience", "tokens issued for %s are accepted%s", cfg.Resource, note)
}

// upstream checks that the upstream answers MCP initialize sent as the gateway would forward it.
// When a policy is set, it also lists the upstream's tools for the policy check.
func (c *checker) upstream() {
	pr, err := probe(c.ctx, c.client, c.cfg, c.now, c.cfg.PolicyFile != "")
	c.tools, c.toolsErr = pr.tools, pr.toolsErr
	if err != nil {
		c.toolsErr = errors.New("the upstream check failed")
		c.fail("upstream", err.Error(), upstreamFix(err, c.cfg))
		return
	}
	c.pass("upstream", "%s answers MCP initialize (%s)", c.cfg.Upstream.Redacted(), pr.info)
}

// checkPublicURL checks, from the environment alone, that the public URL is https or on a loopback host. It returns a
// detail, and a fix when the check fails.
func checkPublicURL(env map[string]string) (detail, fix string) {
	name, raw := "GATEWAY_PUBLIC_URL", env["GATEWAY_PUBLIC_URL"]
	if raw == "" && env["MCP_URL"] != "" {
		name, raw = "MCP_URL", env["MCP_URL"]
	}
	note := ""
	if raw == "" {
		def, err := config.DefaultPublicURL(env)
		if err != nil {
			return fmt.Sprintf("%s %v", name, err),
				"set " + name + " to the origin clients connect to (e.g. http://localhost:3000 on this machine), or listen on a fixed port"
		}
		raw, note = def, " (GATEWAY_PUBLIC_URL is not set: http://localhost and the listen port)"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		return fmt.Sprintf("%s is not an absolute URL (%q)", name, raw), "set " + name + " to the origin clients connect to, e.g. https://mcp.example.com"
	case u.Scheme == "https":
		return raw + " uses https", ""
	case u.Scheme == "http" && config.IsLoopbackHost(u.Hostname()):
		return raw + note + " is loopback (plain http is fine on this machine only)", ""
	default:
		return fmt.Sprintf("%s is %s: neither https nor loopback, so tokens would cross the network in the clear", name, raw),
			"serve the gateway behind TLS and set " + name + " to its https:// origin, exactly the URL clients connect to"
	}
}

// limitsSummary says how the gateway bounds each phase of a request, whether it forwards upgrades and whether it
// signs the identity it forwards.
func limitsSummary(cfg *config.Config) string {
	conns := "no connection cap"
	if n := connectionCap(cfg.MaxConnections); n > 0 {
		conns = fmt.Sprintf("at most %d connections", n)
	}
	upgrades := "upgrades dropped"
	if cfg.AllowUpgrade {
		upgrades = "upgrades forwarded as tunnels the gateway does not inspect (GATEWAY_ALLOW_UPGRADE)"
	}
	signed := "identity headers signed"
	if cfg.IdentitySecret == "" {
		signed = "identity headers unsigned (no GATEWAY_IDENTITY_SECRET: the upstream must be reachable from the gateway alone)"
	}
	return fmt.Sprintf("headers within %s, each body read within %s, each write within %s, upstream head within %s, %s, %s, %s",
		cfg.ReadHeaderTimeout, cfg.ReadTimeout, cfg.WriteTimeout, cfg.UpstreamTimeout, conns, upgrades, signed)
}

// unknownVariableFix says what to do about a GATEWAY_* variable the gateway does not read.
func unknownVariableFix(u envname.Unknown) string {
	// Kubernetes (service links) and Docker (links) set <SERVICE>_PORT, <SERVICE>_PORT_3000_TCP, <SERVICE>_SERVICE_HOST…
	// for a service named gateway.
	if regexp.MustCompile(`^GATEWAY_(SERVICE_(HOST|PORT)(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)?)$`).MatchString(u.Name) {
		return "it looks set by a Kubernetes Service or a Docker link named gateway: set enableServiceLinks: false on the pod " +
			"(or rename the service), or remove it"
	}
	return fmt.Sprintf("rename %s to %s if that is what you meant, otherwise remove it", u.Name, u.Suggestion)
}

// isAuthKit reports whether the issuer is WorkOS AuthKit, to word fixes for its dashboard.
func isAuthKit(cfg *config.Config) bool {
	if cfg.IssuerURL == "" {
		return true // from MCP_USE_OAUTH_WORKOS_SUBDOMAIN
	}
	u, err := url.Parse(cfg.Issuer)
	return err == nil && strings.HasSuffix(strings.ToLower(u.Hostname()), ".authkit.app")
}

// staticClientID returns the variable and value of a configured static client id, if any.
func staticClientID(cfg *config.Config) (string, string) {
	if cfg.StaticClientID == "" {
		return "", ""
	}
	return cfg.Variable("MCP_USE_OAUTH_WORKOS_CLIENT_ID"), cfg.StaticClientID
}

// firstAnswered returns the first URL that answered over HTTP, or "".
func firstAnswered(d *metadata.DiscoveryError) string {
	for _, a := range d.Attempts {
		var ne net.Error
		if !errors.As(a.Err, &ne) && !errors.Is(a.Err, context.DeadlineExceeded) && !errors.Is(a.Err, context.Canceled) {
			return a.URL
		}
	}
	return ""
}

// lenientMetadata fetches the first discovery URL that answers with a JSON object, whatever its issuer, so that the
// remaining checks can still say what else is wrong with it.
func lenientMetadata(ctx context.Context, client *http.Client, d *metadata.DiscoveryError) *metadata.AuthServer {
	for _, a := range d.Attempts {
		var se *metadata.StatusError
		if errors.As(a.Err, &se) {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
		if err != nil {
			continue
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		var as metadata.AuthServer
		if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &as) == nil {
			as.URL = a.URL
			return &as
		}
	}
	return nil
}

// metadataFailure words a discovery that got answers but no valid document.
func metadataFailure(d *metadata.DiscoveryError, doc *metadata.AuthServer, issuer string, authKit bool) (detail, fix string) {
	variable := "GATEWAY_ISSUER_URL"
	if authKit {
		variable = "MCP_USE_OAUTH_WORKOS_SUBDOMAIN (or GATEWAY_ISSUER_URL)"
	}
	switch {
	case errors.Is(d, metadata.ErrIssuerMismatch) && doc != nil:
		return fmt.Sprintf("%s names the issuer %q, but the gateway is configured for %q; they must be equal byte for byte (RFC 8414), and tokens' iss must match too", doc.URL, doc.Issuer, issuer),
			fmt.Sprintf("if %q is your authorization server, set %s to exactly that", doc.Issuer, variable)
	case errors.Is(d, metadata.ErrJWKSURI):
		return d.Error(), "the issuer's jwks_uri must be an absolute https URL (http only on loopback)"
	default:
		return d.Error(), fmt.Sprintf("set %s to the issuer itself: <issuer>/.well-known/oauth-authorization-server or /.well-known/openid-configuration must serve its metadata", variable)
	}
}

// checkJWKS loads the key set with the gateway's own key set code, then describes it.
func checkJWKS(ctx context.Context, client *http.Client, cfg *config.Config, jwksURI string) (string, error) {
	ks := token.NewKeySet(token.KeySetOptions{URL: jwksURI, Client: client, Algs: cfg.AlgList})
	if err := ks.Refresh(ctx); err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURI, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch key set %s: %w", jwksURI, err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return "", fmt.Errorf("fetch key set %s: %w", jwksURI, err)
	}
	var algs []string
	usable := 0
	for _, k := range set.Keys {
		if !k.IsPublic() || (k.Use != "" && k.Use != "sig") || !k.Valid() {
			continue
		}
		if k.Algorithm != "" && !slices.Contains(cfg.AlgList, k.Algorithm) {
			continue
		}
		usable++
		if a := cmp.Or(k.Algorithm, "alg unset"); !slices.Contains(algs, a) {
			algs = append(algs, a)
		}
	}
	if usable == 0 {
		return "", fmt.Errorf("key set %s has no public signing key for the algorithms in GATEWAY_SIGNING_ALGS (%s)", jwksURI, strings.Join(cfg.AlgList, ","))
	}
	return fmt.Sprintf("%d usable signing key(s) (%s) at %s", usable, strings.Join(algs, ", "), jwksURI), nil
}

// upstreamError is a failed MCP initialize against the upstream.
type upstreamError struct {
	kind   string // "unreachable", "status" or "protocol"
	status int
	err    error
}

func (e *upstreamError) Error() string { return e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// probeProtocolVersion is the protocol version --check asks the upstream for in MCP initialize.
const probeProtocolVersion = "2025-06-18"

// probeUpstream connects to the upstream with the go-sdk's MCP client, as the gateway would forward an MCP client
// (identity headers for the user "gateway-check", signed when GATEWAY_IDENTITY_SECRET is set), then closes the session
// it may have opened. It returns the server's name, version and protocol version.
func probeUpstream(ctx context.Context, client *http.Client, cfg *config.Config, now func() time.Time) (string, error) {
	pr, err := probe(ctx, client, cfg, now, false)
	return pr.info, err
}

// upstreamProbe is what probe learnt of the upstream.
type upstreamProbe struct {
	info     string   // the server's name, version and protocol version
	tools    []string // its tools' names, when asked for and listed
	toolsErr error    // why they could not be listed
}

// probe is probeUpstream, which also lists the upstream's tools (every page) when listTools is set. A failure to list
// them is not the probe's: it is kept in toolsErr.
func probe(ctx context.Context, client *http.Client, cfg *config.Config, now func() time.Time, listTools bool) (upstreamProbe, error) {
	var pr upstreamProbe
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	rt := &identifyingTransport{base: client.Transport, secret: []byte(cfg.IdentitySecret), now: now, mapped: cfg.ClaimHeaderMap.Names()}
	if rt.base == nil {
		rt.base = http.DefaultTransport
	}
	hc := *client
	hc.Transport = rt
	mc := mcp.NewClient(&mcp.Implementation{Name: "gateway-check", Version: "1"},
		&mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
	session, err := mc.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: cfg.Upstream.String(), HTTPClient: &hc, MaxRetries: -1, DisableStandaloneSSE: true,
	}, &mcp.ClientSessionOptions{ProtocolVersion: probeProtocolVersion})
	if err != nil {
		return pr, rt.initializeFailure(err, cfg.Upstream.Redacted())
	}
	defer session.Close()
	res := session.InitializeResult()
	name, version := "unnamed server", ""
	if res.ServerInfo != nil {
		name, version = cmp.Or(res.ServerInfo.Name, name), res.ServerInfo.Version
	}
	pr.info = fmt.Sprintf("%s %s, protocol %s", name, version, res.ProtocolVersion)
	if listTools {
		for tool, err := range session.Tools(ctx, nil) {
			if err != nil {
				pr.tools, pr.toolsErr = nil, err
				break
			}
			pr.tools = append(pr.tools, tool.Name)
		}
	}
	return pr, nil
}

// identifyingTransport plays the gateway's side of the identity contract for --check: it sends every request with
// the identity of the user "gateway-check", signed for that request when secret is set. It keeps how the first request,
// MCP initialize, was answered, to say why a failed initialize failed.
type identifyingTransport struct {
	base   http.RoundTripper
	secret []byte
	mapped []string // GATEWAY_CLAIM_HEADERS' names, listed by the signature as the gateway's is
	now    func() time.Time

	mu     sync.Mutex
	sent   bool   // whether the first request was sent
	status string // its response's status, "" when there was none
	code   int    // its response's status code
	err    error  // why it got no response
}

func (t *identifyingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	id := identity.Identity{UserID: "gateway-check"}
	id.Set(r.Header)
	if len(t.secret) > 0 {
		identity.Sign(r, t.secret, t.now(), t.mapped...)
	}
	resp, err := t.base.RoundTrip(r)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.sent {
		t.sent, t.err = true, err
		if resp != nil {
			t.status, t.code = resp.Status, resp.StatusCode
		}
	}
	return resp, err
}

// initializeFailure words err, the go-sdk client's failure to initialize with upstream, as an *upstreamError.
func (t *identifyingTransport) initializeFailure(err error, upstream string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var rpcErr *jsonrpc.Error
	switch {
	case !t.sent || t.err != nil:
		return &upstreamError{kind: "unreachable", err: fmt.Errorf("%s did not answer: %w", upstream, cmp.Or(t.err, err))}
	case t.code != http.StatusOK:
		return &upstreamError{kind: "status", status: t.code, err: fmt.Errorf("%s answered %s to MCP initialize", upstream, t.status)}
	case errors.As(err, &rpcErr):
		return &upstreamError{kind: "protocol", err: fmt.Errorf("%s refused MCP initialize: %s", upstream, rpcErr.Message)}
	}
	return &upstreamError{kind: "protocol", err: fmt.Errorf("%s answered, but not with an MCP initialize result: %w", upstream, err)}
}

// upstreamFix says what to do about a failed upstream check.
func upstreamFix(err error, cfg *config.Config) string {
	var ue *upstreamError
	errors.As(err, &ue)
	switch {
	case ue == nil || ue.kind == "unreachable":
		return "start the MCP server (the tool service: go run ./cmd/tools), or set GATEWAY_UPSTREAM_URL to its streamable HTTP endpoint"
	case ue.status == http.StatusUnauthorized || ue.status == http.StatusForbidden:
		return "the upstream refused the gateway's identity: give it the same GATEWAY_IDENTITY_SECRET as the gateway (or none on both); " +
			"with a secret, it must verify signature version 2 (over method, path and Host, see the README), and nothing between them may change the Host or path"
	case ue.kind == "status":
		return fmt.Sprintf("GATEWAY_UPSTREAM_URL must be the MCP endpoint itself (streamable HTTP), e.g. http://127.0.0.1:3001/mcp; %s is not", cfg.Upstream.Redacted())
	default:
		return "GATEWAY_UPSTREAM_URL must point at an MCP server's streamable HTTP endpoint"
	}
}
