// Package identity is the contract between the gateway and the MCP server behind it: the headers that carry a verified
// user's identity, how inbound copies of them are removed, and the optional signature that lets the upstream check that
// the gateway set them, for this request.
//
// It depends on the standard library only, so an upstream written in Go can import it without pulling in the gateway.
//
// # Signature, version 2
//
// With a secret, the gateway sets
//
//	X-Auth-Signature: t=<unix seconds>,v2=<signature>
//
// where <signature> is the unpadded base64url encoding (RFC 4648 §5) of HMAC-SHA256, keyed with the secret's bytes,
// over this signing string (every line, the last included, ends with one LF, "\n"):
//
//	mcp-gateway-identity-v2
//	<t, the decimal digits of the header>
//	<method, as sent: POST>
//	<host: the Host header (HTTP/2 :authority) with ASCII letters lower-cased and the port, if any, kept>
//	<path: the request target's path as sent, percent-encoding untouched, without the query; "/" if empty>
//	X-Auth-User-Id:<value>
//	X-Auth-Email:<value>
//	X-Auth-Name:<value>
//	X-Auth-Org-Id:<value>
//	X-Auth-Session-Id:<value>
//	X-Auth-Client-Id:<value>
//	X-Auth-Roles:<value>
//	X-Auth-Permissions:<value>
//	X-Auth-Scopes:<value>
//	X-Auth-Claims:<value>
//	X-Forwarded-User:<value>
//	X-Forwarded-Email:<value>
//
// Each <value> is the header's field value (empty when the header is absent), without the white space HTTP parsers
// trim at its ends. Header names are written exactly as above. No value can contain a line feed, so the string is
// unambiguous. The query, the body and every other header are not covered.
//
// An upstream recomputes the string from the request it received, compares the MACs in constant time, and checks
// that t lies within its maximum age of its own clock, either side. It refuses a request that carries a signed header
// or X-Auth-Signature more than once, or any other identity header (see IsIdentityHeader: another spelling, such as
// X_Auth_Email, that some frameworks fold into the same variable), since the gateway never sends one. Verify does all
// of this. Version 1 (t=…,v1=…), which covered only the headers, so that a signed header set could be replayed with
// another method or path, is refused.
//
// # Signature, version 3
//
// When the gateway adds headers of the operator's choosing (GATEWAY_CLAIM_HEADERS, see ClaimHeaders), it signs
// version 3 instead:
//
//	X-Auth-Signature: t=<unix seconds>,h=<Name>;<Name>…,v3=<signature>
//
// h lists every mapped header name, in canonical form, whether the request carries it or not. The signing string is
// version 2's with the first line mcp-gateway-identity-v3, followed by one line "<Name>:<value>" per listed name, in
// the order listed. A verifier refuses a listed header that appears more than once or in another spelling (X_Tenant
// beside a listed X-Tenant). An upstream that reads a mapped header checks that the signature lists it (Covers):
// otherwise a version 2 signature, which covers no mapped header, would pass with a forged one beside it.
package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
	HeaderSignature   = "X-Auth-Signature"   // t=<unix seconds>,v2=<base64url HMAC-SHA256>, when a secret is configured

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
	if SameName(name[:7], "x-auth-") {
		return true
	}
	switch len(name) {
	case len("x-forwarded-user"):
		return SameName(name, "x-forwarded-user")
	case len("x-forwarded-email"):
		return SameName(name, "x-forwarded-email")
	case len("x-forwarded-groups"):
		return SameName(name, "x-forwarded-groups")
	case len("x-forwarded-preferred-username"):
		return SameName(name, "x-forwarded-preferred-username")
	case len("x-forwarded-access-token"):
		return SameName(name, "x-forwarded-access-token")
	}
	return false
}

// SameName reports whether the header name s is want, a lower-case, '-'-separated name, as an upstream may read it:
// with letter case ignored and '_' standing for '-' (PHP, WSGI and CGI fold both into one variable). It allocates
// nothing: it runs for every header of every request.
func SameName(s, want string) bool {
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
	// ErrUnsupportedVersion reports a signature of another version than 2. Verify wraps it together with
	// ErrBadSignature.
	ErrUnsupportedVersion = errors.New("identity signature version not supported")
	// ErrNoSecret reports a call without a secret: a MAC keyed with nothing proves nothing.
	ErrNoSecret = errors.New("no identity secret configured")
)

