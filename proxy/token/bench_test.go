package token

import (
	"context"
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
)

func BenchmarkParseBearer(b *testing.B) {
	h := "Bearer " + strings.Repeat("abcdefghij", 80)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseBearer(h); err != nil {
			b.Fatal(err)
		}
	}
}

func benchVerifier(b *testing.B) (*Verifier, *tokentest.Issuer, tokentest.Key, *tokentest.Clock) {
	k := tokentest.NewKey(b, "k1", 0)
	is := tokentest.NewIssuer(b, k)
	c := tokentest.NewClock()
	ks := NewKeySet(KeySetOptions{URL: is.JWKSURL(), Client: is.Client(), Cooldown: 10, Now: c.Now, Algs: []string{"RS256"}})
	if err := ks.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	v := NewVerifier(VerifierOptions{Keys: ks, Issuer: is.URL, Audiences: []string{testResource}, Skew: 30e9, Now: c.Now})
	return v, is, k, c
}

// BenchmarkVerifyWarm is the per-request cost of a token seen before: a hash and a cache lookup.
func BenchmarkVerifyWarm(b *testing.B) {
	v, is, k, c := benchVerifier(b)
	tok := k.Sign(b, is.Claims(testResource, "user_1", c.Now()))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCold is the cost of a token seen for the first time: parse, RSA-2048 verify, claims.
func BenchmarkVerifyCold(b *testing.B) {
	v, is, k, c := benchVerifier(b)
	tok := k.Sign(b, is.Claims(testResource, "user_1", c.Now()))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		v.cache = tokenCache{max: 10, m: make(map[[32]byte]cacheEntry)}
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssuersWarm is the per-request cost of a token seen before, through Issuers as the gateway verifies: a JWT
// found in its issuer's cache, beside an opaque token whose introspection answer is cached (and, with the per-address
// limit on, the look-up Introspects makes before it), for one and two issuers.
func BenchmarkIssuersWarm(b *testing.B) {
	v, is, k, c := benchVerifier(b)
	v2, _, _, _ := benchVerifier(b)
	v2.rules.Issuer = is.URL + "/second"
	in := NewIntrospector(IntrospectorOptions{
		Endpoint: func() (string, error) { return is.URL + tokentest.IntrospectionPath, nil }, Client: is.Client(),
		ClientID: tokentest.IntrospectionClientID, ClientSecret: tokentest.IntrospectionClientSecret,
		Issuer: is.URL, Audiences: []string{testResource}, Now: c.Now,
	})
	claims := is.Claims(testResource, "user_1", c.Now())
	jwt, opaque := k.Sign(b, claims), is.Opaque(claims)
	ctx := context.Background()
	for _, bc := range []struct {
		name      string
		issuers   *Issuers
		tok       string
		introspec bool
	}{
		{"jwt", NewIssuers([]*Verifier{v}, in, ValidateAuto), jwt, false},
		{"jwt of the second of two issuers", NewIssuers([]*Verifier{v2, v}, in, ValidateAuto), jwt, false},
		{"opaque, introspected", NewIssuers([]*Verifier{v}, in, ValidateAuto), opaque, false},
		{"opaque, introspected, limit consulted", NewIssuers([]*Verifier{v}, in, ValidateAuto), opaque, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if _, err := bc.issuers.Verify(ctx, bc.tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if bc.introspec && bc.issuers.Introspects(bc.tok) {
					b.Fatal("a cached token would be introspected")
				}
				if _, err := bc.issuers.Verify(ctx, bc.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
