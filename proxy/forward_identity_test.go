package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/identity"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// TestForwardOnlyWhatTheTokenProves runs tokens through the gateway and checks what the upstream receives: no e-mail
// headers for an address the token says is unverified, and no request at all for a token whose role would become
// two roles in X-Auth-Roles (401 invalid_token instead).
func TestForwardOnlyWhatTheTokenProves(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		claims     map[string]any
		wantStatus int
		wantEmail  string // X-Auth-Email and X-Forwarded-Email at the upstream
		wantRoles  string
	}{
		{"verified e-mail", map[string]any{"email": "ada@example.com", "email_verified": true}, 200, "ada@example.com", ""},
		{"e-mail without email_verified", map[string]any{"email": "ada@example.com"}, 200, "ada@example.com", ""},
		{"unverified e-mail", map[string]any{"email": "ceo@victim-corp.example", "email_verified": false}, 200, "", ""},
		{"roles", map[string]any{"roles": []string{"member", "viewer"}}, 200, "", "member,viewer"},
		{"role with the list separator", map[string]any{"role": "x,admin"}, 401, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil, true)
			tok := h.token(t, "user_1", func(m map[string]any) {
				for k, v := range tt.claims {
					m[k] = v
				}
			})
			resp := h.do(t, "POST", "/mcp", tok, map[string]string{"X-Forwarded-Email": "forged@example.com"}, "{}")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d (%s)", resp.StatusCode, tt.wantStatus, readBody(t, resp))
			}
			if tt.wantStatus != http.StatusOK {
				if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) ||
					!strings.Contains(got, descriptions[token.ReasonInvalidClaim]) {
					t.Errorf("WWW-Authenticate: got %s, want invalid_token with the invalid_claim description", got)
				}
				if n := h.up.count(); n != 0 {
					t.Errorf("requests at the upstream: got %d, want 0", n)
				}
				return
			}
			up := h.up.last(t).Header
			for _, name := range []string{"X-Auth-Email", "X-Forwarded-Email"} {
				if got := up.Get(name); got != tt.wantEmail {
					t.Errorf("%s at the upstream: got %q, want %q", name, got, tt.wantEmail)
				}
			}
			if got := up.Get("X-Auth-Roles"); got != tt.wantRoles {
				t.Errorf("X-Auth-Roles at the upstream: got %q, want %q", got, tt.wantRoles)
			}
		})
	}
}

// TestIdentitySignatureCoversRequest: the upstream can verify the identity signature (version 2) against the method,
// path and Host it received, on requests forwarded by the reverse proxy and by the event-stream relay alike, and the
// same signature does not verify for another method, path or host.
func TestIdentitySignatureCoversRequest(t *testing.T) {
	t.Parallel()
	const secret = "0123456789abcdef0123456789abcdef"
	h := newHarness(t, map[string]string{"GATEWAY_IDENTITY_SECRET": secret}, true)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {}\n\n")
	}
	for _, tt := range []struct {
		name, method, path string
		relayed            bool
		wantPath           string // at the upstream
	}{
		{"POST through the reverse proxy", "POST", "/mcp", false, "/upstream/mcp"},
		{"GET event stream through the relay", "GET", "/mcp", true, "/upstream/mcp"},
		{"another path through the reverse proxy", "POST", "/sse%2Fx", false, "/sse%2Fx"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := h.up.count()
			resp := h.do(t, tt.method, tt.path, h.token(t, "user_1"),
				map[string]string{"Accept": "application/json, text/event-stream", "X-Auth-Signature": "t=1,v2=forged"}, "")
			io.ReadAll(resp.Body)
			if h.up.count() != before+1 {
				t.Fatalf("status %d: the request did not reach the upstream", resp.StatusCode)
			}
			if resp.Close != tt.relayed { // the relay, alone, ends the connection with the stream
				t.Errorf("Connection: close: got %t, want %t (relayed)", resp.Close, tt.relayed)
			}
			up := h.up.last(t)
			if got := up.URL.EscapedPath(); got != tt.wantPath {
				t.Errorf("path at the upstream: got %s, want %s", got, tt.wantPath)
			}
			if err := identity.Verify(up, []byte(secret), h.clock.Now(), time.Minute); err != nil {
				t.Fatalf("upstream could not verify the identity signature: %v", err)
			}
			for _, mod := range []struct {
				name string
				f    func(r *http.Request)
			}{
				{"method", func(r *http.Request) { r.Method = "DELETE" }},
				{"path", func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/other", "" }},
				{"host", func(r *http.Request) { r.Host = "attacker.example" }},
			} {
				r := up.Clone(context.Background())
				mod.f(r)
				if err := identity.Verify(r, []byte(secret), h.clock.Now(), time.Minute); !errors.Is(err, identity.ErrBadSignature) {
					t.Errorf("signature checked against another %s: got %v, want ErrBadSignature", mod.name, err)
				}
			}
		})
	}
	// A relayed stream ends when its tunnel sees the client's connection close, which follows the test's reads.
	waitFor(t, "the relayed streams to end", func() bool { return h.gw.relayedStreams() == 0 })
}

// TestInboundTrailersDoNotReachTheUpstream: a chunked request may end with trailer fields. The gateway strips
// identity, credential and mapped headers from the header section only, so an X-Auth-User-Id, an Authorization or a
// mapped X-Tenant sent as a trailer reached the upstream, beside the identity the gateway set and outside the
// signature. Go's server keeps trailers apart (Request.Trailer), but a framework or proxy that merges them into the
// headers, as some do, would read the client's value. No trailer is forwarded.
func TestInboundTrailersDoNotReachTheUpstream(t *testing.T) {
	t.Parallel()
	for _, policed := range []bool{false, true} {
		t.Run("policy "+strconv.FormatBool(policed), func(t *testing.T) { trailersDoNotReachTheUpstream(t, policed) })
	}
}

func trailersDoNotReachTheUpstream(t *testing.T, policed bool) {
	env := map[string]string{"GATEWAY_CLAIM_HEADERS": "X-Tenant=org_id"}
	var h *harness
	if policed {
		h = newPolicyHarness(t, "default: allow\n", env).harness
	} else {
		h = newHarness(t, env, true)
	}
	var mu sync.Mutex
	var got http.Header
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		got = r.Trailer.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	host := strings.TrimPrefix(h.srv.URL, "http://")
	req := "POST /mcp HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + h.token(t, "user_1") + "\r\n" +
		"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" +
		"Transfer-Encoding: chunked\r\nTrailer: X-Auth-User-Id, X-Tenant, Authorization, X-Custom\r\nConnection: close\r\n\r\n" +
		strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n" +
		"X-Auth-User-Id: admin\r\nX-Tenant: other-tenant\r\nAuthorization: Bearer forged\r\nX-Custom: 1\r\n\r\n"
	_, br := h.rawRequest(t, req)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 0 {
		t.Errorf("the upstream got trailers %v, want none", got)
	}
}
