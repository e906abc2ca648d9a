// Package token verifies OAuth access tokens for the gateway: it parses the bearer header (BearerToken), checks
// signatures against the authorization server's key set (KeySet, the only signature check), checks claims
// (CheckClaims) and turns a verified token into a Principal with the identity headers to forward. Failures are
// *AuthError values whose Reason is a fixed label. It has no HTTP handlers: mapping a failure to a response is the
// caller's.
package token

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// Reason is a fixed, bounded label for why a request was not authenticated. It is used in metrics and logs.
// Callers that refuse requests for reasons of their own (a session, an origin) define further constants of this type.
type Reason string

// The reasons a bearer token can fail.
const (
	ReasonNoToken         Reason = "no_token"
	ReasonMalformed       Reason = "malformed"      // not a well-formed bearer header or JWT, or an algorithm off the allow-list
	ReasonSignature       Reason = "bad_signature"  // no key verifies the signature
	ReasonUnknownKey      Reason = "unknown_key"    // kid not in the key set, even after a refetch
	ReasonExpired         Reason = "expired"        // exp in the past (beyond the clock skew)
	ReasonNotYetValid     Reason = "not_yet_valid"  // nbf in the future (beyond the clock skew)
	ReasonIssuer          Reason = "wrong_issuer"   // iss differs from the configured issuer
	ReasonAudience        Reason = "wrong_audience" // aud names none of the accepted audiences
	ReasonMissingClaim    Reason = "missing_claim"  // exp or sub absent
	ReasonInvalidClaim    Reason = "invalid_claim"  // a role, permission or scope that would not survive its header
	ReasonScope           Reason = "insufficient_scope"
	ReasonKeysUnavailable Reason = "keys_unavailable" // the key set has not been loaded yet
)

// AuthError is an authentication failure: Reason says which check failed, Err the cause (for logs only), and
// TokenAudience the aud the token carried when Reason is ReasonAudience.
type AuthError struct {
	Reason        Reason
	Err           error
	TokenAudience []string
}

// Error returns the reason, followed by the cause when there is one.
func (e *AuthError) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

func authErr(r Reason, format string, args ...any) *AuthError {
	return &AuthError{Reason: r, Err: fmt.Errorf(format, args...)}
}

// Claims are the access-token claims the gateway reads.
type Claims struct {
	Issuer    string       `json:"iss"`
	Subject   string       `json:"sub"`
	Audience  audience     `json:"aud"`
	Expiry    *json.Number `json:"exp"`
	NotBefore *json.Number `json:"nbf"`
	Scope     string       `json:"scope"`
	Scp       stringList   `json:"scp"`
	Email     string       `json:"email"`
	// EmailVerified is email_verified. When present and not true, the e-mail address is not forwarded.
	EmailVerified optionalBool    `json:"email_verified"`
	Name          string          `json:"name"`
	OrgID         string          `json:"org_id"`
	SessionID     string          `json:"sid"`
	ClientID      string          `json:"client_id"`
	AZP           string          `json:"azp"`
	Role          string          `json:"role"`
	Roles         stringList      `json:"roles"`
	Permissions   stringList      `json:"permissions"`
	Extra         json.RawMessage `json:"-"`
}

// audience is aud as a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("aud must be a string or an array of strings")
	}
	*a = l
	return nil
}

// optionalBool is a boolean claim that may be absent. Some providers send "true" and "false" as strings; both forms
// are read, and any other value (null included) counts as present and false.
type optionalBool struct {
	Present, Value bool
}

func (b *optionalBool) UnmarshalJSON(data []byte) error {
	b.Present = true
	switch string(data) {
	case "true", `"true"`:
		b.Value = true
	default:
		b.Value = false
	}
	return nil
}

// stringList is a claim that may be a string (space-separated) or an array of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = strings.Fields(s)
		return nil
	}
	var v []string
	if err := json.Unmarshal(b, &v); err != nil {
		return errors.New("must be a string or an array of strings")
	}
	*l = v
	return nil
}

// Principal is the verified caller of a request. The Verifier shares one Principal among the requests that carry the
// same token: it is read-only.
type Principal struct {
	Subject  string
	Scopes   []string
	Audience []string
	Expiry   time.Time
	Identity identity.Identity
	// hdr holds the identity headers, built once per verified token and shared, read-only, by its requests.
	hdr http.Header

	claimsOnce sync.Once
	claims     map[string]any
}

// Headers returns the identity headers to forward for p (identity.Identity.Set of p.Identity), built once when the
// token was verified. The map is shared by every request with the same token: callers copy its entries and never
// modify it or its values.
func (p *Principal) Headers() http.Header { return p.hdr }

