package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"

	"github.com/go-jose/go-jose/v4"
)

// Set-up (h): the gateway verifying every token by introspection (RFC 7662) at the bench issuer, with the answers
// cached, beside (c), which verifies the same token as a JWT from its cache. Every token is introspected
// (GATEWAY_TOKEN_VALIDATION=introspection), so the bench token, a JWT, stands for an opaque one; the per-address
// limit is on, as by default, since with introspection it is consulted before each token not cached.
func init() {
	variants = append(variants, variant{name: "h gateway + introspection", env: introspectionEnv})
}

// The bench gateway's credentials at the bench issuer's introspection endpoint.
const (
	benchIntrospectionClient = "bench-gateway"
	benchIntrospectionSecret = "bench-introspection-secret"
)

// introspectionEnv is set-up (h)'s environment.
func introspectionEnv(context.Context, string) ([]string, func(), error) {
	return []string{
		"GATEWAY_TOKEN_VALIDATION=introspection",
		"GATEWAY_INTROSPECTION_CLIENT_ID=" + benchIntrospectionClient,
		"GATEWAY_INTROSPECTION_CLIENT_SECRET=" + benchIntrospectionSecret,
		"GATEWAY_RATE_LIMIT_ANONYMOUS=20/s,burst=200",
	}, func() {}, nil
}

// serveIntrospection is the bench issuer's introspection endpoint: for the client above (Basic), a token it signed is
// active with its claims; anything else is inactive.
func (is *issuer) serveIntrospection(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(id), []byte(benchIntrospectionClient)) != 1 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(benchIntrospectionSecret)) != 1 {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	answer := map[string]any{"active": false}
	if jws, err := jose.ParseSignedCompact(r.PostFormValue("token"), []jose.SignatureAlgorithm{jose.RS256}); err == nil {
		if payload, err := jws.Verify(&is.key.PublicKey); err == nil && json.Unmarshal(payload, &answer) == nil {
			answer["active"], answer["token_type"] = true, "Bearer"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}
