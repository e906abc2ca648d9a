package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// sessionBinder binds MCP sessions to the user who created them without keeping state: the Mcp-Session-Id a client
// sees is the upstream's id, a dot, and a MAC over the user's sub and that id. A request presenting a session id is
// forwarded only when the MAC matches its own verified sub; the upstream sees its own id, unchanged. Replicas that share
// the key (GATEWAY_SESSION_SECRET) agree, and nothing grows with the number of sessions.
type sessionBinder struct {
	key []byte
}

// tagLen is the length of the base64url tag: 22 characters carry 132 bits of the MAC.
const tagLen = 22

func (b sessionBinder) tag(upstreamID, sub string) string {
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte(sub))
	m.Write([]byte{0})
	m.Write([]byte(upstreamID))
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0]))[:tagLen]
}

// wrap returns the session id the client is given for the upstream's id, bound to sub.
func (b sessionBinder) wrap(upstreamID, sub string) string {
	return upstreamID + "." + b.tag(upstreamID, sub)
}

// open returns the upstream's id for a client's session id, or false when the id was not issued to sub.
func (b sessionBinder) open(clientID, sub string) (string, bool) {
	i := strings.LastIndexByte(clientID, '.')
	if i <= 0 || len(clientID)-i-1 != tagLen {
		return "", false
	}
	up := clientID[:i]
	if !hmac.Equal([]byte(clientID[i+1:]), []byte(b.tag(up, sub))) {
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
				up, ok = b.open(v[0], st.principal.Subject)
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
