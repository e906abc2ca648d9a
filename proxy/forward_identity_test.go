package proxy

import (
	"net/http"
	"strings"
	"testing"
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
					!strings.Contains(got, descriptions[ReasonInvalidClaim]) {
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
