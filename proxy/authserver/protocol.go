package authserver

// The protocol rules of the authorization server, as pure functions: what a client may register, what an
// authorization or token request must carry, and how each is rewritten for the authorization server. The handlers in
// handlers.go and authorize.go wrap them.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on what a client may register.
const (
	maxClientIDLen    = 8 << 10
	maxRedirectURIs   = 10
	maxRedirectURILen = 2000
	maxClientNameLen  = 200
	maxRemembered     = 20 // client consents remembered in one cookie
	clientIDPrefix    = "mcpgw_"
)

// echo (the client's own, without anything it may not choose). Unknown fields are echoed; fields that contradict what
// the gateway supports are refused with invalid_client_metadata or invalid_redirect_uri.
func parseRegistration(body []byte, now time.Time) (registration, map[string]any, *oauthError) {
	var meta map[string]any
	if err := json.Unmarshal(body, &meta); err != nil || meta == nil {
		return registration{}, nil, oauthErr(400, "invalid_client_metadata", "the body must be a JSON object of client metadata")
	}
	for _, k := range []string{"client_id", "client_secret", "client_id_issued_at", "client_secret_expires_at", "registration_access_token", "registration_client_uri"} {
		delete(meta, k)
	}
	bad := func(desc string) (registration, map[string]any, *oauthError) {
		return registration{}, nil, oauthErr(400, "invalid_client_metadata", desc)
	}
	reg := registration{IssuedAt: now.Unix(), AuthMethod: "client_secret_basic"} // RFC 7591 §2: the default method
	uris, ok := jsonStrings(meta["redirect_uris"])
	if !ok || len(uris) == 0 {
		return registration{}, nil, oauthErr(400, "invalid_redirect_uri", "redirect_uris must be a non-empty array of URLs")
	}
	if len(uris) > maxRedirectURIs {
		return registration{}, nil, oauthErr(400, "invalid_redirect_uri", fmt.Sprintf("at most %d redirect_uris", maxRedirectURIs))
	}
	for _, u := range uris {
		if err := checkRedirectURI(u); err != nil {
			return registration{}, nil, oauthErr(400, "invalid_redirect_uri", err.Error())
		}
	}
	reg.RedirectURIs = uris
	if v, present := meta["token_endpoint_auth_method"]; present {
		m, _ := v.(string)
		if m != "none" && m != "client_secret_basic" && m != "client_secret_post" {
			return bad("token_endpoint_auth_method must be none, client_secret_basic or client_secret_post")
		}
		reg.AuthMethod = m
	}
	if v, present := meta["grant_types"]; present {
		gt, ok := jsonStrings(v)
		if !ok || slices.ContainsFunc(gt, func(g string) bool { return g != "authorization_code" && g != "refresh_token" }) {
			return bad("grant_types may contain authorization_code and refresh_token only")
		}
	} else {
		meta["grant_types"] = []string{"authorization_code", "refresh_token"}
	}
	if v, present := meta["response_types"]; present {
		rt, ok := jsonStrings(v)
		if !ok || slices.ContainsFunc(rt, func(r string) bool { return r != "code" }) {
			return bad("response_types may contain code only")
		}
	} else {
		meta["response_types"] = []string{"code"}
	}
	if v, present := meta["client_name"]; present {
		name, ok := v.(string)
		if !ok {
			return bad("client_name must be a string")
		}
		reg.Name = truncateRunes(strings.TrimSpace(name), maxClientNameLen)
	}
	meta["token_endpoint_auth_method"] = reg.AuthMethod
	return reg, meta, nil
}

// jsonStrings reads a JSON array of strings.
func jsonStrings(v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}