// The first line of the signing string, per version.
const (
	signingVersion  = "mcp-gateway-identity-v2"
	signingVersion3 = "mcp-gateway-identity-v3"
)

// Sign sets HeaderSignature on r's header, so that the upstream can tell the gateway set the identity headers for this
// request: an HMAC-SHA256 with secret over now (in unix seconds), r's method, host and path, and the values of every
// identity header. Without mapped headers it is version 2 (see the package documentation); with mapped, the names of
// the headers GATEWAY_CLAIM_HEADERS adds (ClaimHeaders.Names, each set or absent), it is version 3, which lists them
// and covers their values too. Call it when r's method, URL, Host and identity headers are final. r may be an outgoing
// request (its Host, else its URL's host, is what it will send) or a server request. With an empty secret it removes
// HeaderSignature instead.
func Sign(r *http.Request, secret []byte, now time.Time, mapped ...string) {
	if len(secret) == 0 {
		delete(r.Header, HeaderSignature)
		return
	}
	t := strconv.FormatInt(now.Unix(), 10)
	if len(mapped) == 0 {
		r.Header[HeaderSignature] = []string{"t=" + t + ",v2=" + base64.RawURLEncoding.EncodeToString(mac(r, secret, t, nil))}
		return
	}
	r.Header[HeaderSignature] = []string{"t=" + t + ",h=" + strings.Join(mapped, ";") + ",v3=" +
		base64.RawURLEncoding.EncodeToString(mac(r, secret, t, mapped))}
}

// requestHost is the host the signature covers: r.Host (a server request's Host header, or an outgoing request's
// override), else r.URL.Host, lower-cased.
func requestHost(r *http.Request) string {
	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}
	for i := 0; i < len(host); i++ {
		if 'A' <= host[i] && host[i] <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// requestPath is the path the signature covers: the request target's path as it goes on the wire.
func requestPath(r *http.Request) string {
	if r.URL == nil {
		return "/"
	}
	if p := r.URL.EscapedPath(); p != "" {
		return p
	}
	return "/"
}

// mac computes the MAC of r at time t: version 2 without mapped headers, version 3 with them. The signing string is
// built in one buffer, so that signing costs one allocation for it whatever the number of headers.
func mac(r *http.Request, secret []byte, t string, mapped []string) []byte {
	method, host, path := r.Method, requestHost(r), requestPath(r)
	if method == "" {
		method = http.MethodGet // what an outgoing request with no method sends
	}
	version := signingVersion
	if len(mapped) > 0 {
		version = signingVersion3
	}
	n := len(version) + len(t) + len(method) + len(host) + len(path) + 5
	for _, name := range signed {
		n += len(name) + len(r.Header.Get(name)) + 2
	}
	for _, name := range mapped {
		n += len(name) + len(r.Header.Get(name)) + 2
	}
	b := make([]byte, 0, n)
	b = append(append(b, version...), '\n')
	b = append(append(b, t...), '\n')
	b = append(append(b, method...), '\n')
	b = append(append(b, host...), '\n')
	b = append(append(b, path...), '\n')
	for _, name := range signed {
		b = append(append(b, name...), ':')
		b = append(append(b, r.Header.Get(name)...), '\n')
	}
	for _, name := range mapped {
		b = append(append(b, name...), ':')
		b = append(append(b, r.Header.Get(name)...), '\n')
	}
	m := hmac.New(sha256.New, secret)
	m.Write(b)
	return m.Sum(nil)
}

// Verify checks HeaderSignature on r against secret, as the package documentation describes: version 2 or 3, a MAC
// over r's method, host, path and identity headers (and, in version 3, the mapped headers it lists) that matches, a
// time within maxAge of now (either side, to allow for clock skew), each signed header at most once and in the
// spelling signed, and no identity header the gateway does not send. An upstream that reads a mapped header checks
// Covers too: a version 2 signature covers none.
func Verify(r *http.Request, secret []byte, now time.Time, maxAge time.Duration) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	vals := r.Header[HeaderSignature]
	switch len(vals) {
	case 0:
		return ErrNoSignature
	case 1:
	default:
		return fmt.Errorf("%w: more than one %s", ErrBadSignature, HeaderSignature)
	}
	sig, err := parseSignature(vals[0])
	if err != nil {
		return err
	}
	if err := checkHeaders(r.Header, sig.mapped); err != nil {
		return err
	}
	unix, err := strconv.ParseInt(sig.t, 10, 64)
	if err != nil || sig.t != strconv.FormatInt(unix, 10) {
		return fmt.Errorf("%w: malformed timestamp", ErrBadSignature)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig.mac)
	if err != nil || !hmac.Equal(got, mac(r, secret, sig.t, sig.mapped)) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(unix, 0)); d > maxAge || d < -maxAge {
		return fmt.Errorf("%w: signed %s ago", ErrStale, d.Round(time.Second))
	}
	return nil
}

