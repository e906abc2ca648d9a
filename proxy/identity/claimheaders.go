package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MaxClaimHeaders bounds how many headers a mapping may add (and a signature may list).
const MaxClaimHeaders = 32

// ClaimHeaders maps token claims to further headers an upstream reads (GATEWAY_CLAIM_HEADERS), beside the built-in
// ones. Build it with ParseClaimHeaders; the zero value and nil map nothing. It is read-only once built.
type ClaimHeaders struct {
	entries []claimHeader
}

type claimHeader struct {
	name  string   // canonical (textproto) form, as sent and signed
	fold  string   // lower case with '_' as '-': how an upstream may read it (SameName)
	claim string   // as configured: tried first as one top-level claim name
	path  []string // claim split on '.', for nested claims
}

// ErrClaimValue reports a claim whose value cannot be forwarded unchanged in its header (see ClaimHeaders.Set).
var ErrClaimValue = errors.New("claim value cannot be forwarded in a header")

// ParseClaimHeaders reads a mapping written "Header-Name=claim, Other=a.b" (commas between entries, white space
// around them ignored). It refuses, naming each and saying why, every entry whose name is not a valid header name,
// is one the gateway sets, strips or relies on (see refusedHeaderReason), or repeats another in any spelling, and every
// empty claim. An empty spec maps nothing.
func ParseClaimHeaders(spec string) (*ClaimHeaders, error) {
	m := &ClaimHeaders{}
	var errs []error
	for _, raw := range strings.Split(spec, ",") {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			continue
		}
		name, claim, ok := strings.Cut(entry, "=")
		name, claim = strings.TrimSpace(name), strings.TrimSpace(claim)
		switch {
		case !ok || claim == "":
			errs = append(errs, fmt.Errorf("%q: want Header-Name=claim", entry))
			continue
		case !validHeaderName(name):
			errs = append(errs, fmt.Errorf("%q: not a header name (letters, digits and -, starting with a letter)", name))
			continue
		case strings.HasPrefix(claim, ".") || strings.HasSuffix(claim, ".") || strings.Contains(claim, ".."):
			errs = append(errs, fmt.Errorf("%q: claim %q has an empty part (nested claims are written a.b)", name, claim))
			continue
		}
		if why := refusedHeaderReason(name); why != "" {
			errs = append(errs, fmt.Errorf("%q: %s", name, why))
			continue
		}
		e := claimHeader{name: http.CanonicalHeaderKey(name), fold: fold(name), claim: claim, path: strings.Split(claim, ".")}
		if m.owns(e.fold) {
			errs = append(errs, fmt.Errorf("%q: named twice (letter case and '_' for '-' do not make another header)", name))
			continue
		}
		m.entries = append(m.entries, e)
	}
	if len(m.entries) > MaxClaimHeaders {
		errs = append(errs, fmt.Errorf("%d headers: at most %d", len(m.entries), MaxClaimHeaders))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// validHeaderName accepts the names a mapping may use: a letter, then letters, digits and '-'. (RFC 9110 allows more
// characters; an upstream that reads headers as CGI variables could not tell several of them apart.)
func validHeaderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '-')) {
			return false
		}
	}
	return !strings.HasSuffix(s, "-")
}

// fold is s in lower case with '_' as '-', the form SameName compares with.
func fold(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' {
			return '-'
		}
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// refusedNames are headers a mapping may not set, by folded name: hop-by-hop headers, which proxies consume; what
// identifies the request or its body, which the upstream must read as the client sent it; credentials; and what the
// gateway itself sets or relies on.
var refusedNames = map[string]string{
	"connection": "hop-by-hop", "keep-alive": "hop-by-hop", "proxy-connection": "hop-by-hop", "te": "hop-by-hop",
	"trailer": "hop-by-hop", "transfer-encoding": "hop-by-hop", "upgrade": "hop-by-hop",
	"proxy-authenticate": "hop-by-hop", "proxy-authorization": "a credential the gateway strips",
	"host": "identifies the upstream (the signature covers it)", "authorization": "a credential the gateway strips",
	"cookie": "a credential the gateway strips", "set-cookie": "a response header",
	"forwarded": "set by the gateway", "x-request-id": "set by the gateway", "x-real-ip": "names the client address",
	"via": "set by proxies", "expect": "changes how the request is sent", "range": "changes what the upstream answers",
	"origin": "checked by MCP servers (DNS rebinding)", "last-event-id": "carried from the client (MCP streams)",
	"traceparent": "trace context", "tracestate": "trace context", "baggage": "trace context",
	"accept": "carried from the client (MCP requires it)", "user-agent": "carried from the client",
	"cache-control": "carried from the client", "pragma": "carried from the client", "referer": "carried from the client",
}

// refusedPrefixes are name prefixes a mapping may not use, by folded name.
var refusedPrefixes = map[string]string{
	"content-":     "describes the body",
	"x-forwarded-": "set or stripped by the gateway",
	"x-auth-":      "the gateway's own identity headers",
	"mcp-":         "MCP protocol headers",
	"accept-":      "content negotiation",
	"if-":          "conditional requests",
	"sec-":         "set by browsers only",
	"proxy-":       "proxy headers",
}

