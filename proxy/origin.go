package proxy

import (
	"net/http"
	"slices"
	"strings"
)

// CheckOrigin refuses, before anything else, a request whose Origin header is present and not allowed (DNS rebinding
// defence), and answers CORS for allowed browser origins: preflights without authentication, and the headers a browser
// client must read (WWW-Authenticate to discover the authorization server, the MCP session and version headers).
// origins are the allowed origins ("*": any).
func CheckOrigin(origins []string) func(http.Handler) http.Handler {
	const (
		allowMethods  = "GET, POST, DELETE, OPTIONS"
		allowHeaders  = "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name"
		exposeHeaders = "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version, X-Request-Id"
	)
	allowed := originSet(origins)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" {
				next.ServeHTTP(w, r)
				return
			}
			if !allowed(origin) {
				writeError(w, r, refusal(ReasonOrigin, "", nil, nil))
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Expose-Headers", exposeHeaders)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", allowMethods)
				h.Set("Access-Control-Allow-Headers", allowHeaders+paramHeaders(r.Header.Get("Access-Control-Request-Headers")))
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// paramHeaders allows the Mcp-Param-* headers a preflight asks for (their names are chosen per tool).
func paramHeaders(requested string) string {
	var b strings.Builder
	for _, h := range strings.Split(requested, ",") {
		h = strings.TrimSpace(h)
		if len(h) > len("mcp-param-") && strings.EqualFold(h[:len("mcp-param-")], "mcp-param-") && validHeaderName(h) {
			b.WriteString(", ")
			b.WriteString(h)
		}
	}
	return b.String()
}

// originSet reports whether an origin is one of origins, in any letter case; "*" allows any.
func originSet(origins []string) func(origin string) bool {
	if slices.Contains(origins, "*") {
		return func(string) bool { return true }
	}
	return func(origin string) bool {
		return slices.ContainsFunc(origins, func(o string) bool { return strings.EqualFold(o, origin) })
	}
}

// validHeaderName reports whether s is a header field name (RFC 9110 §5.1: a token).
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}
