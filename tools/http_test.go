package tools

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// headerOf returns the headers the gateway would set for id, signed with secret at signedAt when secret is set.
func headerOf(id identity.Identity, secret []byte, signedAt time.Time) http.Header {
	h := http.Header{}
	id.Set(h)
	if secret != nil {
		identity.Sign(h, secret, signedAt)
	}
	return h
}

func TestCheckIdentity(t *testing.T) {
	t.Parallel()
	const maxAge = time.Minute
	tampered := headerOf(alice, testSecret, testNow)
	tampered.Set(identity.HeaderUserID, bob.UserID)
	badClaims := headerOf(alice, nil, testNow)
	badClaims.Set(identity.HeaderClaims, "not base64!")

	tests := []struct {
		name       string
		header     http.Header
		secret     []byte
		wantStatus int   // 0: let through
		wantCause  error // checked with errors.Is when set
	}{
		{name: "no headers", header: http.Header{}, wantStatus: 401, wantCause: identity.ErrNoIdentity},
		{name: "no user id", header: http.Header{identity.HeaderEmail: {"a@example.com"}}, wantStatus: 401, wantCause: identity.ErrNoIdentity},
		{name: "unsigned, no secret", header: headerOf(alice, nil, testNow)},
		{name: "minimal, no secret", header: headerOf(identity.Identity{UserID: "u"}, nil, testNow)},
		{name: "malformed claims", header: badClaims, wantStatus: 400},
		{name: "no user id, with secret", header: http.Header{}, secret: testSecret, wantStatus: 401, wantCause: identity.ErrNoIdentity},
		{name: "unsigned, with secret", header: headerOf(alice, nil, testNow), secret: testSecret,
			wantStatus: 403, wantCause: identity.ErrNoSignature},
		{name: "signed with another secret", header: headerOf(alice, []byte("another secret, just as long as it"), testNow),
			secret: testSecret, wantStatus: 403, wantCause: identity.ErrBadSignature},
		{name: "header changed after signing", header: tampered, secret: testSecret, wantStatus: 403, wantCause: identity.ErrBadSignature},
		{name: "stale", header: headerOf(alice, testSecret, testNow.Add(-maxAge-time.Second)), secret: testSecret,
			wantStatus: 403, wantCause: identity.ErrStale},
		{name: "from the future", header: headerOf(alice, testSecret, testNow.Add(maxAge+time.Second)), secret: testSecret,
			wantStatus: 403, wantCause: identity.ErrStale},
		{name: "signed at the edge of max age", header: headerOf(alice, testSecret, testNow.Add(-maxAge)), secret: testSecret},
		{name: "signed", header: headerOf(alice, testSecret, testNow), secret: testSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ref := checkIdentity(tt.header, tt.secret, testNow, maxAge)
			if tt.wantStatus == 0 {
				if ref != nil {
					t.Fatalf("got refusal %v, want none", ref)
				}
				return
			}
			if ref == nil {
				t.Fatalf("got no refusal, want %d", tt.wantStatus)
			}
			if ref.status != tt.wantStatus {
				t.Errorf("status = %d, want %d", ref.status, tt.wantStatus)
			}
			if tt.wantCause != nil && !errors.Is(ref, tt.wantCause) {
				t.Errorf("cause = %v, want %v", ref.cause, tt.wantCause)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// initialize is an MCP initialize request, which the MCP handler answers 200 when it gets to see it.
const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",` +
	`"capabilities":{},"clientInfo":{"name":"test","version":"1"}}}`

// TestHandlerRefusesWithoutIdentity checks the HTTP answers: what reaches the MCP handler, what is refused and with
// which body, and that the refusal is logged without identity header values.
func TestHandlerRefusesWithoutIdentity(t *testing.T) {
	t.Parallel()
	claims := []byte(`{"sub":"user_alice","secret_claim":"do-not-log-me"}`)
	withClaims := alice
	withClaims.Claims = claims

	tests := []struct {
		name     string
		secret   []byte
		header   http.Header
		wantCode int
		wantBody string // exact JSON body of a refusal
	}{
		{
			name: "no identity", header: http.Header{}, wantCode: 401,
			wantBody: `{"error":"unauthenticated","error_description":"this service must run behind the MCP gateway: the request carries no gateway identity"}`,
		},
		{
			name: "no identity, with secret", secret: testSecret, header: http.Header{}, wantCode: 401,
			wantBody: `{"error":"unauthenticated","error_description":"this service must run behind the MCP gateway: the request carries no gateway identity"}`,
		},
		{name: "identity, no secret", header: headerOf(withClaims, nil, testNow), wantCode: 200},
		{
			name: "unsigned", secret: testSecret, header: headerOf(withClaims, nil, testNow), wantCode: 403,
			wantBody: `{"error":"forbidden","error_description":"the gateway identity on the request is not signed, or its signature is wrong or stale"}`,
		},
		{
			name: "wrong signature", secret: testSecret, header: headerOf(withClaims, []byte("wrong"), testNow), wantCode: 403,
			wantBody: `{"error":"forbidden","error_description":"the gateway identity on the request is not signed, or its signature is wrong or stale"}`,
		},
		{
			name: "stale signature", secret: testSecret, header: headerOf(withClaims, testSecret, testNow.Add(-time.Hour)), wantCode: 403,
			wantBody: `{"error":"forbidden","error_description":"the gateway identity on the request is not signed, or its signature is wrong or stale"}`,
		},
		{name: "good signature", secret: testSecret, header: headerOf(withClaims, testSecret, testNow), wantCode: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			srv := startServer(t, Options{
				IdentitySecret: tt.secret,
				Logger:         slog.New(slog.NewJSONHandler(&logs, nil)),
			})
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+Path, strings.NewReader(initialize))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = tt.header.Clone()
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, tt.wantCode, body)
			}
			if tt.wantBody == "" {
				return
			}
			if got := strings.TrimSpace(string(body)); got != tt.wantBody {
				t.Errorf("body = %s, want %s", got, tt.wantBody)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			logged := logs.String()
			if !strings.Contains(logged, `"msg":"request refused"`) {
				t.Errorf("refusal not logged: %s", logged)
			}
			for _, secret := range []string{"do-not-log-me", base64.RawURLEncoding.EncodeToString(claims), alice.Email} {
				if strings.Contains(logged, secret) {
					t.Errorf("log contains identity header value %q: %s", secret, logged)
				}
			}
		})
	}
}

// TestHandlerServesOnlyMCP checks that nothing but /mcp is served, with or without an identity.
func TestHandlerServesOnlyMCP(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Options{})
	for _, path := range []string{"/", "/mcp/", "/mcp/x", "/sse", "/messages", "/health", "/.well-known/oauth-protected-resource"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(initialize))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = headerOf(alice, nil, testNow)
			req.Header.Set("Content-Type", "application/json")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("POST %s: status = %d, want 404", path, resp.StatusCode)
			}
		})
	}
}

// TestHandlerRefusesForeignHostOnLoopback pins the go-sdk's DNS-rebinding protection that Handler documents: on a
// loopback listener, a Host that is not loopback is refused, so the gateway must send the upstream's host.
func TestHandlerRefusesForeignHostOnLoopback(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Options{})
	for host, want := range map[string]int{"mcp.example.com": http.StatusForbidden, srv.Listener.Addr().String(): http.StatusOK} {
		t.Run(host, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+Path, strings.NewReader(initialize))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			req.Header = headerOf(alice, nil, testNow)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("Host %s: status = %d, want %d", host, resp.StatusCode, want)
			}
		})
	}
}