// checkRedirectURI accepts an absolute URL without a fragment: https; http on a loopback host (RFC 8252 §7.3); or a
// private-use scheme of a native application (RFC 8252 §7.1), such as cursor://anysphere.cursor-mcp/oauth/callback
// or com.example.app:/cb. Schemes in refusedScheme are refused: see there.
func checkRedirectURI(s string) error {
	if len(s) > maxRedirectURILen {
		return fmt.Errorf("a redirect URI is longer than %d bytes", maxRedirectURILen)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || strings.Contains(s, "#") {
		return errors.New("a redirect URI must be an absolute URL without a fragment")
	}
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "https":
		if u.Host == "" {
			return errors.New("an https redirect URI must have a host")
		}
	case scheme == "http":
		if !isLoopbackHost(u.Hostname()) {
			return errors.New("an http redirect URI must be on localhost, 127.0.0.1 or [::1]; use https otherwise")
		}
	case refusedScheme(scheme):
		return fmt.Errorf("redirect URI scheme %q is not allowed: browsers or operating systems run or show content with it", scheme)
	}
	if u.User != nil {
		return errors.New("a redirect URI must not carry user information")
	}
	if strings.ContainsFunc(u.Host, func(r rune) bool { return r >= utf8.RuneSelf }) {
		// The consent page shows the URI for a person to check: a Unicode host could imitate another's.
		return errors.New("a redirect URI's host must be in ASCII (an internationalized name in its xn-- form)")
	}
	return nil
}

// refusedSchemes are the schemes, besides http and https, that a redirect URI may not have. A redirect to a
// private-use scheme hands the URL to whatever the browser or operating system has registered for it; for these, that
// means running or showing content the registrant chose (who may be anyone: registration is open) instead of passing
// an authorization response to an application:
//
//   - javascript, vbscript, data: run script or render the registrant's document (the classic open-redirect to XSS);
//   - blob, filesystem, about, view-source, file, jar, mhtml, mk, its, ms-its, res, resource, chrome,
//     chrome-extension, moz-extension, edge, opera: browser internals and local files, never an application's callback;
//   - ms-* (all of them: ms-msdt, ms-officecmd, ms-appinstaller, ms-word, ms-excel, ms-settings, ms-cxh, …),
//     search-ms, search, shell: Windows protocol handlers, several of which have run code or fetched files from a
//     remote share when opened from a link (the Follina attack used ms-msdt);
//   - intent: starts any Android application component with arguments;
//   - mailto, tel, sms, callto, sip, sips, facetime, facetime-audio, skype: hand the URL to a communications
//     application, which would dial or send to an address the registrant chose;
//   - ws, wss: not navigable.
var refusedSchemes = []string{
	"javascript", "vbscript", "data",
	"blob", "filesystem", "about", "view-source", "file", "jar", "mhtml", "mk", "its", "res", "resource",
	"chrome", "chrome-extension", "moz-extension", "edge", "opera",
	"search-ms", "search", "shell",
	"intent",
	"mailto", "tel", "sms", "callto", "sip", "sips", "facetime", "facetime-audio", "skype",
	"ws", "wss",
}

// refusedScheme reports whether a lower-case scheme is one of refusedSchemes or a Windows ms-* handler.
func refusedScheme(scheme string) bool {
	return strings.HasPrefix(scheme, "ms-") || slices.Contains(refusedSchemes, scheme)
}

// redirectURIMatches reports whether got is the registered redirect URI: byte for byte, except that an http loopback
// URI matches on any port (RFC 8252 §7.3).
func redirectURIMatches(registered, got string) bool {
	if registered == got {
		return true
	}
	r, err1 := url.Parse(registered)
	g, err2 := url.Parse(got)
	if err1 != nil || err2 != nil || r.Scheme != "http" || g.Scheme != "http" || !isLoopbackHost(r.Hostname()) {
		return false
	}
	return r.Hostname() == g.Hostname() && r.User == nil && g.User == nil && r.EscapedPath() == g.EscapedPath() &&
		r.RawQuery == g.RawQuery && r.Fragment == "" && g.Fragment == "" && !g.ForceQuery && !r.ForceQuery
}

// resolveRedirectURI returns the redirect URI of an authorization request: the one given, if registered, or the only
// one registered when none is given. registered is the registration's entry it matched (for a loopback URI, without
// the port the request chose): consent is remembered for that.
func resolveRedirectURI(reg registration, given string) (registered, redirectURI string, ok bool) {
	if given == "" {
		if len(reg.RedirectURIs) == 1 {
			return reg.RedirectURIs[0], reg.RedirectURIs[0], true
		}
		return "", "", false
	}
	for _, r := range reg.RedirectURIs {
		if redirectURIMatches(r, given) {
			return r, given, true
		}
	}
	return "", "", false
}

