package authserver

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-gateway/gateway/metadata"
	"github.com/mcp-gateway/gateway/proxy/clientaddr"
)

// The endpoints for clients: the metadata, /register and /token.

// metadataDoc is the server's metadata, as built for one upstream document (nil before discovery).
type metadataDoc struct {
	as   *metadata.AuthServer
	body []byte
}

// grantTypes are the grant types the server serves; /token refuses others.
var grantTypes = []string{"authorization_code", "refresh_token"}

// maxBody bounds registration, consent and token request bodies.
const maxBody = 64 << 10

// document returns the server's metadata (RFC 8414) for the current upstream document.
func (s *Server) document() []byte {
	as := s.upstream()
	if d := s.doc.Load(); d != nil && d.as == as {
		return d.body
	}
	doc := map[string]any{
		"issuer":                                         s.issuer,
		"authorization_endpoint":                         s.issuer + authorizePath,
		"token_endpoint":                                 s.issuer + tokenPath,
		"registration_endpoint":                          s.issuer + registerPath,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          grantTypes,
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none", "client_secret_basic", "client_secret_post"},
		"authorization_response_iss_parameter_supported": true,
	}
	if s.cimd != nil {
		doc["client_id_metadata_document_supported"] = true
	}
	if scopes, _, _ := s.scopes(as); len(scopes) > 0 {
		doc["scopes_supported"] = scopes
	}
	body, _ := json.MarshalIndent(doc, "", "  ")
	body = append(body, '\n')
	s.doc.Store(&metadataDoc{as: as, body: body})
	return body
}

// metadataHandler serves the server's metadata (RFC 8414), at both well-known paths.
func (s *Server) metadataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		metadata.AllowAnyOrigin(h)
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			metadata.Preflight(w, r, "GET, HEAD, OPTIONS")
			return
		default:
			h.Set("Allow", "GET, HEAD, OPTIONS")
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
			return
		}
		doc := s.document()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Content-Length", strconv.Itoa(len(doc)))
		if r.Method == http.MethodGet {
			w.Write(doc)
		}
	})
}

// postEndpoint answers what a cross-origin, POST-only endpoint owes before its work: CORS for any origin, nosniff on
// every answer, the preflight, and 405 for other methods. It reports whether the handler should go on.
func postEndpoint(w http.ResponseWriter, r *http.Request) bool {
	metadata.AllowAnyOrigin(w.Header())
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch r.Method {
	case http.MethodPost:
		return true
	case http.MethodOptions:
		metadata.Preflight(w, r, "POST, OPTIONS")
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
	}
	return false
}

// readRequestBody reads a request body of at most maxBody bytes.
func readRequestBody(r *http.Request) ([]byte, *oauthError) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, errInvalidRequest("the request body could not be read")
	}
	if len(b) > maxBody {
		return nil, oauthErr(http.StatusRequestEntityTooLarge, "invalid_request", "the request body is too large")
	}
	return b, nil
}

// limit counts one event for key in l and, over the limit, returns the error for an API request: 429 with
// Retry-After.
func (s *Server) limit(l *rateLimiter, key, what string) *oauthError {
	ok, wait := l.allow(key, s.now())
	if ok {
		return nil
	}
	e := oauthErr(http.StatusTooManyRequests, "temporarily_unavailable",
		"too many "+what+" from this client or address; retry after the time in Retry-After")
	e.RetryAfter = wait
	return e
}

// register answers Dynamic Client Registration (RFC 7591).
func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	if e := s.limit(s.limits.registersByAddr, clientaddr.Key(r, s.cfg.TrustedProxies), "registrations"); e != nil {
		return e
	}
	body, e := readRequestBody(r)
	if e != nil {
		return e
	}
	reg, meta, e := parseRegistration(body, s.now())
	if e != nil {
		return e
	}
	id := s.seal.clientID(reg)
	meta["client_id"] = id
	meta["client_id_issued_at"] = reg.IssuedAt
	if reg.confidential() {
		meta["client_secret"] = s.seal.clientSecret(id)
		meta["client_secret_expires_at"] = 0
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(meta)
	s.note(r, false, slog.String("client_name", reg.Name), slog.Any("redirect_uris", reg.RedirectURIs), slog.String("auth_method", reg.AuthMethod))
	return nil
}

