// Package metadata provides the public, unauthenticated documents of the gateway and the discovery of its
// authorization server:
//
//   - ProtectedResource and ProtectedResourceHandler: the OAuth 2.0 Protected Resource Metadata (RFC 9728) that an
//     MCP client reads after its first 401;
//   - WellKnownURL and DiscoveryURLs: where such documents live (RFC 9728 §3.1, RFC 8414 §3.1, OpenID Connect
//     Discovery §4), in the order MCP clients look;
//   - AuthServer and Discover: the authorization server's metadata, checked (exact issuer, usable jwks_uri) before
//     the gateway trusts it;
//   - Document: an upstream JSON document (the authorization server's metadata, for legacy clients that read it on
//     the MCP origin) cached with a TTL and served stale while the upstream is down;
//   - NotFound: the JSON 404 for unknown /.well-known/ paths.
//
// Every answer carries Access-Control-Allow-Origin: * (the documents are public and browser clients must read them)
// and a fixed, client-safe JSON body on errors. The package uses the standard library only.
package metadata

import (
	"io"
	"net/http"
)

// maxDocumentSize bounds every document this package reads from the network.
const maxDocumentSize = 1 << 20

// allowedMethods is the Allow header of every handler in this package.
const allowedMethods = "GET, HEAD, OPTIONS"

// Fixed error bodies: nothing in them comes from a request or an upstream.
const (
	bodyNotFound = `{"error":"not_found","error_description":"no such document"}` + "\n"
	bodyMethod   = `{"error":"method_not_allowed","error_description":"use GET"}` + "\n"
	bodyUpstream = `{"error":"temporarily_unavailable","error_description":"authorization server metadata is unavailable; try again later"}` + "\n"
)

// jsonHeaders returns the headers of a successful JSON answer, built once per handler so that serving a document
// copies prebuilt values instead of allocating new ones. Callers must not modify the returned slices.
func jsonHeaders(cacheControl string) http.Header {
	return http.Header{
		"Content-Type":                {"application/json"},
		"Cache-Control":               {cacheControl},
		"Access-Control-Allow-Origin": {"*"},
		"X-Content-Type-Options":      {"nosniff"},
	}
}

// setHeaders copies the prebuilt values of src into dst, sharing the value slices.
func setHeaders(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// AllowAnyOrigin lets any origin read a public answer: the documents and the public endpoints take no credentials
// from a browser (no cookies), and browser MCP clients must read them. It is the one place public answers get CORS;
// the MCP endpoint's CORS, for allowed origins only, is the gateway's.
func AllowAnyOrigin(h http.Header) { h.Set("Access-Control-Allow-Origin", "*") }

// Preflight answers a CORS preflight (or a plain OPTIONS) for a public endpoint that serves methods, with 204: any
// origin and any requested header are allowed (browser MCP clients send MCP-Protocol-Version).
func Preflight(w http.ResponseWriter, r *http.Request, methods string) {
	h := w.Header()
	AllowAnyOrigin(h)
	h.Set("Access-Control-Allow-Methods", methods)
	if req := r.Header.Values("Access-Control-Request-Headers"); len(req) > 0 {
		// net/http has already rejected header values with control characters, so echoing cannot inject.
		for _, v := range req {
			h.Add("Access-Control-Allow-Headers", v)
		}
		h.Add("Vary", "Access-Control-Request-Headers")
	}
	h.Set("Access-Control-Max-Age", "86400")
	h.Set("Allow", methods)
	w.WriteHeader(http.StatusNoContent)
}

// writeError answers status with one of the fixed JSON bodies above.
func writeError(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	AllowAnyOrigin(h)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// methodNotAllowed answers 405 with the Allow header.
func methodNotAllowed(w http.ResponseWriter) {
	w.Header().Set("Allow", allowedMethods)
	writeError(w, http.StatusMethodNotAllowed, bodyMethod)
}

// NotFound answers 404 with the JSON body {"error":"not_found","error_description":"no such document"}, for unknown
// paths under /.well-known/. It carries Access-Control-Allow-Origin: * so that a browser client trying discovery URLs
// in turn sees a 404 and moves on instead of a CORS failure.
func NotFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, bodyNotFound)
}