// singleParams are the authorization parameters that must not appear more than once (RFC 6749 §3.1).
var singleParams = []string{"client_id", "redirect_uri", "state", "response_type", "code_challenge", "code_challenge_method", "scope", "response_mode"}

// unsupportedParams are authorization parameters the gateway refuses rather than pass on: each would let a client
// obtain, behind the consent page, something other than what the page shows. A request object (request, request_uri)
// can carry another redirect_uri, scope or resource; authorization_details, claims and audience ask for other rights
// or another audience.
var unsupportedParams = []string{"request", "request_uri", "authorization_details", "claims", "audience"}

// checkAuthorizeParams checks what an authorization request must have once the client and its redirect URI are
// known: the errors it returns are sent to the client's redirect URI.
func checkAuthorizeParams(q url.Values) *oauthError {
	for _, p := range singleParams {
		if len(q[p]) > 1 {
			return errInvalidRequest("parameter " + p + " is repeated")
		}
	}
	for _, p := range unsupportedParams {
		if q.Has(p) {
			return errInvalidRequest("parameter " + p + " is not supported by this gateway")
		}
	}
	if q.Get("response_type") != "code" {
		return oauthErr(400, "unsupported_response_type", "response_type must be code")
	}
	if m := q.Get("response_mode"); m != "" && m != "query" {
		return errInvalidRequest("response_mode must be query")
	}
	if q.Get("code_challenge") == "" {
		return errInvalidRequest("PKCE is required: send code_challenge with code_challenge_method S256")
	}
	if q.Get("code_challenge_method") != "S256" {
		return errInvalidRequest("code_challenge_method must be S256")
	}
	return nil
}

// checkResource checks the resource parameters of a request (RFC 8707) against the gateway's resource identifier: none,
// or each naming it. The gateway then sends exactly its own identifier upstream, so that tokens are minted for this MCP
// server only. A trailing slash is tolerated on an identifier without a path (URL parsers add one to an origin).
func checkResource(values []string, resource string) *oauthError {
	for _, v := range values {
		if v != resource && !(v == resource+"/" && strings.Count(resource, "/") == 2) {
			return oauthErr(400, "invalid_target", "this gateway issues tokens for resource "+resource+" only")
		}
	}
	return nil
}

// Limits on a requested scope.
const (
	maxScopes     = 50
	maxScopeToken = 200
)

// scopePolicy decides the scope the gateway asks the authorization server for.
type scopePolicy struct {
	allowed  []string // Config.Scopes; empty: any well-formed scope
	fallback []string // sent when the client asks for none; empty: none
}

// settle returns the scopes to request for a client's scope parameter: the fallback when it is empty, else its scopes,
// each well-formed and, with an allow-list, on it. Errors are invalid_scope.
func (p scopePolicy) settle(requested string) ([]string, *oauthError) {
	scopes := strings.Fields(requested)
	if len(scopes) == 0 {
		return slices.Clone(p.fallback), nil
	}
	if len(scopes) > maxScopes {
		return nil, oauthErr(400, "invalid_scope", fmt.Sprintf("at most %d scopes may be requested", maxScopes))
	}
	for _, s := range scopes {
		if len(s) > maxScopeToken || !validScopeToken(s) {
			return nil, oauthErr(400, "invalid_scope", "a requested scope is malformed")
		}
		if len(p.allowed) > 0 && !slices.Contains(p.allowed, s) {
			// The scope itself is not repeated: the text is shown on the gateway's pages and logged.
			return nil, oauthErr(400, "invalid_scope", "a requested scope is not available here; allowed: "+strings.Join(p.allowed, " "))
		}
	}
	return slices.Compact(scopes), nil
}

