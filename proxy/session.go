package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/mcp-gateway/gateway/proxy/token"
)

// sessionBinder binds MCP sessions to the user who created them without keeping state: the Mcp-Session-Id a client
// sees is the upstream's id, a dot, and a MAC over the user's sub and that id, keyed per issuer (a sub is unique only
// within its issuer). A request presenting a session id is forwarded only when the MAC matches its own verified issuer
// and sub; the upstream sees its own id, unchanged. Replicas that share the key (GATEWAY_SESSION_SECRET) agree, and
// nothing grows with the number of sessions.
//
// The first issuer's sessions are MACed with key itself, as when the gateway had one issuer, so that the session ids
// clients hold survive an upgrade; every other issuer's with a key of its own derived from key and its URL, so that no
// sub of one issuer can open another's session.
type sessionBinder struct {
	key     []byte
	primary string            // the first issuer
	keys    map[string][]byte // the key of each other issuer
}

// newSessionBinder returns the binder for key and the issuers, the first one first.
func newSessionBinder(key []byte, issuers []string) sessionBinder {
	b := sessionBinder{key: key, keys: map[string][]byte{}}
	if len(issuers) > 0 {
		b.primary = issuers[0]
	}
	for _, iss := range issuers[min(1, len(issuers)):] {
		m := hmac.New(sha256.New, key)
		m.Write([]byte("issuer\x00" + iss))
		b.keys[iss] = m.Sum(nil)
	}
	return b
}

// tagLen is the length of the base64url tag: 22 characters carry 132 bits of the MAC.
const tagLen = 22

func (b sessionBinder) tag(upstreamID string, p *token.Principal) string {
	key := b.key
	if p.Issuer != b.primary {
		if key = b.keys[p.Issuer]; key == nil {
			key = b.key[:0:0] // not an issuer the gateway accepts: an empty key, whose tags nothing else shares
		}
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(p.Subject))
	m.Write([]byte{0})
	m.Write([]byte(upstreamID))
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0]))[:tagLen]
}

// wrap returns the session id the client is given for the upstream's id, bound to p.
func (b sessionBinder) wrap(upstreamID string, p *token.Principal) string {
	return upstreamID + "." + b.tag(upstreamID, p)
}

// open returns the upstream's id for a client's session id, or false when the id was not issued to p.
func (b sessionBinder) open(clientID string, p *token.Principal) (string, bool) {
	i := strings.LastIndexByte(clientID, '.')
	if i <= 0 || len(clientID)-i-1 != tagLen {
		return "", false
	}
	up := clientID[:i]
	if !hmac.Equal([]byte(clientID[i+1:]), []byte(b.tag(up, p))) {
		return "", false
	}
	return up, true
}

// bindSession checks that an Mcp-Session-Id was issued to the caller and records the upstream's id for it.
func bindSession(b sessionBinder) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v := r.Header.Values("Mcp-Session-Id")
			if len(v) == 0 {
				next.ServeHTTP(w, r)
				return
			}
			st := stateOf(r.Context())
			up, ok := "", len(v) == 1
			if ok {
				up, ok = b.open(v[0], st.principal)
			}
			if !ok {
				writeError(w, r, refusal(ReasonSession, "", nil, nil))
				return
			}
			st.upstreamSession = up
			next.ServeHTTP(w, r)
		})
	}
}