// token authenticates the client, rewrites the request for the upstream and relays the upstream's JSON answer.
func (s *Server) token(w http.ResponseWriter, r *http.Request) error {
	body, e := readRequestBody(r)
	if e != nil {
		return e
	}
	tr, e := parseTokenRequest(r.Header.Get("Content-Type"), body, r.Header.Get("Authorization"))
	if e != nil {
		return e
	}
	upstreamCode, e := s.checkTokenRequest(tr)
	if e != nil {
		return e
	}
	as := s.upstream()
	if as == nil {
		e := oauthErr(http.StatusServiceUnavailable, "temporarily_unavailable", "the authorization server is not reachable yet; try again shortly")
		e.RetryAfter = 5 * time.Second
		return e
	}
	if e := s.limit(s.limits.tokensByAddr, clientaddr.Key(r, s.cfg.TrustedProxies), "token requests"); e != nil {
		return e
	}
	if e := s.limit(s.limits.tokensByClient, clientDigest(tr.ClientID), "token requests"); e != nil {
		return e
	}
	return s.relayToken(w, r, as, tr, upstreamCode)
}

// checkTokenRequest decides, before the authorization server is asked, whether a token request may go there: the
// client authenticated, the grant is one the server serves, the resource and scopes are allowed and, for
// authorization_code, the code is one this server issued to this client and redirect URI. It returns the upstream code
// the client's code carries.
func (s *Server) checkTokenRequest(tr tokenRequest) (upstreamCode string, e *oauthError) {
	reg, e := s.tokenClient(tr.ClientID)
	if e != nil {
		return "", e
	}
	if reg.confidential() && !macEqual(tr.Secret, s.seal.clientSecret(tr.ClientID)) {
		return "", oauthErr(401, "invalid_client", "client authentication failed")
	}
	switch grant := tr.Params.Get("grant_type"); {
	case grant == "":
		return "", errInvalidRequest("grant_type is missing")
	case !slices.Contains(grantTypes, grant):
		return "", oauthErr(400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
	if e := checkResource(tr.Params["resource"], s.cfg.Resource); e != nil {
		return "", e
	}
	if sc := tr.Params.Get("scope"); sc != "" {
		if _, e := (scopePolicy{allowed: s.cfg.Scopes}).settle(sc); e != nil {
			return "", e
		}
	}
	if tr.Params.Get("grant_type") != "authorization_code" {
		return "", nil
	}
	var c wrappedCode
	switch {
	case s.seal.open("code", tr.Params.Get("code"), &c) != nil:
		return "", oauthErr(400, "invalid_grant", "the code is not one this gateway issued")
	case c.Exp < s.now().Unix():
		return "", oauthErr(400, "invalid_grant", "the code has expired")
	case c.ClientID != tr.ClientID:
		return "", oauthErr(400, "invalid_grant", "the code was issued to another client")
	case tr.Params.Get("redirect_uri") != "" && tr.Params.Get("redirect_uri") != c.RedirectURI:
		return "", oauthErr(400, "invalid_grant", "redirect_uri differs from the authorization request's")
	}
	return c.Code, nil
}

// relayToken sends the rewritten token request to the authorization server, once, and relays its JSON answer.
func (s *Server) relayToken(w http.ResponseWriter, r *http.Request, as *metadata.AuthServer, tr tokenRequest, upstreamCode string) error {
	endpoint := slog.String("endpoint", as.TokenEndpoint)
	form, user, pass := upstreamTokenRequest(tr.Params, upstreamCode, s.cfg.Resource, s.client)
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, as.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return oauthErr(500, "server_error", "the authorization server's token endpoint is unusable",
			slog.String("cause", "upstream token endpoint unusable"), endpoint, slog.String("err", err.Error()))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := s.http.Do(req) // never retried: a refresh token may be single-use
	if err != nil {
		return oauthErr(502, "temporarily_unavailable", "the authorization server did not answer; try again",
			slog.String("cause", "upstream token request failed"), endpoint, slog.String("err", err.Error()))
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return oauthErr(502, "temporarily_unavailable", "the authorization server's answer could not be read; try again",
			slog.String("cause", "upstream token response unreadable"), endpoint, slog.String("err", err.Error()))
	}
	var answer map[string]any
	if json.Unmarshal(out, &answer) != nil || answer == nil {
		return oauthErr(502, "temporarily_unavailable", "the authorization server's answer is not JSON; try again",
			slog.String("cause", "upstream_not_json"), slog.Int("upstream_status", resp.StatusCode))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if resp.StatusCode == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="token"`)
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
	if resp.StatusCode != http.StatusOK {
		code, _ := answer["error"].(string)
		s.note(r, true, slog.String("cause", "upstream_refused"), slog.Int("upstream_status", resp.StatusCode),
			slog.String("upstream_error", oauthErrorCode(code)), slog.String("grant_type", tr.Params.Get("grant_type")))
	}
	return nil
}
