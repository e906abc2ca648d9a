package token

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Validation says how tokens are verified.
type Validation int

// The ways of verifying tokens.
const (
	// ValidateJWT verifies every token as a JWT signed by its issuer; any other token is malformed.
	ValidateJWT Validation = iota
	// ValidateAuto verifies a JWT as ValidateJWT does and introspects any other token.
	ValidateAuto
	// ValidateIntrospection introspects every token, JWTs included.
	ValidateIntrospection
)

// Issuers verifies the tokens of one or more issuers. A JWT is routed by its iss, read before its signature is
// checked, to the Verifier of that issuer, which checks it with that issuer's keys and audiences only: a token never
// reaches another issuer's keys, and an iss that names no configured issuer is refused (ReasonIssuer) without any
// network call. A token that is not a JWT (IsJWT) goes to the Introspector, when there is one. Verified tokens are
// found in the caches of the verifiers with one hash.
type Issuers struct {
	list       []*Verifier
	byIssuer   map[string]*Verifier
	introspect *Introspector
	mode       Validation
	now        func() time.Time
}

// NewIssuers returns an Issuers over verifiers, one per issuer (at least one), in the order of configuration. in is
// the introspector, nil when tokens are not introspected; with mode ValidateJWT it is not used.
func NewIssuers(verifiers []*Verifier, in *Introspector, mode Validation) *Issuers {
	is := &Issuers{list: verifiers, byIssuer: map[string]*Verifier{}, introspect: in, mode: mode, now: time.Now}
	if len(verifiers) > 0 {
		is.now = verifiers[0].now
	}
	for _, v := range verifiers {
		is.byIssuer[v.rules.Issuer] = v
	}
	if in == nil && mode != ValidateJWT {
		is.mode = ValidateJWT
	}
	return is
}

// Verify returns the principal of raw, or an *AuthError.
func (is *Issuers) Verify(ctx context.Context, raw string) (*Principal, error) {
	key := tokenKey(raw)
	if is.mode == ValidateIntrospection {
		return is.introspect.verify(ctx, key, raw)
	}
	now := is.now()
	for _, v := range is.list {
		if p := v.cached(key, now); p != nil {
			return p, nil
		}
	}
	if !IsJWT(raw) {
		if is.mode == ValidateAuto {
			return is.introspect.verify(ctx, key, raw)
		}
		return nil, authErr(ReasonMalformed, "not a JWT, and tokens are not introspected")
	}
	v := is.list[0]
	if len(is.list) > 1 {
		iss, err := unverifiedIssuer(raw)
		if err != nil {
			return nil, err
		}
		if v = is.byIssuer[iss]; v == nil {
			return nil, authErr(ReasonIssuer, "token issuer %q is none of the configured issuers", iss)
		}
	}
	return v.verify(ctx, key, raw, now)
}

// Introspects reports whether verifying raw would ask the introspection endpoint: it would be introspected, and no
// answer about it is cached. Callers use it to count such a token against a limit before it costs a call.
func (is *Issuers) Introspects(raw string) bool {
	switch is.mode {
	case ValidateJWT:
		return false
	case ValidateAuto:
		if strings.Count(raw, ".") == 2 && IsJWT(raw) {
			return false
		}
	}
	key, now := tokenKey(raw), is.introspect.now()
	if _, ok := is.introspect.ok.get(key, 0, now); ok {
		return false
	}
	_, ok := is.introspect.refused.get(key, 0, now)
	return !ok
}

// IsJWT reports whether raw has the shape of a compact JWS: three base64url parts, the first a JSON object. It checks
// no signature; a token that is not one is opaque, for introspection.
func IsJWT(raw string) bool {
	head, rest, ok := strings.Cut(raw, ".")
	if !ok || strings.Count(rest, ".") != 1 || head == "" || len(head) > 4096 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	return err == nil && json.Valid(b) && bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("{"))
}

// unverifiedIssuer returns the iss of a JWS's payload, read without checking the signature: it only chooses whose keys
// check it.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.SplitN(raw, ".", 3)
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", authErr(ReasonMalformed, "payload: %w", err)
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", authErr(ReasonMalformed, "claims: %w", err)
	}
	return c.Issuer, nil
}
