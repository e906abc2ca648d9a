package metadata

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// ProtectedResource is OAuth 2.0 Protected Resource Metadata (RFC 9728), the document an MCP client fetches from
// the URL in a 401's resource_metadata parameter to learn which authorization server issues tokens for this resource.
type ProtectedResource struct {
	// Resource is the resource identifier: the canonical URL of the MCP endpoint, identical to the URL the
	// well-known path was derived from (see WellKnownURL) and to the audience tokens must carry. Clients compare it
	// with the URL they connected to, so it comes from configuration, never from a request's Host.
	Resource string `json:"resource"`
	// AuthorizationServers lists issuer URLs; MCP requires at least one and clients use the first.
	// A nil slice is served as [] rather than null.
	AuthorizationServers []string `json:"authorization_servers"`
	// ScopesSupported lists the scopes a token may carry for this resource; omitted when empty.
	ScopesSupported []string `json:"scopes_supported,omitempty"`
	// BearerMethodsSupported lists how a token may be presented; the gateway accepts ["header"] only.
	BearerMethodsSupported []string `json:"bearer_methods_supported,omitempty"`
	// ResourceName is a human-readable name for consent screens; omitted when empty.
	ResourceName string `json:"resource_name,omitempty"`
	// ResourceDocumentation is a URL of documentation for developers; omitted when empty.
	ResourceDocumentation string `json:"resource_documentation,omitempty"`
}

// prmCacheControl lets clients and shared caches keep the document for five minutes: it changes only on redeploy.
const prmCacheControl = "public, max-age=300"

// ProtectedResourceHandler serves doc, marshalled once when the handler is built:
//
//   - GET and HEAD: 200 application/json, Cache-Control "public, max-age=300";
//   - OPTIONS: 204 CORS preflight allowing GET, HEAD and OPTIONS and echoing Access-Control-Request-Headers;
//   - any other method: 405 with Allow and a JSON error body.
//
// Every answer carries Access-Control-Allow-Origin: *. The handler does not look at the request's path or Host;
// mount it at the path WellKnownURL gives for doc.Resource.
func ProtectedResourceHandler(doc ProtectedResource) http.Handler {
	if doc.AuthorizationServers == nil {
		doc.AuthorizationServers = []string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // URLs keep their '&'; the document is served as JSON, never embedded in HTML
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		// Strings and string slices always marshal.
		panic("metadata: marshal protected resource metadata: " + err.Error())
	}
	h := &staticJSON{body: buf.Bytes(), headers: jsonHeaders(prmCacheControl)}
	h.headers["Content-Length"] = []string{strconv.Itoa(len(h.body))}
	return h
}

// staticJSON serves a fixed JSON body with prebuilt headers.
type staticJSON struct {
	body    []byte
	headers http.Header // includes Content-Length; shared, read-only
}

func (s *staticJSON) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		setHeaders(w.Header(), s.headers)
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(s.body)
		}
	case http.MethodOptions:
		Preflight(w, r, allowedMethods)
	default:
		methodNotAllowed(w)
	}
}