// resourceScopes are the scopes_supported of the protected resource metadata in Option B: the advertised
// scopes without offline_access (a matter between client and authorization server, not a right at this resource), and
// the scopes every token must carry.
func resourceScopes(advertised, required []string) []string {
	out := slices.DeleteFunc(slices.Clone(advertised), func(s string) bool { return s == "offline_access" })
	for _, s := range required {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// upstreamAuthorizeURL rewrites a client's authorization request for the upstream authorization endpoint: client_id
// becomes the pre-registered client, redirect_uri the gateway's callback, state the gateway's sealed state; every
// other parameter (PKCE, scope, resource, prompt, login_hint, …) is kept as the client sent it. Parameters already in
// the endpoint's query are kept unless the request names them too.
func upstreamAuthorizeURL(endpoint string, in url.Values, clientID, callback, state string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("authorization endpoint %q is not an absolute URL", endpoint)
	}
	q := u.Query()
	for k, vs := range in {
		q[k] = slices.Clone(vs)
	}
	q.Set("client_id", clientID)
	q.Set("redirect_uri", callback)
	q.Set("state", state)
	u.RawQuery = q.Encode()
	u.Fragment = ""
	return u.String(), nil
}

// callbackParams is what the callback sends the client: the sealed code, or the upstream's error.
type callbackParams struct {
	Code             string
	Error            string
	ErrorDescription string
}

// clientRedirectURL builds the redirect back to the client: its redirect URI with code (or error and
// error_description), the client's own state, and iss = the gateway's issuer (RFC 9207). The redirect URI's own query
// is kept. No error_uri is ever sent: a link the client would show its user must not come from a query string.
func clientRedirectURL(redirectURI, clientState, issuer string, p callbackParams) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI // registered URIs parse; unreachable
	}
	q := u.Query()
	for _, k := range []string{"code", "state", "iss", "error", "error_description", "error_uri"} {
		q.Del(k)
	}
	if p.Error != "" {
		q.Set("error", oauthErrorCode(p.Error))
		if d := errorDescription(p.ErrorDescription); d != "" {
			q.Set("error_description", d)
		}
	} else {
		q.Set("code", p.Code)
	}
	if clientState != "" {
		q.Set("state", clientState)
	}
	q.Set("iss", issuer)
	u.RawQuery = q.Encode()
	u.Fragment = ""
	return u.String()
}

// oauthErrorCode keeps an upstream error code to the characters RFC 6749 §4.1.2.1 allows.
func oauthErrorCode(s string) string {
	if s == "" || len(s) > 100 {
		return "server_error"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return "server_error"
		}
	}
	return s
}

// maxErrorDescription bounds an error_description passed on or logged.
const maxErrorDescription = 200

// errorDescription keeps an upstream error_description to the characters RFC 6749 §4.1.2.1 allows (others become
// spaces) and to maxErrorDescription bytes.
func errorDescription(s string) string {
	if len(s) > maxErrorDescription {
		s = s[:maxErrorDescription]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = ' '
		}
	}
	return strings.TrimSpace(string(b))
}

// tokenRequest is a client's token request, parsed: its parameters and how it authenticated.
type tokenRequest struct {
	Params   url.Values // without client_id and client_secret
	ClientID string
	Secret   string
	Method   string // how the client authenticated: none, client_secret_basic or client_secret_post
}