// refusedHeaderReason says why a mapping may not set the header name, or returns "".
func refusedHeaderReason(name string) string {
	f := fold(name)
	if why, ok := refusedNames[f]; ok {
		return "refused: " + why
	}
	for p, why := range refusedPrefixes {
		if strings.HasPrefix(f, p) {
			return "refused: " + p + "* is " + why
		}
	}
	if IsIdentityHeader(name) {
		return "refused: one of the gateway's own identity headers"
	}
	return ""
}

// Names returns the header names the mapping sets, in their canonical form and in mapping order.
func (m *ClaimHeaders) Names() []string {
	if m == nil {
		return nil
	}
	out := make([]string, len(m.entries))
	for i, e := range m.entries {
		out[i] = e.name
	}
	return out
}

// Claims returns, in mapping order, the claim each header is taken from.
func (m *ClaimHeaders) Claims() []string {
	if m == nil {
		return nil
	}
	out := make([]string, len(m.entries))
	for i, e := range m.entries {
		out[i] = e.claim
	}
	return out
}

// Owns reports whether name is, in any letter case and with '_' for '-', a header the mapping sets: an inbound copy
// must not reach the upstream. It allocates nothing.
func (m *ClaimHeaders) Owns(name string) bool {
	if m == nil {
		return false
	}
	for _, e := range m.entries {
		if SameName(name, e.fold) {
			return true
		}
	}
	return false
}

func (m *ClaimHeaders) owns(folded string) bool {
	for _, e := range m.entries {
		if e.fold == folded {
			return true
		}
	}
	return false
}

// Set writes the mapped headers for a token's claims JSON into h; a header whose claim is absent or null is left out.
// A claim named exactly "email" follows the built-in rule: it is left out when email_verified is present and not
// true. Values are forwarded as they are, never encoded:
//
//   - a string as it is, without the white space at its ends (which HTTP drops); a number as written in the token;
//     true or false;
//   - an array of strings, numbers and booleans: its items joined with ",", empty items and nulls dropped;
//   - an object, or an array holding an object or array: its compact JSON.
//
// It refuses (ErrClaimValue, naming the header but not the value) a value holding a control character, such as CR
// or LF, and an array item holding a comma or white space at either end, which would not reach the upstream as the
// one item it is.
func (m *ClaimHeaders) Set(h http.Header, claims []byte) error {
	if m == nil || len(m.entries) == 0 {
		return nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(claims, &all); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	for _, e := range m.entries {
		raw := lookup(all, e)
		if e.claim == "email" && !emailVerified(all) {
			raw = nil
		}
		v, err := headerValue(raw)
		if err != nil {
			return fmt.Errorf("%w: %s (claim %s): %w", ErrClaimValue, e.name, e.claim, err)
		}
		if v == "" {
			delete(h, e.name)
			continue
		}
		h[e.name] = []string{v}
	}
	return nil
}

// lookup finds e's claim: a top-level claim of that exact name (which may hold dots, as URL-named claims do), else
// the nested member its dotted path names.
func lookup(all map[string]json.RawMessage, e claimHeader) json.RawMessage {
	if v, ok := all[e.claim]; ok {
		return v
	}
	if len(e.path) < 2 {
		return nil
	}
	cur := all
	for i, p := range e.path {
		v, ok := cur[p]
		if !ok {
			return nil
		}
		if i == len(e.path)-1 {
			return v
		}
		cur = nil
		if json.Unmarshal(v, &cur) != nil || cur == nil {
			return nil
		}
	}
	return nil
}

// emailVerified reports whether email_verified is absent, true or "true".
func emailVerified(all map[string]json.RawMessage) bool {
	v, ok := all["email_verified"]
	if !ok {
		return true
	}
	s := string(bytes.TrimSpace(v))
	return s == "true" || s == `"true"`
}

// headerValue turns a claim's JSON into a header value, "" for absent or null.
func headerValue(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		if hasControl(s) {
			return "", errors.New("the value holds a control character")
		}
		return strings.TrimSpace(s), nil
	case '{':
		return compact(raw)
	case '[':
		return joinItems(raw)
	}
	return string(raw), nil // a number, true or false, as written
}

// compact is raw as compact JSON. JSON escapes every control character but DEL, which may stand unescaped in a
// string; a value holding one could not be sent, so it is refused.
func compact(raw json.RawMessage) (string, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", err
	}
	if hasControl(b.String()) {
		return "", errors.New("the value holds a control character")
	}
	return b.String(), nil
}

// joinItems joins an array of scalars with ","; an array holding an object or array is returned as compact JSON.
func joinItems(raw json.RawMessage) (string, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return "", err
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		it = bytes.TrimSpace(it)
		switch {
		case string(it) == "null":
			continue
		case it[0] == '{' || it[0] == '[':
			return compact(raw)
		case it[0] != '"':
			out = append(out, string(it))
			continue
		}
		var s string
		if err := json.Unmarshal(it, &s); err != nil {
			return "", err
		}
		if s == "" {
			continue
		}
		if hasControl(s) || strings.Contains(s, ",") || strings.TrimSpace(s) != s {
			return "", fmt.Errorf("item %d holds a comma, a control character or white space at an end", i)
		}
		out = append(out, s)
	}
	return strings.Join(out, ","), nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}