// Claims returns the verified token's claims (Identity.Claims) decoded as JSON, numbers as float64, for rules that
// read any claim. They are decoded once per verified token, on first use, and shared by every request with the same
// token: callers never modify the map or its values. A payload that does not decode gives an empty map.
func (p *Principal) Claims() map[string]any {
	p.claimsOnce.Do(func() {
		if json.Unmarshal(p.Identity.Claims, &p.claims) != nil || p.claims == nil {
			p.claims = map[string]any{}
		}
	})
	return p.claims
}

// ClaimRules are what CheckClaims enforces.
type ClaimRules struct {
	Issuer    string
	Audiences []string
	Skew      time.Duration
}

// CheckClaims applies the token rules of the MCP authorization specification to claims that already passed signature
// verification: iss equal to the issuer, exp and sub present, exp and nbf honoured with the skew, and aud containing an
// accepted audience. It returns the expiry.
func CheckClaims(c *Claims, rules ClaimRules, now time.Time) (time.Time, error) {
	if c.Issuer != rules.Issuer {
		return time.Time{}, authErr(ReasonIssuer, "token issuer %q is not %q", c.Issuer, rules.Issuer)
	}
	if c.Subject == "" {
		return time.Time{}, authErr(ReasonMissingClaim, "token has no sub")
	}
	if c.Expiry == nil {
		return time.Time{}, authErr(ReasonMissingClaim, "token has no exp")
	}
	exp, err := numericDate(*c.Expiry)
	if err != nil {
		return time.Time{}, authErr(ReasonMalformed, "exp: %w", err)
	}
	if !now.Before(exp.Add(rules.Skew)) {
		return time.Time{}, authErr(ReasonExpired, "token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if c.NotBefore != nil {
		nbf, err := numericDate(*c.NotBefore)
		if err != nil {
			return time.Time{}, authErr(ReasonMalformed, "nbf: %w", err)
		}
		if now.Add(rules.Skew).Before(nbf) {
			return time.Time{}, authErr(ReasonNotYetValid, "token not valid before %s", nbf.UTC().Format(time.RFC3339))
		}
	}
	for _, a := range c.Audience {
		if slices.Contains(rules.Audiences, a) {
			return exp, nil
		}
	}
	return time.Time{}, &AuthError{Reason: ReasonAudience, TokenAudience: slices.Clone([]string(c.Audience)),
		Err: fmt.Errorf("token audience %q contains none of %q", []string(c.Audience), rules.Audiences)}
}

func numericDate(n json.Number) (time.Time, error) {
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, errors.New("not a number")
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
}

// MissingScopes returns the required scopes that have is missing, or nil.
func MissingScopes(have, required []string) []string {
	var missing []string
	for _, s := range required {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	return missing
}

// principal builds the Principal for verified claims; raw is the claims JSON as signed.
//
// It forwards only what the token proves: an e-mail address whose email_verified claim is present and not true is
// left out (a token without email_verified, like AuthKit's access tokens, keeps its address: the authorization server
// chose to assert it). A role, permission or scope that would not reach the upstream as the one item it is (see
// listItemOK) makes the whole token invalid (ReasonInvalidClaim); empty items are dropped.
func principal(c *Claims, raw []byte, exp time.Time) (*Principal, error) {
	scopes := strings.Fields(c.Scope)
	if len(scopes) == 0 {
		scopes = slices.Clone([]string(c.Scp))
	}
	var roles []string
	if c.Role != "" {
		roles = append(roles, c.Role)
	}
	for _, r := range c.Roles {
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	var err error
	if scopes, err = forwardable("scope", scopes, ' '); err != nil {
		return nil, err
	}
	if roles, err = forwardable("role", roles, ','); err != nil {
		return nil, err
	}
	perms, err := forwardable("permissions", slices.Clone([]string(c.Permissions)), ',')
	if err != nil {
		return nil, err
	}
	email := c.Email
	if c.EmailVerified.Present && !c.EmailVerified.Value {
		email = ""
	}
	p := &Principal{
		Subject:  c.Subject,
		Scopes:   scopes,
		Audience: c.Audience,
		Expiry:   exp,
		Identity: identity.Identity{
			UserID:      c.Subject,
			Email:       email,
			Name:        c.Name,
			OrgID:       c.OrgID,
			SessionID:   c.SessionID,
			ClientID:    cmp.Or(c.ClientID, c.AZP),
			Roles:       roles,
			Permissions: perms,
			Scopes:      scopes,
			Claims:      raw,
		},
		hdr: make(http.Header, 12),
	}
	p.Identity.Set(p.hdr)
	return p, nil
}

// forwardable drops the empty items of list, which it may modify, and refuses it (ReasonInvalidClaim) if an item is
// not listItemOK with sep. claim names the claim in the error; item values are not logged.
func forwardable(claim string, list []string, sep rune) ([]string, error) {
	out := list[:0]
	for i, item := range list {
		if item == "" {
			continue
		}
		if !listItemOK(item, sep) {
			return nil, authErr(ReasonInvalidClaim, "%s item %d contains %q, white space at an end, or a control character", claim, i, sep)
		}
		out = append(out, item)
	}
	return out, nil
}

// listItemOK reports whether item reaches the upstream as exactly one unchanged item of a header list separated by
// sep: it contains no sep and no control character, and no white space at either end (which readers trim). For the
// space-separated scope list (sep ' '), it contains no white space at all (readers split on any).
func listItemOK(item string, sep rune) bool {
	for i, r := range item {
		if r < 0x20 || r == 0x7f || r == sep {
			return false
		}
		if unicode.IsSpace(r) && (sep == ' ' || i == 0 || i+utf8.RuneLen(r) == len(item)) {
			return false
		}
	}
	return true
}

// keySource checks token signatures: a *KeySet. Tests count its calls.
type keySource interface {
	Verify(ctx context.Context, jwt string) ([]byte, error)
	Generation() uint64
}

// Verifier verifies access tokens: the signature with the KeySet, which is the only signature check (it owns the
// algorithm allow-list and tells with a typed error why a signature failed), then every claim with CheckClaims.
// Verified tokens are cached, keyed by their SHA-256, until they expire or the key set changes.
type Verifier struct {
	keys  keySource
	rules ClaimRules
	now   func() time.Time
	cache tokenCache
	// extra adds the headers of GATEWAY_CLAIM_HEADERS to each principal's; nil: none.
	extra *identity.ClaimHeaders
}

// VerifierOptions configures NewVerifier.
type VerifierOptions struct {
	Keys      *KeySet          // checks the signatures; required
	Issuer    string           // the iss every token must carry, compared byte for byte
	Audiences []string         // aud must contain one of them; none: every token is refused
	Skew      time.Duration    // tolerance on exp and nbf; zero: none
	Now       func() time.Time // nil: time.Now
	CacheSize int              // verified tokens kept; 0: 10000
	// ClaimHeaders adds headers taken from claims to every principal's Headers; a token with a claim it cannot
	// forward is refused (ReasonInvalidClaim). nil: none.
	ClaimHeaders *identity.ClaimHeaders
}

// NewVerifier returns a Verifier.
func NewVerifier(o VerifierOptions) *Verifier {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	size := o.CacheSize
	if size <= 0 {
		size = 10000
	}
	return &Verifier{
		keys:  o.Keys,
		rules: ClaimRules{Issuer: o.Issuer, Audiences: o.Audiences, Skew: o.Skew},
		now:   now,
		cache: tokenCache{max: size, m: make(map[[32]byte]cacheEntry)},
		extra: o.ClaimHeaders,
	}
}

// Verify returns the principal of a raw JWT, or an *AuthError. A token is verified once: a failure's reason comes from
// the typed error of the step that failed.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	// The token's bytes are hashed in place: Sum256 does not keep them.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	now := v.now()
	gen := v.keys.Generation()
	if p := v.cache.get(key, gen, now); p != nil {
		return p, nil
	}
	payload, err := v.keys.Verify(ctx, raw)
	if err != nil {
		return nil, signatureError(err)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, authErr(ReasonMalformed, "claims: %w", err)
	}
	exp, err := CheckClaims(&c, v.rules, now)
	if err != nil {
		return nil, err
	}
	p, err := principal(&c, payload, exp)
	if err != nil {
		return nil, err
	}
	if err := v.extra.Set(p.hdr, payload); err != nil {
		return nil, &AuthError{Reason: ReasonInvalidClaim, Err: err}
	}
	v.cache.put(key, cacheEntry{p: p, until: exp.Add(v.rules.Skew), gen: gen}, now)
	return p, nil
}

// signatureError maps a key set error to its reason.
func signatureError(err error) *AuthError {
	r := ReasonMalformed
	switch {
	case errors.Is(err, ErrKeysUnavailable):
		r = ReasonKeysUnavailable
	case errors.Is(err, ErrUnknownKey):
		r = ReasonUnknownKey
	case errors.Is(err, ErrBadSignature):
		r = ReasonSignature
	}
	return &AuthError{Reason: r, Err: err}
}

// tokenCache holds verified principals by token hash. It is bounded: when full, expired entries are dropped, then
// arbitrary ones (map order is random).
type tokenCache struct {
	mu  sync.RWMutex
	max int
	m   map[[32]byte]cacheEntry
}

type cacheEntry struct {
	p     *Principal
	until time.Time
	gen   uint64
}

func (c *tokenCache) get(k [32]byte, gen uint64, now time.Time) *Principal {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || e.gen != gen || !now.Before(e.until) {
		return nil
	}
	return e.p
}

func (c *tokenCache) put(k [32]byte, e cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, old := range c.m {
			if old.gen != e.gen || !now.Before(old.until) {
				delete(c.m, key)
			}
		}
		for key := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = e
}
