package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
)

const testResource = "https://mcp.example.com/mcp"

// newTestVerifier returns a verifier over is's JWKS with the clock c, keys loaded.
func newTestVerifier(t *testing.T, is *tokentest.Issuer, c *tokentest.Clock) (*Verifier, *KeySet) {
	t.Helper()
	ks := NewKeySet(KeySetOptions{URL: is.JWKSURL(), Client: is.Client(), Cooldown: 10 * time.Second, Now: c.Now, Algs: []string{"RS256", "ES256"}})
	if err := ks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(VerifierOptions{Keys: ks, Issuer: is.URL, Audiences: []string{testResource}, Skew: 30 * time.Second, Now: c.Now})
	return v, ks
}

func TestVerifier(t *testing.T) {
	t.Parallel()
	k1 := tokentest.NewKey(t, "k1", 0)
	k2 := tokentest.NewKey(t, "k2", 1)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	now := c.Now()
	v, _ := newTestVerifier(t, is, c)

	with := func(mod func(m map[string]any)) map[string]any {
		m := is.Claims(testResource, "user_1", now)
		mod(m)
		return m
	}
	hs := func(claims map[string]any) string {
		// HS256 keyed with the RSA public key's bytes: the classic algorithm-confusion forgery.
		der := x509.MarshalPKCS1PublicKey(&k1.Private.PublicKey)
		return tokentest.SignWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: der}, "k1", claims)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	none := func(claims map[string]any) string {
		tok := k1.Sign(t, claims)
		parts := strings.Split(tok, ".")
		hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k1"}`))
		return hdr + "." + parts[1] + "."
	}
	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		payload := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(mustDecode(t, parts[1]), "user_1", "user_2", 1)))
		return parts[0] + "." + payload + "." + parts[2]
	}

	tests := []struct {
		name  string
		token string
		want  Reason // "" means accepted
	}{
		{"valid", k1.Sign(t, with(func(map[string]any) {})), ""},
		{"aud array", k1.Sign(t, with(func(m map[string]any) { m["aud"] = []string{"other", testResource} })), ""},
		{"within skew after exp", k1.Sign(t, with(func(m map[string]any) { m["exp"] = now.Add(-20 * time.Second).Unix() })), ""},
		{"within skew before nbf", k1.Sign(t, with(func(m map[string]any) { m["nbf"] = now.Add(20 * time.Second).Unix() })), ""},
		{"wrong issuer", k1.Sign(t, with(func(m map[string]any) { m["iss"] = is.URL + "/other" })), ReasonIssuer},
		{"issuer with trailing slash", k1.Sign(t, with(func(m map[string]any) { m["iss"] = is.URL + "/" })), ReasonIssuer},
		{"wrong audience", k1.Sign(t, with(func(m map[string]any) { m["aud"] = "client_01ABC" })), ReasonAudience},
		{"audience prefix", k1.Sign(t, with(func(m map[string]any) { m["aud"] = "https://mcp.example.com" })), ReasonAudience},
		{"no audience", k1.Sign(t, with(func(m map[string]any) { delete(m, "aud") })), ReasonAudience},
		{"expired", k1.Sign(t, with(func(m map[string]any) { m["exp"] = now.Add(-time.Minute).Unix() })), ReasonExpired},
		{"not yet valid", k1.Sign(t, with(func(m map[string]any) { m["nbf"] = now.Add(time.Minute).Unix() })), ReasonNotYetValid},
		{"missing exp", k1.Sign(t, with(func(m map[string]any) { delete(m, "exp") })), ReasonMissingClaim},
		{"missing sub", k1.Sign(t, with(func(m map[string]any) { delete(m, "sub") })), ReasonMissingClaim},
		{"exp not a number", k1.Sign(t, with(func(m map[string]any) { m["exp"] = "tomorrow" })), ReasonMalformed},
		{"alg none", none(with(func(map[string]any) {})), ReasonMalformed},
		{"HS256 with the public key", hs(with(func(map[string]any) {})), ReasonMalformed},
		{"bad signature", tamper(k1.Sign(t, with(func(map[string]any) {}))), ReasonSignature},
		{"signed by another key with the same kid", tokentest.Key{ID: "k1", Private: k2.Private}.Sign(t, with(func(map[string]any) {})), ReasonSignature},
		{"unknown kid", k2.Sign(t, with(func(map[string]any) {})), ReasonUnknownKey},
		{"ES256 key not in the set", tokentest.SignWith(t, jose.SigningKey{Algorithm: jose.ES256, Key: ec}, "k1", with(func(map[string]any) {})), ReasonSignature},
		{"not a JWT", "abc.def", ReasonMalformed},
		{"garbage", "Zm9v", ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: got %v, want success", err)
				}
				if p.Subject != "user_1" {
					t.Errorf("Subject: got %q, want user_1", p.Subject)
				}
				return
			}
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("Verify: got %v (%T), want an *AuthError with reason %s", err, err, tt.want)
			}
			if ae.Reason != tt.want {
				t.Errorf("reason: got %s, want %s (err %v)", ae.Reason, tt.want, err)
			}
		})
	}
}

