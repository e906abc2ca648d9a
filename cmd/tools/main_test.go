package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// logWatcher is the stderr of a run under test: it keeps the log and hands over the addr of its "listening" line.
type logWatcher struct {
	addr chan string

	mu      sync.Mutex
	log     bytes.Buffer
	partial []byte
}

func newLogWatcher() *logWatcher { return &logWatcher{addr: make(chan string, 1)} }

func (w *logWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log.Write(p)
	w.partial = append(w.partial, p...)
	for {
		line, rest, ok := bytes.Cut(w.partial, []byte("\n"))
		if !ok {
			break
		}
		w.partial = rest
		var rec struct{ Msg, Addr string }
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
			select {
			case w.addr <- rec.Addr:
			default:
			}
		}
	}
	return len(p), nil
}

func (w *logWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.String()
}

// startRun runs the service with environ until the returned cancel is called; done receives run's result.
func startRun(t *testing.T, environ map[string]string) (addr string, cancel context.CancelFunc, done <-chan error, logs *logWatcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	logs = newLogWatcher()
	result := make(chan error, 1)
	go func() { result <- run(ctx, []string{"tools"}, environ, io.Discard, logs) }()
	select {
	case addr = <-logs.addr:
	case err := <-result:
		t.Fatalf("run returned before listening: %v\n%s", err, logs)
	}
	return addr, cancel, result, logs
}

// signingTransport plays the gateway: it sets id on every request, signed with secret at the current time.
type signingTransport struct {
	base   http.RoundTripper
	id     identity.Identity
	secret []byte
}

func (s signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	identity.Strip(req.Header)
	s.id.Set(req.Header)
	identity.Sign(req, s.secret, time.Now())
	return s.base.RoundTrip(req)
}

