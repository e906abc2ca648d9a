package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/go-chi/chi/v5"

	"github.com/mcp-gateway/gateway/metadata"
)

// routes builds the router: every request is observed and its body bounded; the public routes (metadata, health,
// Option B) answer without a token; everything else is the protected chain (origin and CORS, body limit,
// authentication, session binding) and goes upstream, the MCP endpoint to the upstream's MCP URL and any other path
// to the upstream's origin. With a policy, the MCP endpoint's requests pass Authorize too, and other paths are not
// served (404). Route names, for metrics and logs, are read from the pattern a request matched.
func (g *Gateway) routes() http.Handler {
	r := chi.NewRouter()
	names := map[string]string{}
	handle := func(r chi.Router, name, pattern string, h http.Handler) {
		names[pattern] = name
		r.Handle(pattern, h)
	}
	r.Use(g.obs.middleware)
	if g.tracer != nil {
		r.Use(traceRequests(g.tracer))
	}
	r.Use(boundBody(g.cfg.ReadTimeout))

	r.Group(func(r chi.Router) { // public
		prm := g.prmHandler()
		handle(r, "prm", "/.well-known/oauth-protected-resource", prm)
		if g.cfg.MCPPath != "/" {
			handle(r, "prm", "/.well-known/oauth-protected-resource"+g.cfg.MCPPath, prm)
		}
		if srv := g.authServer; srv != nil {
			for _, rt := range srv.Routes() {
				handle(r, rt.Name, rt.Path, rt.Handler)
			}
		} else {
			handle(r, "as_metadata", "/.well-known/oauth-authorization-server", docHandler(&g.asDoc))
			handle(r, "oidc_metadata", "/.well-known/openid-configuration", docHandler(&g.oidcDoc))
		}
		handle(r, "well_known", "/.well-known", http.HandlerFunc(metadata.NotFound))
		handle(r, "well_known", "/.well-known/*", http.HandlerFunc(metadata.NotFound))
		names["/healthz"], names["/readyz"] = "healthz", "readyz"
		getOnly(r, "/healthz", healthz)
		getOnly(r, "/readyz", g.readyz)
	})

	r.Group(func(r chi.Router) { // protected
		auth := AuthOptions{ResourceMetadata: g.prmURL, Scopes: g.cfg.ScopeList, Resource: g.cfg.Resource,
			Audiences: g.cfg.AudienceList}
		if g.limits.anonymous != nil {
			auth.Anonymous = g.limits.anonymousRefusal
			if g.cfg.Introspection != nil {
				auth.Admit = g.admitIntrospection
			}
		}
		r.Use(CheckOrigin(g.cfg.OriginList), LimitBody(g.cfg.MaxBodyBytes), Authenticate(g.tokens.Verify, auth))
		if g.limits.user != nil {
			r.Use(limitUsers(g.limits))
		}
		r.Use(bindSession(g.binder))
		endpoint, upstreamOrigin := g.upstreams()
		var origin http.Handler = upstreamOrigin
		mcp := r
		if g.policy != nil { // the MCP endpoint alone; without a policy, the chain is the one above
			mcp = r.With(Authorize(g.policy.current, AuthorizeOptions{MaxBodyBytes: g.cfg.MaxBodyBytes,
				ResourceMetadata: g.prmURL, Audit: g.audit, Count: g.policy.count, Limit: g.limits.takeToolCall}))
			// Other paths would reach the upstream undecided, and it may serve MCP there too (another spelling of
			// its endpoint's path, an older transport's /sse and /messages): with a policy, they are not served.
			origin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeError(w, r, errOnlyEndpoint) })
		}
		// What no route matches, chi answers itself (a bare 405 for a method it does not know, such as PROPFIND, a
		// 404 for the target "*"): those go the protected way to the upstream's origin too.
		r.MethodNotAllowed(origin.ServeHTTP)
		r.NotFound(origin.ServeHTTP)
		if g.cfg.MCPPath == "/" {
			handle(mcp, "mcp", "/*", endpoint)
			return
		}
		handle(mcp, "mcp", g.cfg.MCPPath, endpoint)
		handle(r, "forward", "/*", origin)
	})
	g.obs.routes = names
	return r
}

// errOnlyEndpoint refuses, with a policy, a request for another path than the MCP endpoint.
var errOnlyEndpoint = &Error{Status: http.StatusNotFound, Code: "not_found",
	Description: "the gateway forwards only its MCP endpoint"}

// getOnly serves h at pattern for GET and HEAD, and 405 for any other method, which chi would otherwise send on to
// the catch-all route, upstream.
func getOnly(r chi.Router, pattern string, h http.HandlerFunc) {
	r.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { writeError(w, r, errMethod("GET, HEAD", "GET")) })
	r.Get(pattern, h)
	r.Head(pattern, h)
}

// prmHandler serves the protected resource metadata. In Option B its scopes_supported are the authorization server's
// (GATEWAY_FACADE_SCOPES, else the authorization server's, known once discovery has run), so that clients that take
// their scope from here ask for one.
func (g *Gateway) prmHandler() http.Handler {
	issuers := g.cfg.IssuerList() // in order: MCP clients sign in with the first
	if g.authServer != nil {
		issuers = []string{g.authServer.Issuer()}
	}
	prmFor := func(scopes []string) http.Handler {
		return metadata.ProtectedResourceHandler(metadata.ProtectedResource{
			Resource:               g.cfg.Resource,
			AuthorizationServers:   issuers,
			ScopesSupported:        scopes,
			BearerMethodsSupported: []string{"header"},
			ResourceName:           g.cfg.ResourceName,
		})
	}
	srv := g.authServer
	if srv == nil {
		return prmFor(g.cfg.ScopeList)
	}
	type built struct {
		as *metadata.AuthServer
		h  http.Handler
	}
	var cur atomic.Pointer[built]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		as := g.upstreamAS.Load()
		b := cur.Load()
		if b == nil || b.as != as {
			b = &built{as: as, h: prmFor(srv.ResourceScopes(as))}
			cur.Store(b)
		}
		b.h.ServeHTTP(w, r)
	})
}

// docHandler serves an authorization server document once discovery has produced it, 503 before.
func docHandler(p *atomic.Pointer[metadata.Document]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := p.Load()
		if d == nil {
			metadata.AllowAnyOrigin(w.Header())
			writeError(w, r, errNotReady)
			return
		}
		d.ServeHTTP(w, r)
	})
}

func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// readyz answers 200 when the keys of at least one issuer are loaded and the upstream answers, 503 otherwise. With
// several issuers, issuers_not_ready names those whose keys are not loaded: their tokens get 503 meanwhile.
func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	notReady := g.issuersNotReady()
	keys := len(notReady) < len(g.issuers)
	up := g.upstreamReachable(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !keys || !up {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	extra := "" // with several issuers, those not ready; with GATEWAY_REDIS_URL, whether Redis answers: detail only, never not ready (see redis.go)
	if len(g.issuers) > 1 && len(notReady) > 0 {
		b, _ := json.Marshal(notReady)
		extra = `,"issuers_not_ready":` + string(b)
	}
	if g.redis != nil {
		extra += fmt.Sprintf(`,"redis":%q`, map[bool]string{true: "up", false: "down"}[g.redis.Check(r.Context())])
	}
	fmt.Fprintf(w, `{"status":%q,"keys_loaded":%t,"upstream_reachable":%t%s}`+"\n", map[bool]string{true: "ready", false: "not_ready"}[keys && up], keys, up, extra)
}