func mustDecode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerifierAudienceErrorNamesTokenAudience(t *testing.T) {
	t.Parallel()
	k1 := tokentest.NewKey(t, "k1", 0)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	v, _ := newTestVerifier(t, is, c)
	claims := is.Claims(testResource, "user_1", c.Now())
	claims["aud"] = "client_01ENV"
	_, err := v.Verify(context.Background(), k1.Sign(t, claims))
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Reason != ReasonAudience {
		t.Fatalf("got %v, want wrong_audience", err)
	}
	if len(ae.TokenAudience) != 1 || ae.TokenAudience[0] != "client_01ENV" {
		t.Errorf("TokenAudience: got %q, want [client_01ENV]", ae.TokenAudience)
	}
}

func TestVerifierClaimsToIdentity(t *testing.T) {
	t.Parallel()
	k1 := tokentest.NewKey(t, "k1", 0)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	v, _ := newTestVerifier(t, is, c)
	claims := is.Claims(testResource, "user_1", c.Now())
	delete(claims, "scope")
	claims["scp"] = []string{"read", "write"}
	claims["role"] = "admin"
	claims["roles"] = []string{"admin", "member"}
	claims["permissions"] = []string{"posts:read"}
	claims["email"] = "ada@example.com"
	claims["name"] = "Ada\nLovelace"
	delete(claims, "client_id")
	claims["azp"] = "client_azp"
	p, err := v.Verify(context.Background(), k1.Sign(t, claims))
	if err != nil {
		t.Fatal(err)
	}
	id := p.Identity
	for _, c := range []struct{ name, got, want string }{
		{"UserID", id.UserID, "user_1"},
		{"Email", id.Email, "ada@example.com"},
		{"OrgID", id.OrgID, "org_1"},
		{"SessionID", id.SessionID, "session_1"},
		{"ClientID", id.ClientID, "client_azp"},
		{"Roles", strings.Join(id.Roles, ","), "admin,member"},
		{"Permissions", strings.Join(id.Permissions, ","), "posts:read"},
		{"Scopes", strings.Join(p.Scopes, " "), "read write"},
		{"X-Auth-Name header", p.hdr.Get("X-Auth-Name"), "Ada Lovelace"},
		{"X-Auth-Roles header", p.hdr.Get("X-Auth-Roles"), "admin,member"},
		{"X-Auth-Scopes header", p.hdr.Get("X-Auth-Scopes"), "read write"},
		{"X-Forwarded-Email header", p.hdr.Get("X-Forwarded-Email"), "ada@example.com"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

// TestPrincipalClaims: the verified claims as a map, decoded once per verified token and shared by its requests.
func TestPrincipalClaims(t *testing.T) {
	t.Parallel()
	k1 := tokentest.NewKey(t, "k1", 0)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	v, _ := newTestVerifier(t, is, c)
	claims := is.Claims(testResource, "user_1", c.Now())
	claims["groups"] = []string{"eng"}
	claims["email"] = "ada@example.com"
	tok := k1.Sign(t, claims)
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	m := p.Claims()
	if m["email"] != "ada@example.com" || m["sub"] != "user_1" || fmt.Sprint(m["groups"]) != "[eng]" || m["exp"] != float64(c.Now().Add(time.Hour).Unix()) {
		t.Fatalf("claims: got %v", m)
	}
	p2, _ := v.Verify(context.Background(), tok)
	if p2 != p || reflect.ValueOf(p2.Claims()).Pointer() != reflect.ValueOf(m).Pointer() {
		t.Error("the claims of one token are decoded again")
	}
	if got := (&Principal{}).Claims(); got == nil || len(got) != 0 {
		t.Errorf("no payload: got %v, want an empty map", got)
	}
}

func TestVerifierCacheAndKeyRotation(t *testing.T) {
	t.Parallel()
	k1 := tokentest.NewKey(t, "k1", 0)
	k2 := tokentest.NewKey(t, "k2", 1)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	v, ks := newTestVerifier(t, is, c)
	ctx := context.Background()
	tok1 := k1.Sign(t, is.Claims(testResource, "user_1", c.Now()))
	if _, err := v.Verify(ctx, tok1); err != nil {
		t.Fatal(err)
	}

	// Rotation: a token signed by a new key triggers one refetch and is accepted.
	is.SetKeys(k1, k2)
	tok2 := k2.Sign(t, is.Claims(testResource, "user_2", c.Now()))
	hits := is.JWKSHits.Load()
	if _, err := v.Verify(ctx, tok2); err != nil {
		t.Fatalf("token signed by the rotated-in key: %v", err)
	}
	if got := is.JWKSHits.Load() - hits; got != 1 {
		t.Errorf("JWKS fetches for a new kid: got %d, want 1", got)
	}

	// Unknown kids: one refetch once the cooldown since the last one has passed, then none within the cooldown.
	k3 := tokentest.Key{ID: "k3", Private: tokentest.NewKey(t, "", 2).Private}
	hits = is.JWKSHits.Load()
	if _, err := v.Verify(ctx, k3.Sign(t, is.Claims(testResource, "user_3", c.Now()))); err == nil {
		t.Fatal("token with an unknown kid accepted")
	}
	if got := is.JWKSHits.Load() - hits; got != 0 {
		t.Errorf("JWKS fetches for an unknown kid right after a refetch: got %d, want 0", got)
	}
	c.Add(11 * time.Second)
	hits = is.JWKSHits.Load()
	for range 5 {
		if _, err := v.Verify(ctx, k3.Sign(t, is.Claims(testResource, "user_3", c.Now()))); err == nil {
			t.Fatal("token with an unknown kid accepted")
		}
	}
	if got := is.JWKSHits.Load() - hits; got != 1 {
		t.Errorf("JWKS fetches for 5 unknown-kid tokens within the cooldown: got %d, want 1", got)
	}

	// JWKS outage: cached keys keep working, cached and uncached tokens alike.
	is.JWKSDown.Store(true)
	if err := ks.Refresh(ctx); err == nil {
		t.Fatal("Refresh during an outage: got nil error")
	}
	if _, err := v.Verify(ctx, tok1); err != nil {
		t.Errorf("cached token during a JWKS outage: %v", err)
	}
	if _, err := v.Verify(ctx, k1.Sign(t, is.Claims(testResource, "user_4", c.Now()))); err != nil {
		t.Errorf("new token signed by a known key during a JWKS outage: %v", err)
	}
	is.JWKSDown.Store(false)

	// Revocation: once k1 leaves the set, a token verified (and cached) under k1 stops working at once.
	is.SetKeys(k2)
	if err := ks.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok1); err == nil {
		t.Error("cached token signed by a removed key: accepted, want refused")
	}
	if _, err := v.Verify(ctx, tok2); err != nil {
		t.Errorf("token signed by the remaining key: %v", err)
	}

	// Expiry applies to cached tokens too.
	c.Add(2 * time.Hour)
	if _, err := v.Verify(ctx, tok2); err == nil {
		t.Error("cached token after its exp: accepted, want refused")
	}
}

func TestVerifierKeysNotLoaded(t *testing.T) {
	t.Parallel()
	k1 := tokentest.NewKey(t, "k1", 0)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	ks := NewKeySet(KeySetOptions{URL: is.JWKSURL(), Client: is.Client(), Cooldown: time.Second, Now: c.Now, Algs: []string{"RS256"}})
	v := NewVerifier(VerifierOptions{Keys: ks, Issuer: is.URL, Audiences: []string{testResource}, Now: c.Now})
	_, err := v.Verify(context.Background(), k1.Sign(t, is.Claims(testResource, "u", c.Now())))
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Reason != ReasonKeysUnavailable {
		t.Fatalf("got %v, want keys_unavailable", err)
	}
}

func TestCheckClaimsTable(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	num := func(t time.Time) *json.Number { n := json.Number(strconv.FormatInt(t.Unix(), 10)); return &n }
	rules := ClaimRules{Issuer: "https://iss", Audiences: []string{"a", "b"}, Skew: 10 * time.Second}
	tests := []struct {
		name string
		c    Claims
		want Reason
	}{
		{"ok", Claims{Issuer: "https://iss", Subject: "s", Audience: audience{"b"}, Expiry: num(now.Add(time.Minute))}, ""},
		{"exp exactly now+skew", Claims{Issuer: "https://iss", Subject: "s", Audience: audience{"a"}, Expiry: num(now.Add(-10 * time.Second))}, ReasonExpired},
		{"iss case differs", Claims{Issuer: "https://ISS", Subject: "s", Audience: audience{"a"}, Expiry: num(now.Add(time.Minute))}, ReasonIssuer},
		{"aud empty array", Claims{Issuer: "https://iss", Subject: "s", Audience: audience{}, Expiry: num(now.Add(time.Minute))}, ReasonAudience},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CheckClaims(&tt.c, rules, now)
			var got Reason
			var ae *AuthError
			if errors.As(err, &ae) {
				got = ae.Reason
			} else if err != nil {
				t.Fatalf("untyped error %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMissingScopes(t *testing.T) {
	t.Parallel()
	if got := MissingScopes([]string{"a", "b"}, []string{"b", "c", "d"}); strings.Join(got, " ") != "c d" {
		t.Errorf("got %q, want [c d]", got)
	}
	if got := MissingScopes(nil, nil); got != nil {
		t.Errorf("got %q, want nil", got)
	}
}

// countingKeys counts the signature checks a Verifier asks of its key set.
type countingKeys struct {
	keySource
	calls atomic.Int64
}

func (c *countingKeys) Verify(ctx context.Context, jwt string) ([]byte, error) {
	c.calls.Add(1)
	return c.keySource.Verify(ctx, jwt)
}

// TestVerifierFailingTokenVerifiedOnce: a failing token costs one signature check, whatever the reason, and an
// unknown kid one key set fetch (with no cooldown to hide a second).
func TestVerifierFailingTokenVerifiedOnce(t *testing.T) {
	t.Parallel()
	k1, k2 := tokentest.NewKey(t, "k1", 0), tokentest.NewKey(t, "k2", 1)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	now := c.Now()
	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		payload := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(mustDecode(t, parts[1]), "user_1", "user_2", 1)))
		return parts[0] + "." + payload + "." + parts[2]
	}
	with := func(mod func(m map[string]any)) map[string]any {
		m := is.Claims(testResource, "user_1", now)
		mod(m)
		return m
	}
	tests := []struct {
		name      string
		token     string
		want      Reason
		wantFetch int64
	}{
		{"bad signature", tamper(k1.Sign(t, with(func(map[string]any) {}))), ReasonSignature, 0},
		{"another key with the same kid", tokentest.Key{ID: "k1", Private: k2.Private}.Sign(t, with(func(map[string]any) {})), ReasonSignature, 0},
		{"unknown kid", k2.Sign(t, with(func(map[string]any) {})), ReasonUnknownKey, 1},
		{"expired", k1.Sign(t, with(func(m map[string]any) { m["exp"] = now.Add(-time.Hour).Unix() })), ReasonExpired, 0},
		{"wrong audience", k1.Sign(t, with(func(m map[string]any) { m["aud"] = "other" })), ReasonAudience, 0},
		{"not a JWT", "abc.def", ReasonMalformed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ks := NewKeySet(KeySetOptions{URL: is.JWKSURL(), Client: is.Client(), Cooldown: 0, Now: c.Now, Algs: []string{"RS256"}})
			if err := ks.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			v := NewVerifier(VerifierOptions{Keys: ks, Issuer: is.URL, Audiences: []string{testResource}, Skew: time.Second, Now: c.Now})
			counted := &countingKeys{keySource: ks}
			v.keys = counted
			var fetches atomic.Int64
			ks.onFetch = func(error) { fetches.Add(1) }
			wantReason(t, tt.name, verifyErr(v, tt.token), tt.want)
			if got := counted.calls.Load(); got != 1 {
				t.Errorf("signature checks: got %d, want 1", got)
			}
			if got := fetches.Load(); got != tt.wantFetch {
				t.Errorf("key set fetches: got %d, want %d", got, tt.wantFetch)
			}
		})
	}
}

// TestVerifierEmailVerified: an e-mail address is forwarded unless the token says it is not verified.
func TestVerifierEmailVerified(t *testing.T) {
	t.Parallel()
	k1 := tokentest.NewKey(t, "k1", 0)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	v, _ := newTestVerifier(t, is, c)
	tests := []struct {
		name     string
		verified any // nil: claim absent
		want     bool
	}{
		{"verified", true, true},
		{"verified as a string", "true", true},
		{"no email_verified claim (AuthKit access tokens)", nil, true},
		{"not verified", false, false},
		{"not verified as a string", "false", false},
		{"null", json.RawMessage("null"), false},
		{"a number", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			claims := is.Claims(testResource, "user_1", c.Now())
			claims["email"] = "ceo@victim-corp.example"
			claims["jti"] = tt.name // a distinct token per case
			if tt.verified != nil {
				claims["email_verified"] = tt.verified
			}
			p, err := v.Verify(context.Background(), k1.Sign(t, claims))
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if tt.want {
				want = "ceo@victim-corp.example"
			}
			for _, got := range []struct{ name, v string }{
				{"Identity.Email", p.Identity.Email},
				{"X-Auth-Email", p.hdr.Get("X-Auth-Email")},
				{"X-Forwarded-Email", p.hdr.Get("X-Forwarded-Email")},
			} {
				if got.v != want {
					t.Errorf("%s: got %q, want %q", got.name, got.v, want)
				}
			}
			if _, ok := p.hdr["X-Auth-Email"]; ok != tt.want {
				t.Errorf("X-Auth-Email present: got %t, want %t", ok, tt.want)
			}
		})
	}
}

