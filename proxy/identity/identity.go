// Package identity is the contract between the gateway and the MCP server behind it: the headers that carry a verified
// user's identity, how inbound copies of them are removed, and the optional signature that lets the upstream check that
// the gateway set them.
//
// It depends on the standard library only, so an upstream written in Go can import it without pulling in the gateway.
package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names set by the gateway. A header is absent when the verified token has no such claim.
const (
	HeaderUserID      = "X-Auth-User-Id"     // sub
	HeaderEmail       = "X-Auth-Email"       // email
	HeaderName        = "X-Auth-Name"        // name
	HeaderOrgID       = "X-Auth-Org-Id"      // org_id
	HeaderSessionID   = "X-Auth-Session-Id"  // sid
	HeaderClientID    = "X-Auth-Client-Id"   // client_id, else azp
	HeaderRoles       = "X-Auth-Roles"       // role ∪ roles, comma-separated
	HeaderPermissions = "X-Auth-Permissions" // permissions, comma-separated
	HeaderScopes      = "X-Auth-Scopes"      // scope or scp, space-separated
	HeaderClaims      = "X-Auth-Claims"      // base64url (unpadded) of the token's claims JSON
	HeaderSignature   = "X-Auth-Signature"   // t=<unix seconds>,v1=<base64url HMAC-SHA256>, when a secret is configured

	// HeaderForwardedUser and HeaderForwardedEmail repeat sub and email under oauth2-proxy's names.
	HeaderForwardedUser  = "X-Forwarded-User"
	HeaderForwardedEmail = "X-Forwarded-Email"
)

// signed lists, in signing order, every header the signature covers.
var signed = [...]string{
	HeaderUserID, HeaderEmail, HeaderName, HeaderOrgID, HeaderSessionID, HeaderClientID,
	HeaderRoles, HeaderPermissions, HeaderScopes, HeaderClaims, HeaderForwardedUser, HeaderForwardedEmail,
}

// Identity is what the gateway knows about the caller of one request, taken from verified token claims only.
type Identity struct {
	UserID      string
	Email       string
	Name        string
	OrgID       string
	SessionID   string
	ClientID    string
	Roles       []string
	Permissions []string
	Scopes      []string
	// Claims is the token's claims JSON, as verified.
	Claims []byte
}

// Set writes id into h, replacing any earlier values. Empty fields leave their header absent.
// Call Strip first: Set does not remove headers it does not write.
func (id *Identity) Set(h http.Header) {
	set := func(name, v string) {
		if v = clean(v); v != "" {
			h[name] = []string{v}
		} else {
			delete(h, name)
		}
	}
	set(HeaderUserID, id.UserID)
	set(HeaderEmail, id.Email)
	set(HeaderName, id.Name)
	set(HeaderOrgID, id.OrgID)
	set(HeaderSessionID, id.SessionID)
	set(HeaderClientID, id.ClientID)
	set(HeaderRoles, strings.Join(id.Roles, ","))
	set(HeaderPermissions, strings.Join(id.Permissions, ","))
	set(HeaderScopes, strings.Join(id.Scopes, " "))
	if len(id.Claims) > 0 {
		h[HeaderClaims] = []string{base64.RawURLEncoding.EncodeToString(id.Claims)}
	} else {
		delete(h, HeaderClaims)
	}
	set(HeaderForwardedUser, id.UserID)
	set(HeaderForwardedEmail, id.Email)
}

// clean replaces control characters, which cannot travel in a header value, with spaces and trims the result.
func clean(v string) string {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return strings.TrimSpace(strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return ' '
				}
				return r
			}, v))
		}
	}
	return strings.TrimSpace(v)
}

// ErrNoIdentity reports a request that carries no gateway identity.
var ErrNoIdentity = errors.New("no gateway identity on the request")

// FromHeader reads the identity the gateway set on a request. It does not check the signature: call Verify for that.
func FromHeader(h http.Header) (Identity, error) {
	id := Identity{
		UserID:      h.Get(HeaderUserID),
		Email:       h.Get(HeaderEmail),
		Name:        h.Get(HeaderName),
		OrgID:       h.Get(HeaderOrgID),
		SessionID:   h.Get(HeaderSessionID),
		ClientID:    h.Get(HeaderClientID),
		Roles:       split(h.Get(HeaderRoles), ","),
		Permissions: split(h.Get(HeaderPermissions), ","),
		Scopes:      strings.Fields(h.Get(HeaderScopes)),
	}
	if id.UserID == "" {
		return Identity{}, ErrNoIdentity
	}
	if c := h.Get(HeaderClaims); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			return Identity{}, fmt.Errorf("decode %s: %w", HeaderClaims, err)
		}
		id.Claims = b
	}
	return id, nil
}

