//go:build !nodev

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// devEnv is the environment of a development-mode gateway on free loopback ports.
func devEnv(extra map[string]string) map[string]string {
	m := map[string]string{
		"GATEWAY_LISTEN_ADDR":     "127.0.0.1:0",
		"GATEWAY_DEV_ISSUER_ADDR": "127.0.0.1:0",
		"GATEWAY_DEV_TOOLS_ADDR":  "127.0.0.1:0",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDev runs the gateway with args and env until the test ends, and returns its MCP URL once it is ready, with
// its banner and logs.
func startDev(t *testing.T, args []string, env map[string]string) (mcpURL string, banner *syncBuffer, logs *logBuffer) {
	t.Helper()
	banner, logs = &syncBuffer{}, &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, env, banner, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	mcpURL = waitFor(t, logs, "development mode", "mcp_url")
	u, _ := url.Parse(mcpURL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(u.Scheme + "://" + u.Host + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return mcpURL, banner, logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("development mode not ready after 10s; logs:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// autoLogin is an authorization code fetcher for GATEWAY_DEV_AUTOLOGIN: the authorization URL redirects straight back
// to the client with a code.
func autoLogin(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return authorizationResult(resp)
}

// authorizationResult reads the authorization response from a redirect to the client.
func authorizationResult(resp *http.Response) (*auth.AuthorizationResult, error) {
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("authorization answered %d without a redirect", resp.StatusCode)
	}
	q := loc.Query()
	if q.Get("error") != "" {
		return nil, fmt.Errorf("authorization error %s: %s", q.Get("error"), q.Get("error_description"))
	}
	return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
}

// connectWithOAuth connects a go-sdk client to mcpURL, letting it discover the authorization server, register,
// and authorize with PKCE by itself; fetch plays the browser. The client asks for its default protocol version.
func connectWithOAuth(t *testing.T, ctx context.Context, mcpURL string, fetch auth.AuthorizationCodeFetcher) *mcp.ClientSession {
	t.Helper()
	return connectWithOAuthAt(t, ctx, mcpURL, fetch, "")
}

// connectWithOAuthAt is connectWithOAuth with a client that asks for protocolVersion ("" for its default).
func connectWithOAuthAt(t *testing.T, ctx context.Context, mcpURL string, fetch auth.AuthorizationCodeFetcher, protocolVersion string) *mcp.ClientSession {
	t.Helper()
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs:            []string{"http://localhost:8976/callback"},
			TokenEndpointAuthMethod: "none",
			GrantTypes:              []string{"authorization_code", "refresh_token"},
			ClientName:              "go-sdk test client",
		}},
		AuthorizationCodeFetcher: fetch,
		RequestRefreshToken:      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "go-client", Version: "1"}, nil)
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: mcpURL, OAuthHandler: h}, &mcp.ClientSessionOptions{ProtocolVersion: protocolVersion})
	if err != nil {
		t.Fatalf("connect with OAuth: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// callAllTools calls the three tools and checks that each shows the signed-in demo user.
func callAllTools(t *testing.T, ctx context.Context, s *mcp.ClientSession, wantInfo, wantPerms, wantEmail string) {
	t.Helper()
	for _, tc := range []struct {
		tool  string
		check func(map[string]any) error
	}{
		{"get-user-info", func(m map[string]any) error {
			if got := fmt.Sprint(m); got != wantInfo {
				return fmt.Errorf("got %s, want %s", got, wantInfo)
			}
			return nil
		}},
		{"get-user-permissions", func(m map[string]any) error {
			if got := fmt.Sprint(m); got != wantPerms {
				return fmt.Errorf("got %s, want %s", got, wantPerms)
			}
			return nil
		}},
		{"get-workos-user", func(m map[string]any) error {
			if m["object"] != "user" || m["email"] != wantEmail {
				return fmt.Errorf("got %v, want the WorkOS user object of %s", m, wantEmail)
			}
			return nil
		}},
	} {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tc.tool})
		if err != nil {
			t.Fatalf("%s: %v", tc.tool, err)
		}
		if err := tc.check(structured(t, res)); err != nil {
			t.Errorf("%s: %v", tc.tool, err)
		}
	}
}