// TestVerifierListItems: a role, permission or scope that would not reach the upstream as one unchanged item makes the
// token invalid (invalid_claim); one that would is forwarded as it is.
func TestVerifierListItems(t *testing.T) {
	t.Parallel()
	k1 := tokentest.NewKey(t, "k1", 0)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	v, _ := newTestVerifier(t, is, c)
	tests := []struct {
		name      string
		claims    map[string]any
		want      Reason // "" means accepted
		wantRoles string // X-Auth-Roles when accepted
		wantPerms string
		wantScope string
	}{
		{"role with a comma", map[string]any{"role": "x,admin"}, ReasonInvalidClaim, "", "", ""},
		{"roles item with a comma", map[string]any{"roles": []string{"member", "x,admin"}}, ReasonInvalidClaim, "", "", ""},
		{"permission with a comma", map[string]any{"permissions": []string{"posts:read,posts:delete"}}, ReasonInvalidClaim, "", "", ""},
		{"scp item with a space", map[string]any{"scope": nil, "scp": []string{"read", "read admin"}}, ReasonInvalidClaim, "", "", ""},
		{"scp item with a no-break space", map[string]any{"scope": nil, "scp": []string{"read\u00a0admin"}}, ReasonInvalidClaim, "", "", ""},
		{"scp item with a tab", map[string]any{"scope": nil, "scp": []string{"read\tadmin"}}, ReasonInvalidClaim, "", "", ""},
		{"role with a leading space", map[string]any{"roles": []string{" admin"}}, ReasonInvalidClaim, "", "", ""},
		{"role with a trailing space", map[string]any{"role": "admin "}, ReasonInvalidClaim, "", "", ""},
		{"role with a line feed", map[string]any{"roles": []string{"x\nadmin"}}, ReasonInvalidClaim, "", "", ""},
		{"role with a space inside", map[string]any{"role": "org admin"}, "", "org admin", "", "openid email"},
		{"roles and permissions", map[string]any{"role": "admin", "roles": []string{"admin", "member"}, "permissions": []string{"posts:read", "posts:write"}},
			"", "admin,member", "posts:read,posts:write", "openid email"},
		{"empty items dropped", map[string]any{"roles": []string{"", "member"}, "permissions": []string{""}, "scope": nil, "scp": []string{"", "read"}},
			"", "member", "", "read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			claims := is.Claims(testResource, "user_1", c.Now())
			claims["jti"] = tt.name
			for k, val := range tt.claims {
				if val == nil {
					delete(claims, k)
				} else {
					claims[k] = val
				}
			}
			p, err := v.Verify(context.Background(), k1.Sign(t, claims))
			if tt.want != "" {
				wantReason(t, tt.name, err, tt.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range []struct{ name, want string }{
				{"X-Auth-Roles", tt.wantRoles}, {"X-Auth-Permissions", tt.wantPerms}, {"X-Auth-Scopes", tt.wantScope},
			} {
				if got := p.hdr.Get(h.name); got != h.want {
					t.Errorf("%s: got %q, want %q", h.name, got, h.want)
				}
			}
		})
	}
}

func TestListItemOK(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		item string
		sep  rune
		want bool
	}{
		{"admin", ',', true},
		{"org admin", ',', true},
		{"café", ',', true},
		{"a,b", ',', false},
		{" a", ',', false},
		{"a\u2003", ',', false},
		{"a\x7fb", ',', false},
		{"a,b", ' ', true},
		{"a b", ' ', false},
		{"a\u0085b", ' ', false},
		{"mcp:tools", ' ', true},
	} {
		if got := listItemOK(tt.item, tt.sep); got != tt.want {
			t.Errorf("listItemOK(%q, %q): got %t, want %t", tt.item, tt.sep, got, tt.want)
		}
	}
}
