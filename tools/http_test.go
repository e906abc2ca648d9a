package tools

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// headerOf returns the headers the gateway would set for id, unsigned.
func headerOf(id identity.Identity) http.Header {
	h := http.Header{}
	id.Set(h)
	return h
}

// signedFor sets id on r and signs it with secret at signedAt as the gateway would for the request method target on
// host (r's own when empty), so that a test can send a signature made for another request.
func signedFor(r *http.Request, id identity.Identity, secret []byte, signedAt time.Time, method, target, host string) {
	id.Set(r.Header)
	other := r.Clone(r.Context())
	if method != "" {
		other.Method = method
	}
	if target != "" {
		u, err := url.Parse(target)
		if err != nil {
			panic(err)
		}
		other.URL.Path, other.URL.RawPath = u.Path, u.RawPath
	}
	if host != "" {
		other.Host = host
	}
	identity.Sign(other, secret, signedAt)
	r.Header[identity.HeaderSignature] = other.Header[identity.HeaderSignature]
}

// signV1 adds a version 1 signature (identity headers only), which the service must refuse.
func signV1(h http.Header, secret []byte, now time.Time) {
	t := strconv.FormatInt(now.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	io.WriteString(m, "mcp-gateway-identity-v1\n"+t+"\n")
	for _, name := range []string{identity.HeaderUserID, identity.HeaderEmail, identity.HeaderName, identity.HeaderOrgID,
		identity.HeaderSessionID, identity.HeaderClientID, identity.HeaderRoles, identity.HeaderPermissions,
		identity.HeaderScopes, identity.HeaderClaims, identity.HeaderForwardedUser, identity.HeaderForwardedEmail} {
		io.WriteString(m, name+":"+h.Get(name)+"\n")
	}
	h.Set(identity.HeaderSignature, "t="+t+",v1="+base64.RawURLEncoding.EncodeToString(m.Sum(nil)))
}

func TestCheckIdentity(t *testing.T) {
	t.Parallel()
	const maxAge = time.Minute
	type mod func(r *http.Request)
	signed := func(id identity.Identity, secret []byte, at time.Time) mod {
		return func(r *http.Request) { signedFor(r, id, secret, at, "", "", "") }
	}
	tests := []struct {
		name       string
		req        mod // builds the identity on POST http://127.0.0.1:3001/mcp
		secret     []byte
		wantStatus int   // 0: let through
		wantCause  error // checked with errors.Is when set
	}{
		{name: "no headers", req: func(*http.Request) {}, wantStatus: 401, wantCause: identity.ErrNoIdentity},
		{name: "no user id", req: func(r *http.Request) { r.Header.Set(identity.HeaderEmail, "a@example.com") }, wantStatus: 401, wantCause: identity.ErrNoIdentity},
		{name: "unsigned, no secret", req: func(r *http.Request) { alice.Set(r.Header) }},
		{name: "minimal, no secret", req: func(r *http.Request) { (&identity.Identity{UserID: "u"}).Set(r.Header) }},
		{name: "malformed claims", req: func(r *http.Request) { alice.Set(r.Header); r.Header.Set(identity.HeaderClaims, "not base64!") }, wantStatus: 400},
		{name: "no user id, with secret", req: func(*http.Request) {}, secret: testSecret, wantStatus: 401, wantCause: identity.ErrNoIdentity},
		{name: "unsigned, with secret", req: func(r *http.Request) { alice.Set(r.Header) }, secret: testSecret,
			wantStatus: 403, wantCause: identity.ErrNoSignature},
		{name: "signed with another secret", req: signed(alice, []byte("another secret, just as long as it"), testNow),
			secret: testSecret, wantStatus: 403, wantCause: identity.ErrBadSignature},
		{name: "header changed after signing", req: func(r *http.Request) {
			signedFor(r, alice, testSecret, testNow, "", "", "")
			r.Header.Set(identity.HeaderUserID, bob.UserID)
		}, secret: testSecret, wantStatus: 403, wantCause: identity.ErrBadSignature},
		{name: "stale", req: signed(alice, testSecret, testNow.Add(-maxAge-time.Second)), secret: testSecret,
			wantStatus: 403, wantCause: identity.ErrStale},
		{name: "from the future", req: signed(alice, testSecret, testNow.Add(maxAge+time.Second)), secret: testSecret,
			wantStatus: 403, wantCause: identity.ErrStale},
		{name: "signed at the edge of max age", req: signed(alice, testSecret, testNow.Add(-maxAge)), secret: testSecret},
		{name: "signed", req: signed(alice, testSecret, testNow), secret: testSecret},
		{name: "signed for another method", req: func(r *http.Request) { signedFor(r, alice, testSecret, testNow, "DELETE", "", "") },
			secret: testSecret, wantStatus: 403, wantCause: identity.ErrBadSignature},
		{name: "signed for another path", req: func(r *http.Request) { signedFor(r, alice, testSecret, testNow, "", "/admin", "") },
			secret: testSecret, wantStatus: 403, wantCause: identity.ErrBadSignature},
		{name: "signed for another host", req: func(r *http.Request) { signedFor(r, alice, testSecret, testNow, "", "", "10.0.0.7:3001") },
			secret: testSecret, wantStatus: 403, wantCause: identity.ErrBadSignature},
		{name: "version 1 signature", req: func(r *http.Request) { alice.Set(r.Header); signV1(r.Header, testSecret, testNow) },
			secret: testSecret, wantStatus: 403, wantCause: identity.ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:3001/mcp", nil)
			tt.req(r)
			ref := checkIdentity(r, tt.secret, testNow, maxAge)
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

	const forbidden = `{"error":"forbidden","error_description":"the gateway identity on the request is not signed, or its signature is wrong or stale"}`
	sign := func(secret []byte, at time.Time, method, path, host string) func(*http.Request) {
		return func(r *http.Request) { signedFor(r, withClaims, secret, at, method, path, host) }
	}
	tests := []struct {
		name     string
		secret   []byte
		identify func(r *http.Request) // sets the identity headers; nil: none
		wantCode int
		wantBody string // exact JSON body of a refusal
	}{
		{
			name: "no identity", wantCode: 401,
			wantBody: `{"error":"unauthenticated","error_description":"this service must run behind the MCP gateway: the request carries no gateway identity"}`,
		},
		{
			name: "no identity, with secret", secret: testSecret, wantCode: 401,
			wantBody: `{"error":"unauthenticated","error_description":"this service must run behind the MCP gateway: the request carries no gateway identity"}`,
		},
		{name: "identity, no secret", identify: func(r *http.Request) { withClaims.Set(r.Header) }, wantCode: 200},
		{name: "unsigned", secret: testSecret, identify: func(r *http.Request) { withClaims.Set(r.Header) }, wantCode: 403, wantBody: forbidden},
		{name: "wrong signature", secret: testSecret, identify: sign([]byte("wrong"), testNow, "", "", ""), wantCode: 403, wantBody: forbidden},
		{name: "stale signature", secret: testSecret, identify: sign(testSecret, testNow.Add(-time.Hour), "", "", ""), wantCode: 403, wantBody: forbidden},
		{name: "good signature", secret: testSecret, identify: sign(testSecret, testNow, "", "", ""), wantCode: 200},
		// Signature version 2: the service checks it against the method, path and Host it received.
		{name: "signed for GET, sent as POST", secret: testSecret, identify: sign(testSecret, testNow, "GET", "", ""), wantCode: 403, wantBody: forbidden},
		{name: "signed for another path", secret: testSecret, identify: sign(testSecret, testNow, "", "/other/mcp", ""), wantCode: 403, wantBody: forbidden},
		{name: "signed for another host", secret: testSecret, identify: sign(testSecret, testNow, "", "", "localhost:1"), wantCode: 403, wantBody: forbidden},
		{name: "version 1 signature", secret: testSecret, identify: func(r *http.Request) {
			withClaims.Set(r.Header)
			signV1(r.Header, testSecret, testNow)
		}, wantCode: 403, wantBody: forbidden},
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
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tt.identify != nil {
				tt.identify(req)
			}
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
			req.Header = headerOf(alice)
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
			req.Header = headerOf(alice)
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