// TestDevGoClient is the Go client end to end: the go-sdk's own client-side OAuth (discovery, Dynamic Client
// Registration, PKCE, RFC 8707 resource, RFC 9207 iss) against `gateway --dev` with autologin, then every tool.
func TestDevGoClient(t *testing.T) {
	mcpURL, banner, logs := startDev(t, []string{"--dev"}, devEnv(map[string]string{"GATEWAY_DEV_AUTOLOGIN": "admin@example.com"}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := connectWithOAuth(t, ctx, mcpURL, autoLogin)
	callAllTools(t, ctx, s,
		"map[email:admin@example.com name:Ada Admin organizationId:org_dev_acme userId:user_dev_admin]",
		"map[permissions:[users:read users:write billing:manage] roles:[admin] scopes:[offline_access]]", // the go-sdk asks for offline_access only
		"admin@example.com")

	// The go-sdk 1.8 client's default, 2026-07-28, is served without a session: the tools above went that way.
	if v, id := s.InitializeResult().ProtocolVersion, s.ID(); v != "2026-07-28" || id != "" {
		t.Errorf("default client: protocol %q, session %q; want 2026-07-28 without a session", v, id)
	}
	// A client that starts with a 2025-06-18 initialize is served too.
	legacy := connectWithOAuthAt(t, ctx, mcpURL, autoLogin, "2025-06-18")
	if v := legacy.InitializeResult().ProtocolVersion; v != "2025-06-18" {
		t.Errorf("2025-06-18 client: negotiated %q", v)
	}
	if res, err := legacy.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-info"}); err != nil || structured(t, res)["userId"] != "user_dev_admin" {
		t.Errorf("2025-06-18 client: get-user-info: %v", err)
	}

	for _, want := range []string{mcpURL, "claude mcp add --transport http gateway-dev " + mcpURL, "npx @modelcontextprotocol/inspector",
		"user_dev_admin", "user_dev_member", "Signed in automatically as user_dev_admin", "the example policy"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	if strings.Contains(logs.String(), "sk_test_dev_") {
		t.Error("the WorkOS stand-in key appears in the logs")
	}
}

// TestDevSignInThroughPages is the flow a person has: no autologin, so the go-sdk client's authorization goes
// through the sign-in and consent pages, driven as a browser would drive them.
func TestDevSignInThroughPages(t *testing.T) {
	mcpURL, _, _ := startDev(t, []string{"--dev"}, devEnv(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := connectWithOAuth(t, ctx, mcpURL, signInAs("guest@example.com"))
	for tool, want := range map[string]string{
		"get-user-info":        "map[email:guest@example.com name:Gus Guest userId:user_dev_guest]",
		"get-user-permissions": "map[permissions:[] roles:[] scopes:[offline_access]]",
	} {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool})
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if got := fmt.Sprint(structured(t, res)); got != want {
			t.Errorf("%s: got %s, want %s", tool, got, want)
		}
	}
	// The example policy hides get-workos-user from the guest (no users:read): not listed, and unknown when called.
	list, err := s.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	if got := strings.Join(names, ","); got != "get-user-info,get-user-permissions" {
		t.Errorf("the guest's tools: got %s", got)
	}
	if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "get-workos-user"}); err == nil || !strings.Contains(err.Error(), "Unknown tool: get-workos-user") {
		t.Errorf("get-workos-user as the guest: got %v, want the unknown-tool error", err)
	}
}

// TestDevEnvironmentVariable starts development mode with GATEWAY_DEV=true instead of the flag, and checks what a
// browser client needs: MCP Inspector's origin allowed, the issuer's metadata readable cross-origin. A misspelt
// variable beside it is named in a warning, with the one it is closest to.
func TestDevEnvironmentVariable(t *testing.T) {
	mcpURL, banner, logs := startDev(t, nil, devEnv(map[string]string{"GATEWAY_DEV": "true", "GATEWAY_DEV_AUTOLOGN": "admin@example.com"}))
	if !strings.Contains(banner.String(), "choose one on the sign-in page") {
		t.Errorf("banner without autologin should point to the sign-in page:\n%s", banner)
	}
	if got := waitFor(t, logs, "unknown variable: the gateway does not read it, so its value is ignored", "closest_known"); got != "GATEWAY_DEV_AUTOLOGIN" {
		t.Errorf("the warning about GATEWAY_DEV_AUTOLOGN names %q, want GATEWAY_DEV_AUTOLOGIN", got)
	}
	if strings.Contains(logs.String(), "GATEWAY_IDENTITY_SECRET is not set") {
		t.Error("development mode warns of a missing identity secret, but sets a random one")
	}
	req, _ := http.NewRequest(http.MethodPost, mcpURL, strings.NewReader(`{}`))
	req.Header.Set("Origin", "http://localhost:6274")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Errorf("MCP Inspector's origin: got %d %v, want 401 readable by the browser", resp.StatusCode, resp.Header)
	}
}

// TestDevVariablesAreKnown checks that proxy.UnknownVariables, which knows the gateway's variables outside
// config.Config by name, knows every variable development mode reads.
func TestDevVariablesAreKnown(t *testing.T) {
	t.Parallel()
	environ := map[string]string{"GATEWAY_DEV": "true"}
	for f := range reflect.TypeFor[devConfig]().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" {
			environ[name] = "x"
		}
	}
	if got := unknownVariables(environ); len(got) != 0 {
		t.Errorf("proxy.UnknownVariables reports variables development mode reads: %+v", got)
	}
}

func TestDevRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, key, value string
	}{
		{"all interfaces", "GATEWAY_LISTEN_ADDR", ":0"},
		{"unspecified address", "GATEWAY_LISTEN_ADDR", "0.0.0.0:0"},
		{"a host name", "GATEWAY_LISTEN_ADDR", "example.com:3000"},
		{"HOST", "HOST", "0.0.0.0"},
		{"public URL", "GATEWAY_PUBLIC_URL", "https://mcp.example.com"},
		{"public URL alias", "MCP_URL", "http://192.0.2.1:3000"},
		{"issuer", "GATEWAY_DEV_ISSUER_ADDR", "0.0.0.0:0"},
		{"tool service", "GATEWAY_DEV_TOOLS_ADDR", "[::]:0"},
		{"metrics", "GATEWAY_METRICS_ADDR", ":0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := devEnv(map[string]string{tc.key: tc.value})
			if tc.key == "HOST" {
				delete(env, "GATEWAY_LISTEN_ADDR")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := run(ctx, []string{"--dev"}, env, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("got %v, want an error naming %s", err, tc.key)
			}
		})
	}
}

func TestDevFlagErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"--dev with --check", []string{"--dev", "--check"}, nil},
		{"GATEWAY_DEV with --healthcheck", []string{"--healthcheck"}, map[string]string{"GATEWAY_DEV": "true"}},
		{"GATEWAY_DEV not a boolean", nil, map[string]string{"GATEWAY_DEV": "yes please"}},
		{"unknown autologin user", []string{"--dev"}, devEnv(map[string]string{"GATEWAY_DEV_AUTOLOGIN": "nobody@example.com"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := run(ctx, tc.args, tc.env, io.Discard, io.Discard); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v, want an error at start", err)
			}
		})
	}
}

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	csrfToken  = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
)

// signInAs is an authorization code fetcher that does what a person does in a browser: open the authorization URL,
// pick the demo user on the sign-in page, allow on the consent page. Cookies are kept, redirects to the
// authorization server are followed, and the final redirect to the client carries the code.
func signInAs(user string) auth.AuthorizationCodeFetcher {
	return func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
		jar, _ := cookiejar.New(nil)
		start, err := url.Parse(args.URL)
		if err != nil {
			return nil, err
		}
		issuer := start.Scheme + "://" + start.Host
		c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Scheme+"://"+req.URL.Host != issuer {
				return http.ErrUseLastResponse // the redirect to the client
			}
			return nil
		}}
		page := func(resp *http.Response) (action, csrf, body string, err error) {
			b := new(strings.Builder)
			_, err = bufio.NewReader(resp.Body).WriteTo(b)
			resp.Body.Close()
			body = b.String()
			a, tok := formAction.FindStringSubmatch(body), csrfToken.FindStringSubmatch(body)
			if err != nil || a == nil || tok == nil {
				return "", "", body, fmt.Errorf("no form on the page (%d): %v", resp.StatusCode, err)
			}
			return issuer + a[1], tok[1], body, nil
		}
		resp, err := c.Get(args.URL)
		if err != nil {
			return nil, err
		}
		action, csrf, body, err := page(resp)
		if err != nil {
			return nil, err
		}
		var userID string
		for _, u := range regexp.MustCompile(`name="user" value="([^"]+)">[^<]*<small>([^ ]+) `).FindAllStringSubmatch(body, -1) {
			if u[2] == user {
				userID = u[1]
			}
		}
		if userID == "" {
			return nil, fmt.Errorf("no button for %s on the sign-in page", user)
		}
		resp, err = c.PostForm(action, url.Values{"csrf_token": {csrf}, "user": {userID}})
		if err != nil {
			return nil, err
		}
		if action, csrf, _, err = page(resp); err != nil {
			return nil, err
		}
		resp, err = c.PostForm(action, url.Values{"csrf_token": {csrf}, "decision": {"allow"}})
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		return authorizationResult(resp)
	}
}

// TestDevPolicyPerUser: with the example policy, the three demo users see and call what the issue promises, through
// the sign-in pages of one development gateway: the admin and the member all three tools (the member through
// users:read), the guest two; the guest's denied call is one audit line on the gateway's stderr, naming the last rule
// that covers the tool.
func TestDevPolicyPerUser(t *testing.T) {
	mcpURL, _, logs := startDev(t, []string{"--dev"}, devEnv(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct{ email, tools string }{
		{"admin@example.com", "get-user-info,get-user-permissions,get-workos-user"},
		{"member@example.com", "get-user-info,get-user-permissions,get-workos-user"},
		{"guest@example.com", "get-user-info,get-user-permissions"},
	} {
		s := connectWithOAuth(t, ctx, mcpURL, signInAs(tc.email))
		list, err := s.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range list.Tools {
			names = append(names, tool.Name)
		}
		if got := strings.Join(names, ","); got != tc.tools {
			t.Errorf("%s: tools %s, want %s", tc.email, got, tc.tools)
		}
		_, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "get-workos-user"})
		if denied := tc.email == "guest@example.com"; denied != (err != nil) {
			t.Errorf("%s: get-workos-user: %v", tc.email, err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) { // the audit log writes every 20 ms
		if n := strings.Count(logs.String(), `"gen_ai.tool.name":"get-workos-user","enduser.id":"user_dev_guest","client_id"`); n == 1 &&
			strings.Contains(logs.String(), `"decision":"deny","security_rule.name":"admins","rpc.response.status_code":-32602`) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d audit lines of the guest's denied call, want 1:\n%s", n, logs.String())
		}
	}
}