func split(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// IsIdentityHeader reports whether name is one a client must never be allowed to send to the upstream: anything named
// X-Auth-* (which covers oauth2-proxy's X-Auth-Request-*) and oauth2-proxy's X-Forwarded-User, -Email, -Groups,
// -Preferred-Username and -Access-Token, in any letter case and with '_' in place of '-' (which PHP, WSGI and CGI
// upstreams fold into the same variable).
func IsIdentityHeader(name string) bool {
	if len(name) < 7 {
		return false
	}
	if foldEqual(name[:7], "x-auth-") {
		return true
	}
	switch len(name) {
	case len("x-forwarded-user"):
		return foldEqual(name, "x-forwarded-user")
	case len("x-forwarded-email"):
		return foldEqual(name, "x-forwarded-email")
	case len("x-forwarded-groups"):
		return foldEqual(name, "x-forwarded-groups")
	case len("x-forwarded-preferred-username"):
		return foldEqual(name, "x-forwarded-preferred-username")
	case len("x-forwarded-access-token"):
		return foldEqual(name, "x-forwarded-access-token")
	}
	return false
}

// foldEqual reports whether s equals the lower-case, '-'-separated want when letter case is ignored and '_' stands
// for '-'. It allocates nothing: it runs for every header of every request.
func foldEqual(s, want string) bool {
	if len(s) != len(want) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// Strip deletes every identity header (see IsIdentityHeader) from h.
func Strip(h http.Header) {
	for name := range h {
		if IsIdentityHeader(name) {
			delete(h, name)
		}
	}
}

// Signature errors; Verify wraps them.
var (
	ErrNoSignature  = errors.New("no identity signature")
	ErrBadSignature = errors.New("identity signature does not match")
	ErrStale        = errors.New("identity signature is stale")
	// ErrNoSecret reports a call without a secret: a MAC keyed with nothing proves nothing.
	ErrNoSecret = errors.New("no identity secret configured")
)

// Sign sets HeaderSignature on h: an HMAC-SHA256 with secret over now (in unix seconds) and the values of every
// identity header (empty for an absent one), so that the upstream can tell the gateway set them. With an empty secret
// it removes HeaderSignature instead.
func Sign(h http.Header, secret []byte, now time.Time) {
	if len(secret) == 0 {
		delete(h, HeaderSignature)
		return
	}
	t := strconv.FormatInt(now.Unix(), 10)
	h[HeaderSignature] = []string{"t=" + t + ",v1=" + base64.RawURLEncoding.EncodeToString(mac(h, secret, t))}
}

func mac(h http.Header, secret []byte, t string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("mcp-gateway-identity-v1\n"))
	m.Write([]byte(t))
	m.Write([]byte{'\n'})
	for _, name := range signed {
		m.Write([]byte(name))
		m.Write([]byte{':'})
		m.Write([]byte(h.Get(name)))
		m.Write([]byte{'\n'})
	}
	return m.Sum(nil)
}

// Verify checks HeaderSignature on h against secret: the MAC must match and its time lie within maxAge of now
// (either side, to allow for clock skew).
func Verify(h http.Header, secret []byte, now time.Time, maxAge time.Duration) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	v := h.Get(HeaderSignature)
	if v == "" {
		return ErrNoSignature
	}
	ts, sig, ok := strings.Cut(v, ",")
	if !ok || !strings.HasPrefix(ts, "t=") || !strings.HasPrefix(sig, "v1=") {
		return fmt.Errorf("%w: malformed %s", ErrBadSignature, HeaderSignature)
	}
	ts, sig = ts[2:], sig[3:]
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: malformed timestamp", ErrBadSignature)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(h, secret, ts)) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(unix, 0)); d > maxAge || d < -maxAge {
		return fmt.Errorf("%w: signed %s ago", ErrStale, d.Round(time.Second))
	}
	return nil
}