// Covers reports whether the signature on r lists the mapped header name (in any letter case): call it after Verify
// before trusting a header GATEWAY_CLAIM_HEADERS adds. A signature lists every mapped header, present or not, so a
// covered header that is absent was absent at the gateway.
func Covers(r *http.Request, name string) bool {
	vals := r.Header[HeaderSignature]
	if len(vals) != 1 {
		return false
	}
	sig, err := parseSignature(vals[0])
	if err != nil {
		return false
	}
	for _, m := range sig.mapped {
		if SameName(name, fold(m)) {
			return true
		}
	}
	return false
}

// signature is a parsed HeaderSignature value.
type signature struct {
	t, mac string
	mapped []string // version 3's h=; nil in version 2
}

// parseSignature reads "t=…,v2=…" or "t=…,h=A;B,v3=…". The mapped names must be valid, canonical, distinct in any
// spelling, and none of the built-in identity headers.
func parseSignature(v string) (signature, error) {
	malformed := fmt.Errorf("%w: malformed %s", ErrBadSignature, HeaderSignature)
	parts := strings.Split(v, ",")
	if len(parts) < 2 || !strings.HasPrefix(parts[0], "t=") {
		return signature{}, malformed
	}
	sig := signature{t: parts[0][2:]}
	last := parts[len(parts)-1]
	switch {
	case len(parts) == 2 && strings.HasPrefix(last, "v2="):
		sig.mac = last[3:]
		return sig, nil
	case len(parts) == 3 && strings.HasPrefix(last, "v3=") && strings.HasPrefix(parts[1], "h="):
		sig.mac = last[3:]
	default:
		if version, _, ok := strings.Cut(last, "="); ok && len(version) > 1 && version[0] == 'v' && version != "v2" && version != "v3" {
			return signature{}, fmt.Errorf("%w: %w: %s (versions 2 and 3 cover the method, path and host too; upgrade the gateway)",
				ErrBadSignature, ErrUnsupportedVersion, version)
		}
		return signature{}, malformed
	}
	sig.mapped = strings.Split(parts[1][2:], ";")
	if len(sig.mapped) > MaxClaimHeaders {
		return signature{}, malformed
	}
	seen := make(map[string]bool, len(sig.mapped))
	for _, name := range sig.mapped {
		f := fold(name)
		if !validHeaderName(name) || name != http.CanonicalHeaderKey(name) || seen[f] || IsIdentityHeader(name) {
			return signature{}, malformed
		}
		seen[f] = true
	}
	return sig, nil
}

// checkHeaders refuses a request that carries a signed header or a mapped one more than once or in another spelling
// than the one signed, or an identity header the gateway never sends.
func checkHeaders(h http.Header, mapped []string) error {
	folded := make([]string, len(mapped))
	for i, m := range mapped {
		folded[i] = fold(m)
	}
	for name, v := range h {
		switch {
		case name == HeaderSignature:
			continue
		case IsIdentityHeader(name) && !slices.Contains(signed[:], name):
			return fmt.Errorf("%w: the request carries %s, which the gateway never sends", ErrBadSignature, name)
		case IsIdentityHeader(name) && len(v) > 1:
			return fmt.Errorf("%w: the request carries %s more than once", ErrBadSignature, name)
		}
		for i, m := range mapped {
			if !SameName(name, folded[i]) {
				continue
			}
			if name != m {
				return fmt.Errorf("%w: the request carries %s, another spelling of the signed %s", ErrBadSignature, name, m)
			}
			if len(v) > 1 {
				return fmt.Errorf("%w: the request carries %s more than once", ErrBadSignature, name)
			}
		}
	}
	return nil
}
