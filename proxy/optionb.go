package proxy

import (
	"log/slog"
	"net/http"

	"github.com/mcp-gateway/gateway/proxy/token"
)

// Option B: with a pre-registered client, the gateway is also the authorization server MCP clients see (package
// authserver). New builds it and routes mounts its routes; this file is what joins the two.

// ReasonOAuth labels, in the access log, a request the authorization server refused.
const ReasonOAuth token.Reason = "oauth_refused"

// noteOAuth puts what the authorization server says of a request on the request's access line, labelled ReasonOAuth
// when it refused the request.
func noteOAuth(r *http.Request, refused bool, attrs ...slog.Attr) {
	st := stateOf(r.Context())
	if st == nil {
		return
	}
	if refused {
		st.reason = ReasonOAuth
	}
	st.attrs = append(st.attrs, attrs...)
}
