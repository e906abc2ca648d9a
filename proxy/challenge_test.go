package proxy

import (
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/proxy/token"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestChallenges pins every challenge the gateway sends: status, WWW-Authenticate and body.
func TestChallenges(t *testing.T) {
	t.Parallel()
	const prm = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	for _, tt := range []struct {
		name   string
		reason token.Reason
		scopes []string
	}{
		{"no_token", token.ReasonNoToken, nil},
		{"no_token_scopes", token.ReasonNoToken, []string{"mcp:tools", "mcp:read"}},
		{"expired", token.ReasonExpired, nil},
		{"wrong_audience", token.ReasonAudience, nil},
		{"invalid_claim", token.ReasonInvalidClaim, nil},
		{"malformed_scopes", token.ReasonMalformed, []string{"mcp:tools"}},
		{"insufficient_scope", token.ReasonScope, []string{"mcp:tools", "mcp:read"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeError(rec, httptest.NewRequest("GET", "/mcp", nil), refusal(tt.reason, prm, tt.scopes, nil))
			var b strings.Builder
			b.WriteString(rec.Result().Status + "\n")
			b.WriteString("WWW-Authenticate: " + rec.Header().Get("WWW-Authenticate") + "\n")
			b.WriteString("Content-Type: " + rec.Header().Get("Content-Type") + "\n\n")
			b.WriteString(rec.Body.String())
			golden(t, "challenge_"+tt.name+".golden", b.String())
		})
	}
}

func TestChallengeDescriptionsAreSafe(t *testing.T) {
	t.Parallel()
	for r, d := range descriptions {
		for _, c := range d {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Errorf("description of %s has %q: error_description must be ASCII without quotes or backslashes", r, c)
			}
		}
	}
	if got := (Challenge{Error: "invalid_token", Description: `a"b\c`, ResourceMetadata: "u"}).String(); got != `Bearer error="invalid_token", error_description="abc", resource_metadata="u"` {
		t.Errorf("got %s", got)
	}
}