// parseTokenRequest reads a token request body (application/x-www-form-urlencoded, or a JSON object of strings) and
// the client's credentials from an Authorization: Basic header (RFC 6749 §2.3.1, form-encoded id and secret) or the
// body. Credentials in both places, or two different client ids, are refused.
func parseTokenRequest(contentType string, body []byte, authorization string) (tokenRequest, *oauthError) {
	var tr tokenRequest
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/json":
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil || m == nil {
			return tr, errInvalidRequest("the body is not a JSON object")
		}
		tr.Params = url.Values{}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				tr.Params.Set(k, v)
			case json.Number:
				tr.Params.Set(k, v.String())
			case float64:
				tr.Params.Set(k, fmt.Sprint(v))
			case bool:
				tr.Params.Set(k, fmt.Sprint(v))
			default:
				return tr, errInvalidRequest("parameter " + k + " must be a string")
			}
		}
	case "application/x-www-form-urlencoded", "":
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return tr, errInvalidRequest("the body is not a valid form")
		}
		for k, vs := range q {
			if len(vs) > 1 {
				return tr, errInvalidRequest("parameter " + k + " is repeated")
			}
		}
		tr.Params = q
	default:
		return tr, errInvalidRequest("send the token request as application/x-www-form-urlencoded")
	}
	bodyID, bodySecret := tr.Params.Get("client_id"), tr.Params.Get("client_secret")
	tr.Params.Del("client_id")
	tr.Params.Del("client_secret")
	tr.ClientID, tr.Method = bodyID, "none"
	if bodySecret != "" {
		tr.Secret, tr.Method = bodySecret, "client_secret_post"
	}
	if authorization != "" {
		scheme, cred, _ := strings.Cut(authorization, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return tr, oauthErr(401, "invalid_client", "client authentication must use HTTP Basic or the request body")
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return tr, oauthErr(401, "invalid_client", "malformed HTTP Basic credentials")
		}
		u, p, ok := strings.Cut(string(raw), ":")
		id, err1 := url.QueryUnescape(u)
		secret, err2 := url.QueryUnescape(p)
		if !ok || err1 != nil || err2 != nil {
			return tr, oauthErr(401, "invalid_client", "malformed HTTP Basic credentials")
		}
		if bodySecret != "" || (bodyID != "" && bodyID != id) {
			return tr, errInvalidRequest("send client credentials once: in the Authorization header or in the body")
		}
		tr.ClientID, tr.Secret, tr.Method = id, secret, "client_secret_basic"
	}
	if tr.ClientID == "" {
		return tr, oauthErr(401, "invalid_client", "client_id is missing")
	}
	return tr, nil
}

// upstreamClient is the pre-registered client, as the token endpoint sees it.
type upstreamClient struct {
	ID         string
	Secret     string // empty: a public client
	AuthMethod string // client_secret_basic or client_secret_post
	Callback   string
}

// tokenParams are the token request parameters passed on to the authorization server. Any other is dropped (RFC 6749
// §3.2 has servers ignore parameters they do not know), so that none can ask for another audience or other rights.
var tokenParams = []string{"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope"}

// upstreamTokenRequest rewrites a client's token parameters for the upstream token endpoint: client_id becomes the
// pre-registered client; resource becomes the gateway's resource identifier; for authorization_code, code becomes the
// upstream code and redirect_uri the gateway's callback; the pre-registered secret is added (in a Basic header or the
// body) for authorization_code and refresh_token grants only. Of the other parameters, those in tokenParams are kept.
// It returns the form and, when the secret goes in a header, the Basic credentials.
func upstreamTokenRequest(params url.Values, upstreamCode, resource string, c upstreamClient) (form url.Values, basicUser, basicPass string) {
	form = url.Values{}
	for _, k := range tokenParams {
		if vs, ok := params[k]; ok {
			form[k] = slices.Clone(vs)
		}
	}
	form.Set("resource", resource)
	grant := form.Get("grant_type")
	if grant == "authorization_code" {
		form.Set("code", upstreamCode)
		form.Set("redirect_uri", c.Callback)
	}
	form.Set("client_id", c.ID)
	if c.Secret != "" && (grant == "authorization_code" || grant == "refresh_token") {
		if c.AuthMethod == "client_secret_post" {
			form.Set("client_secret", c.Secret)
		} else {
			form.Del("client_id") // RFC 6749 §2.3.1: the header carries it
			return form, url.QueryEscape(c.ID), url.QueryEscape(c.Secret)
		}
	}
	return form, "", ""
}

// isLoopbackHost reports whether host (without port) is localhost or a loopback IP address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// validScopeToken reports whether s is a scope-token (RFC 6749 §3.3) that can also travel in a challenge.
func validScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// CheckRedirectURI accepts a redirect URI a client may register or publish in its metadata document: see
// checkRedirectURI.
func CheckRedirectURI(s string) error { return checkRedirectURI(s) }
