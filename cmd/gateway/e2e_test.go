package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-gateway/gateway/tools"
)

const (
	publicURL = "http://localhost:3000"
	resource  = publicURL + "/mcp"
	secret    = "e2e-identity-secret-of-32-bytes!!"
)

// issuer is a minimal authorization server: RFC 8414 metadata and a JWKS with one real RSA key.
type issuer struct {
	*httptest.Server
	key *rsa.PrivateKey
	// oauth, when set before use, answers /authorize and /token (404 otherwise).
	oauth http.Handler
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: k}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.URL, "jwks_uri": is.URL + "/jwks", "authorization_endpoint": is.URL + "/authorize",
			"token_endpoint": is.URL + "/token", "code_challenge_methods_supported": []string{"S256"},
		})
	})
	oauth := func(w http.ResponseWriter, r *http.Request) {
		if is.oauth == nil {
			http.NotFound(w, r)
			return
		}
		is.oauth.ServeHTTP(w, r)
	}
	mux.HandleFunc("/authorize", oauth)
	mux.HandleFunc("/token", oauth)
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Close)
	return is
}

// token mints an AuthKit-shaped access token for sub.
func (is *issuer) token(t *testing.T, sub string, extra map[string]any) string {
	t.Helper()
	claims := map[string]any{
		"iss": is.URL, "sub": sub, "aud": resource, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		"client_id": "client_e2e", "org_id": "org_" + sub, "sid": "session_" + sub, "scope": "openid email", "jti": sub,
	}
	for k, v := range extra {
		claims[k] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// logBuffer collects the gateway's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startGateway runs the gateway binary's run function with env on a free loopback port and returns its base URL once
// it is ready.
func startGateway(t *testing.T, env map[string]string) (string, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	m := map[string]string{"GATEWAY_LISTEN_ADDR": "127.0.0.1:0", "GATEWAY_METRICS_ADDR": "127.0.0.1:0", "GATEWAY_PUBLIC_URL": publicURL}
	for k, v := range env {
		m[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, m, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	addr := waitFor(t, logs, "gateway listening", "addr")
	hc := map[string]string{"GATEWAY_LISTEN_ADDR": addr}
	for k, v := range m {
		if k != "GATEWAY_LISTEN_ADDR" {
			hc[k] = v
		}
	}
	if err := run(context.Background(), []string{"--healthcheck"}, hc, io.Discard, io.Discard); err != nil {
		t.Errorf("--healthcheck against a running gateway: %v", err)
	}
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base, logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready after 10s; logs:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor returns field of the first JSON log line whose msg is msg.
func waitFor(t *testing.T, logs *logBuffer, msg, field string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
				if v, ok := line[field].(string); ok {
					return v
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q log line with %s; logs:\n%s", msg, field, logs)
	return ""
}

// bearer adds a token to every request.
type bearer struct {
	token string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func connect(t *testing.T, ctx context.Context, endpoint, token string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, opts)
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: bearer{token}}}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func structured(t *testing.T, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	if res.IsError {
		t.Fatalf("tool error: %+v", res.Content)
	}
	b, _ := json.Marshal(res.StructuredContent)
	var m map[string]any
	json.Unmarshal(b, &m)
	if len(res.Content) != 1 {
		t.Fatalf("content: got %d items, want 1 text item", len(res.Content))
	}
	var text map[string]any
	if err := json.Unmarshal([]byte(res.Content[0].(*mcp.TextContent).Text), &text); err != nil {
		t.Fatalf("text content is not JSON: %v", err)
	}
	if fmt.Sprint(text) != fmt.Sprint(m) {
		t.Errorf("text content %v differs from structured content %v", text, m)
	}
	return m
}

// TestEndToEnd runs an httptest issuer, the real tool service and the real gateway (its run function), and calls
// every tool through the gateway with a go-sdk client as two different users.
func TestEndToEnd(t *testing.T) {
	is := newIssuer(t)
	workos := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sk_test_e2e" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		id := strings.TrimPrefix(r.URL.Path, "/user_management/users/")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"object": "user", "id": id, "email": id + "@example.com", "first_name": "Test"})
	}))
	t.Cleanup(workos.Close)
	// With sessions, so that the gateway's binding of session ids to users is exercised too.
	up := httptest.NewServer(tools.Handler(tools.Options{WorkOSBaseURL: workos.URL, WorkOSAPIKey: "sk_test_e2e", IdentitySecret: []byte(secret), Stateful: true}))
	t.Cleanup(up.Close) // after the gateway and the sessions: Close waits for open streams
	base, logs := startGateway(t, map[string]string{
		"GATEWAY_ISSUER_URL":      is.URL,
		"GATEWAY_UPSTREAM_URL":    up.URL + "/mcp",
		"GATEWAY_IDENTITY_SECRET": secret,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	aliceTok := is.token(t, "user_alice", map[string]any{"email": "alice@example.com", "name": "Alice", "roles": []string{"admin"}, "permissions": []string{"users:read"}})
	bobTok := is.token(t, "user_bob", map[string]any{"email": "bob@example.com", "name": "Bob", "role": "member"})
	alice := connect(t, ctx, base+"/mcp", aliceTok, nil)
	bob := connect(t, ctx, base+"/mcp", bobTok, nil)

	for _, c := range []struct {
		who    string
		s      *mcp.ClientSession
		info   string
		perms  string
		workos string
	}{
		{"alice", alice, "map[email:alice@example.com name:Alice organizationId:org_user_alice userId:user_alice]",
			"map[permissions:[users:read] roles:[admin] scopes:[openid email]]", "user_alice@example.com"},
		{"bob", bob, "map[email:bob@example.com name:Bob organizationId:org_user_bob userId:user_bob]",
			"map[permissions:[] roles:[member] scopes:[openid email]]", "user_bob@example.com"},
	} {
		res, err := c.s.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-info"})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(structured(t, res)); got != c.info {
			t.Errorf("%s get-user-info: got %s, want %s", c.who, got, c.info)
		}
		res, err = c.s.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-permissions"})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(structured(t, res)); got != c.perms {
			t.Errorf("%s get-user-permissions: got %s, want %s", c.who, got, c.perms)
		}
		res, err = c.s.CallTool(ctx, &mcp.CallToolParams{Name: "get-workos-user"})
		if err != nil {
			t.Fatal(err)
		}
		if got := structured(t, res)["email"]; got != c.workos {
			t.Errorf("%s get-workos-user email: got %v, want %s", c.who, got, c.workos)
		}
	}

	// Alice's session id is refused to Bob, and the refusal never reaches the tool service.
	sid := alice.ID()
	if sid == "" || !strings.Contains(sid, ".") {
		t.Fatalf("alice's session id %q is not bound by the gateway", sid)
	}
	req, _ := http.NewRequest("POST", base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"get-user-info"}}`))
	req.Header.Set("Authorization", "Bearer "+bobTok)
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || strings.Contains(string(body), "alice") {
		t.Errorf("bob presenting alice's session: got %d %s, want 404", resp.StatusCode, body)
	}
	// Alice's session still works after Bob's attempt.
	if _, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-info"}); err != nil {
		t.Errorf("alice after bob's attempt: %v", err)
	}

	// Without a token: 401 with the challenge, and the tool service never sees the request.
	resp, err = http.Post(base+"/mcp", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer resource_metadata="`+publicURL+`/.well-known/oauth-protected-resource/mcp"` {
		t.Errorf("no token: got %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if strings.Contains(logs.String(), aliceTok) || strings.Contains(logs.String(), bobTok) {
		t.Error("a token appears in the gateway's logs")
	}
}

// TestEventArrivesBeforeToolReturns proves that an SSE response is relayed event by event: the tool sends a progress
// notification and then waits until the client has received it. A buffering proxy deadlocks here.
func TestEventArrivesBeforeToolReturns(t *testing.T) {
	is := newIssuer(t)
	received := make(chan struct{})
	srv := mcp.NewServer(&mcp.Implementation{Name: "slow", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "slow"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1, Total: 2, Message: "half way"}); err != nil {
			return nil, nil, err
		}
		select {
		case <-received:
		case <-ctx.Done():
			return nil, nil, errors.New("the client never saw the progress notification")
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(up.Close) // after the gateway and the sessions: Close waits for open streams
	base, _ := startGateway(t, map[string]string{"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp"})

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var once sync.Once
	s := connect(t, ctx, base+"/mcp", is.token(t, "user_1", nil), &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { once.Do(func() { close(received) }) },
	})
	params := &mcp.CallToolParams{Name: "slow"}
	params.SetProgressToken("p1")
	res, err := s.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	if res.IsError || res.Content[0].(*mcp.TextContent).Text != "done" {
		t.Errorf("result: %+v", res.Content)
	}
}

func TestHealthcheckFailsWithoutGateway(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	err := run(context.Background(), []string{"--healthcheck"}, map[string]string{"GATEWAY_ISSUER_URL": "http://127.0.0.1:1", "GATEWAY_LISTEN_ADDR": addr}, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("--healthcheck with nothing listening: got nil error")
	}
}

// TestServerMessageOnStandaloneStream checks that a message the server sends on its own, outside any request, reaches
// a go-sdk client on the standalone GET stream the gateway relays.
func TestServerMessageOnStandaloneStream(t *testing.T) {
	is := newIssuer(t)
	srv := mcp.NewServer(&mcp.Implementation{Name: "changing", Version: "1"}, nil)
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(up.Close) // after the gateway and the sessions: Close waits for open streams
	base, _ := startGateway(t, map[string]string{"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp"})

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	changed := make(chan struct{})
	var once sync.Once
	connect(t, ctx, base+"/mcp", is.token(t, "user_1", nil), &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { once.Do(func() { close(changed) }) },
	})
	// The client opens its standalone stream after connecting; a change made before it is open is not delivered, so
	// changes are made until one arrives.
	for i := 0; ; i++ {
		mcp.AddTool(srv, &mcp.Tool{Name: fmt.Sprintf("t%d", i)}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return nil, nil, nil
		})
		select {
		case <-changed:
			return
		case <-ctx.Done():
			t.Fatal("no tools/list_changed notification reached the client on its standalone stream")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestShutdownEndsEventStreams checks that stopping the gateway ends an open event stream at once, not when the
// shutdown timeout has passed, that run then returns, and that the stream's request has its access line.
func TestShutdownEndsEventStreams(t *testing.T) {
	is := newIssuer(t)
	opened := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		close(opened)
		<-r.Context().Done()
	}))
	t.Cleanup(up.Close)
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, map[string]string{
			"GATEWAY_LISTEN_ADDR": "127.0.0.1:0", "GATEWAY_METRICS_ADDR": "off", "GATEWAY_PUBLIC_URL": publicURL,
			"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp", "GATEWAY_SHUTDOWN_TIMEOUT": "60s",
		}, io.Discard, logs)
	}()
	addr := waitFor(t, logs, "gateway listening", "addr")
	var resp *http.Response
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+addr+"/mcp", nil)
		req.Header.Set("Authorization", "Bearer "+is.token(t, "user_1", nil))
		req.Header.Set("Accept", "text/event-stream")
		var err error
		if resp, err = http.DefaultClient.Do(req); err == nil && resp.StatusCode == 200 {
			break
		}
		if resp != nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stream through the gateway after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the gateway answers 503 until its keys are loaded
	}
	defer resp.Body.Close()
	<-opened
	stopped := time.Now()
	cancel()
	ended := make(chan struct{})
	go func() { io.ReadAll(resp.Body); close(ended) }()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream was still open 10s after the gateway was stopped")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return 10s after it was stopped")
	}
	if d := time.Since(stopped); d > 10*time.Second {
		t.Errorf("run returned %s after it was stopped, want well before GATEWAY_SHUTDOWN_TIMEOUT", d)
	}
	id := resp.Header.Get("X-Request-Id")
	if n := strings.Count(logs.String(), `"request_id":"`+id+`"`); n != 1 {
		t.Errorf("the stream's request has %d log lines, want its access line; logs:\n%s", n, logs)
	}
}
