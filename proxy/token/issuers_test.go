package token

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
)

func TestIsJWT(t *testing.T) {
	t.Parallel()
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256"}`))
	tests := []struct {
		token string
		want  bool
	}{
		{hdr + ".e30.c2ln", true},
		{hdr + ".e30.", true}, // alg none: a JWT, refused by the key set
		{"opaque-token_43chars-xxxxxxxxxxxxxxxxxxxxx", false},
		{"a.b.c", false}, // not base64 of a JSON object
		{hdr + ".e30", false},
		{hdr + ".e30.c2ln.x", false},
		{".e30.c2ln", false},
		{base64.RawURLEncoding.EncodeToString([]byte(`"s"`)) + ".e30.c2ln", false},
	}
	for _, tt := range tests {
		if got := IsJWT(tt.token); got != tt.want {
			t.Errorf("IsJWT(%q) = %t, want %t", tt.token, got, tt.want)
		}
	}
}

// Two issuers whose key sets use the same kid with different keys: a token is checked with its own issuer's keys
// only.
func TestIssuersRouteByIssuer(t *testing.T) {
	t.Parallel()
	ka := tokentest.NewKey(t, "shared-kid", 0)
	kb := tokentest.NewKey(t, "shared-kid", 1)
	kbOnly := tokentest.NewKey(t, "b-only", 2)
	a := tokentest.NewIssuer(t, ka)
	b := tokentest.NewIssuer(t, kb, kbOnly)
	c := tokentest.NewClock()
	va, _ := newTestVerifier(t, a, c)
	vb, _ := newTestVerifier(t, b, c)
	is := NewIssuers([]*Verifier{va, vb}, nil, ValidateJWT)
	now := c.Now()

	tests := []struct {
		name  string
		token string
		want  Reason
	}{
		{"A's token", ka.Sign(t, a.Claims(testResource, "alice", now)), ""},
		{"B's token", kb.Sign(t, b.Claims(testResource, "bob", now)), ""},
		{"iss A signed with B's key and kid", kb.Sign(t, a.Claims(testResource, "mallory", now)), ReasonSignature},
		{"iss A with a kid only B has", kbOnly.Sign(t, a.Claims(testResource, "mallory", now)), ReasonUnknownKey},
		{"iss B signed with A's key", ka.Sign(t, b.Claims(testResource, "mallory", now)), ReasonSignature},
		{"unknown issuer", ka.Sign(t, map[string]any{"iss": "https://evil.example.com", "sub": "x", "aud": testResource, "exp": now.Add(time.Hour).Unix()}), ReasonIssuer},
		{"opaque token without introspection", "opaque-token", ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ah, bh := a.JWKSHits.Load(), b.JWKSHits.Load()
			p, err := is.Verify(context.Background(), tt.token)
			if got := reasonOf(err); got != tt.want {
				t.Fatalf("reason %q (err %v), want %q", got, err, tt.want)
			}
			if tt.want == ReasonIssuer && (a.JWKSHits.Load() != ah || b.JWKSHits.Load() != bh) {
				t.Errorf("an unknown issuer caused a key set fetch")
			}
			if tt.want == "" && p.Issuer == "" {
				t.Errorf("principal without issuer")
			}
		})
	}
}

func TestIssuersIntrospection(t *testing.T) {
	t.Parallel()
	k := tokentest.NewKey(t, "k1", 0)
	a := tokentest.NewIssuer(t, k)
	c := tokentest.NewClock()
	va, _ := newTestVerifier(t, a, c)
	in := newTestIntrospector(t, a, c, nil)
	opaque := a.Opaque(a.Claims(testResource, "alice", c.Now()))
	jwt := k.Sign(t, a.Claims(testResource, "alice", c.Now()))
	ctx := context.Background()

	auto := NewIssuers([]*Verifier{va}, in, ValidateAuto)
	if _, err := auto.Verify(ctx, opaque); err != nil {
		t.Fatalf("auto, opaque token: %v", err)
	}
	hits := a.IntrospectionHits.Load()
	if _, err := auto.Verify(ctx, jwt); err != nil || a.IntrospectionHits.Load() != hits {
		t.Fatalf("auto, JWT: err %v, %d introspections; want it verified by its signature", err, a.IntrospectionHits.Load()-hits)
	}
	all := NewIssuers([]*Verifier{va}, in, ValidateIntrospection)
	if _, err := all.Verify(ctx, jwt); reasonOf(err) != ReasonInactive {
		t.Fatalf("introspection mode, JWT the endpoint does not know: err %v, want %q", err, ReasonInactive)
	}
	jwtOnly := NewIssuers([]*Verifier{va}, in, ValidateJWT)
	if _, err := jwtOnly.Verify(ctx, opaque); reasonOf(err) != ReasonMalformed {
		t.Fatalf("jwt mode, opaque token: err %v, want %q", err, ReasonMalformed)
	}
}