// TestRunServesAndShutsDown runs the binary's run on a free port with sessions, calls a tool through it as the gateway
// would, holds a standalone event stream open, and checks that cancelling ctx shuts down cleanly and well before the
// shutdown timeout, the stream included.
func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("k", minSecretLen)
	addr, cancel, done, logs := startRun(t, map[string]string{
		"TOOLS_LISTEN_ADDR":       "127.0.0.1:0",
		"TOOLS_STATELESS":         "false", // standalone event streams exist only with sessions
		"GATEWAY_IDENTITY_SECRET": secret,
		"WORKOS_API_KEY":          "sk_test_never_logged",
	})
	endpoint := "http://" + addr + "/mcp"
	// The test's own connections, so that it can close the idle ones before shutdown: http.Server.Shutdown waits up
	// to 5s for a connection on which no request has started yet, which a Transport may have dialled and not used.
	conns := &http.Transport{}
	t.Cleanup(conns.CloseIdleConnections)
	gateway := signingTransport{base: conns, id: identity.Identity{UserID: "user_alice", Email: "alice@example.com"}, secret: []byte(secret)}

	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint:             endpoint,
		HTTPClient:           &http.Client{Transport: gateway},
		DisableStandaloneSSE: true,
		MaxRetries:           -1,
	}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, logs)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "get-user-info"})
	if err != nil || res.IsError {
		t.Fatalf("get-user-info: %v %+v", err, res)
	}
	if got, want := res.StructuredContent, any(map[string]any{"userId": "user_alice", "email": "alice@example.com"}); !equalJSON(got, want) {
		t.Errorf("get-user-info = %v, want %v", got, want)
	}

	// Without the gateway's headers, the service refuses.
	resp, err := (&http.Client{Transport: conns}).Post(endpoint, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST without identity: status = %d, want 401", resp.StatusCode)
	}

	// A standalone event stream, which stays open until the server ends it.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", cs.ID())
	req.Header.Set("Mcp-Protocol-Version", cs.InitializeResult().ProtocolVersion)
	stream, err := (&http.Client{Transport: gateway}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: status = %d, want 200", stream.StatusCode)
	}

	conns.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v, want nil\n%s", err, logs)
		}
	case <-time.After(shutdownTimeout / 2):
		t.Fatalf("run did not return within %v of cancellation\n%s", shutdownTimeout/2, logs)
	}
	if _, err := io.ReadAll(stream.Body); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading the stream after shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("%s still accepts connections after run returned", addr)
	}

	log := logs.String()
	for _, want := range []string{`"msg":"listening"`, `"msg":"shutting down"`, `"msg":"stopped"`, `"msg":"request refused"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	for _, secretValue := range []string{secret, "sk_test_never_logged"} {
		if strings.Contains(log, secretValue) {
			t.Errorf("log contains a secret:\n%s", log)
		}
	}
}

// TestRunSpeaksEveryProtocolVersionByDefault connects go-sdk clients to the service run with its defaults: one at the
// go-sdk client's default, 2026-07-28 (server/discover, then sessionless requests), and one at 2025-06-18 (initialize).
// Both call a tool.
func TestRunSpeaksEveryProtocolVersionByDefault(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("k", minSecretLen)
	addr, _, _, logs := startRun(t, map[string]string{"TOOLS_LISTEN_ADDR": "127.0.0.1:0", "GATEWAY_IDENTITY_SECRET": secret})
	conns := &http.Transport{}
	t.Cleanup(conns.CloseIdleConnections)
	gateway := signingTransport{base: conns, id: identity.Identity{UserID: "user_alice"}, secret: []byte(secret)}

	for _, tt := range []struct {
		ask, want string
	}{
		{ask: "", want: "2026-07-28"},
		{ask: "2025-06-18", want: "2025-06-18"},
	} {
		client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
		cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{
			Endpoint:   "http://" + addr + "/mcp",
			HTTPClient: &http.Client{Transport: gateway},
			MaxRetries: -1,
		}, &mcp.ClientSessionOptions{ProtocolVersion: tt.ask})
		if err != nil {
			t.Fatalf("connect asking for %q: %v\n%s", tt.ask, err, logs)
		}
		if got := cs.InitializeResult().ProtocolVersion; got != tt.want {
			t.Errorf("asking for %q: negotiated %q, want %q", tt.ask, got, tt.want)
		}
		if id := cs.ID(); id != "" {
			t.Errorf("asking for %q: session id %q, want none", tt.ask, id)
		}
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "get-user-info"})
		if err != nil || res.IsError {
			t.Errorf("asking for %q: get-user-info: %v %+v", tt.ask, err, res)
		}
		cs.Close()
	}
}

// TestRunWarnsOfUnknownVariables checks that a misspelt TOOLS_* variable is named at start, with the variable it is
// closest to, and that the service starts anyway.
func TestRunWarnsOfUnknownVariables(t *testing.T) {
	t.Parallel()
	_, cancel, done, logs := startRun(t, map[string]string{
		"TOOLS_LISTEN_ADDR":   "127.0.0.1:0",
		"TOOLS_JSON_RESPONCE": "true",
		"GATEWAY_LOG_LEVEL":   "debug", // the gateway's, not checked here
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	var warned []string
	for line := range strings.Lines(logs.String()) {
		var rec struct {
			Level, Msg, Name string
			Closest          string `json:"closest_known"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Msg, "unknown variable") {
			warned = append(warned, rec.Level+" "+rec.Name+" → "+rec.Closest)
		}
	}
	if want := []string{"WARN TOOLS_JSON_RESPONCE → TOOLS_JSON_RESPONSE"}; !slices.Equal(warned, want) {
		t.Errorf("warnings = %q, want %q\n%s", warned, want, logs)
	}
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func TestRunFailsToStart(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // not defer: the parallel subtests run after this function returns

	tests := []struct {
		name    string
		args    []string
		environ map[string]string
		want    []string // substrings of the error
	}{
		{
			name:    "invalid configuration",
			environ: map[string]string{"TOOLS_LOG_LEVEL": "loud", "WORKOS_API_URL": "api.workos.com"},
			want:    []string{"TOOLS_LOG_LEVEL", "WORKOS_API_URL"},
		},
		{name: "address in use", environ: map[string]string{"TOOLS_LISTEN_ADDR": busy.Addr().String()}, want: []string{"listen"}},
		{
			name:    "every interface without a secret",
			environ: map[string]string{"TOOLS_LISTEN_ADDR": "0.0.0.0:0"},
			want:    []string{"TOOLS_LISTEN_ADDR", "GATEWAY_IDENTITY_SECRET", "127.0.0.1"},
		},
		{name: "unexpected argument", args: []string{"serve"}, environ: map[string]string{}, want: []string{"unexpected arguments"}},
		{name: "unknown flag", args: []string{"-port=1"}, environ: map[string]string{}, want: []string{"-port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			// Bounded, so that a run that starts serving when it should not fails the test instead of hanging it.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := run(ctx, append([]string{"tools"}, tt.args...), tt.environ, io.Discard, &stderr)
			if err == nil {
				t.Fatal("run: got nil, want an error")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("run = %q, want it to mention %q", err, want)
				}
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"tools", "-h"}, map[string]string{}, io.Discard, &stderr); err != nil {
		t.Errorf("run -h = %v, want nil", err)
	}
	if !strings.Contains(stderr.String(), "usage:") {
		t.Errorf("run -h printed %q, want a usage line", stderr.String())
	}
}

// TestHealthcheck runs --healthcheck against the real service and against things that are not it.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	addr, _, _, logs := startRun(t, map[string]string{"TOOLS_LISTEN_ADDR": "127.0.0.1:0"})
	_, port, _ := net.SplitHostPort(addr)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"invalid_token"}`))
	}))
	t.Cleanup(other.Close)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(ok.Close)

	tests := []struct {
		name    string
		addr    string
		wantErr error // nil: healthy; errUnhealthy: something else answered; other: any error
	}{
		{name: "tool service", addr: addr},
		{name: "unspecified host means loopback", addr: "0.0.0.0:" + port},
		{name: "empty host means loopback", addr: ":" + port},
		{name: "nothing listening", addr: closedAddr, wantErr: errors.New("any")},
		{name: "another server's 401", addr: strings.TrimPrefix(other.URL, "http://"), wantErr: errUnhealthy},
		{name: "a server answering 200", addr: strings.TrimPrefix(ok.URL, "http://"), wantErr: errUnhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			// The service's own environment: a listen address beyond loopback comes with the secret.
			environ := map[string]string{"TOOLS_LISTEN_ADDR": tt.addr, "GATEWAY_IDENTITY_SECRET": strings.Repeat("k", minSecretLen)}
			err := run(t.Context(), []string{"tools", "--healthcheck"}, environ, io.Discard, &stderr)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Errorf("--healthcheck against %s: got %v, want nil", tt.addr, err)
			case tt.wantErr != nil && err == nil:
				t.Errorf("--healthcheck against %s: got nil, want an error", tt.addr)
			case tt.wantErr == errUnhealthy && !errors.Is(err, errUnhealthy):
				t.Errorf("--healthcheck against %s: got %v, want errUnhealthy", tt.addr, err)
			}
			if stderr.Len() > 0 {
				t.Errorf("--healthcheck wrote to stderr: %q", stderr.String())
			}
		})
	}
	t.Cleanup(func() {
		if !strings.Contains(logs.String(), `"reason":"unauthenticated"`) {
			t.Errorf("the service did not log the check's refused request:\n%s", logs)
		}
	})
}

func TestHealthcheckInvalidConfiguration(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"tools", "--healthcheck"}, map[string]string{"TOOLS_LISTEN_ADDR": "no-port"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "TOOLS_LISTEN_ADDR") {
		t.Errorf("--healthcheck with TOOLS_LISTEN_ADDR=no-port: got %v, want an error naming the variable", err)
	}
}
