package devauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// client is what the server remembers of a registered client: nothing, in fact, because the client id carries it.
// A client id is "client_" followed by the base64url JSON of this struct, so registrations need no storage and
// survive a restart. Registration is open anyway: anyone may register any client, so the id needs no signature.
type client struct {
	RedirectURIs []string `json:"r"`
	Name         string   `json:"n,omitempty"`
}

const (
	clientIDPrefix     = "client_"
	maxClientIDLen     = 8 << 10
	maxRegistrationLen = 64 << 10
	maxRedirectURIs    = 10
)

// errUnknownClient is returned for a client id this server did not issue.
var errUnknownClient = errors.New("unknown client_id")

func (c client) id() string {
	b, _ := json.Marshal(c) // strings only
	return clientIDPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// parseClientID decodes and re-validates a client id.
func parseClientID(id string) (client, error) {
	enc, ok := strings.CutPrefix(id, clientIDPrefix)
	if !ok || len(id) > maxClientIDLen {
		return client{}, errUnknownClient
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return client{}, errUnknownClient
	}
	var c client
	if err := json.Unmarshal(b, &c); err != nil || len(c.RedirectURIs) == 0 {
		return client{}, errUnknownClient
	}
	for _, u := range c.RedirectURIs {
		if checkRedirectURI(u) != nil {
			return client{}, errUnknownClient
		}
	}
	return c, nil
}

// displayName is how pages name the client.
func (c client) displayName() string {
	if c.Name != "" {
		return c.Name
	}
	return "An unnamed client"
}

// redirectURI returns the registered redirect URI that requested matches (requested itself, which may differ from the
// registered one in the port of a loopback URI), or an error. An empty requested URI selects the only registered one.
func (c client) redirectURI(requested string) (string, error) {
	if requested == "" {
		if len(c.RedirectURIs) == 1 {
			return c.RedirectURIs[0], nil
		}
		return "", errors.New("redirect_uri is required: the client registered several")
	}
	if checkRedirectURI(requested) == nil {
		for _, r := range c.RedirectURIs {
			if redirectMatches(r, requested) {
				return requested, nil
			}
		}
	}
	return "", fmt.Errorf("redirect_uri %q is not registered for this client", requested)
}

// checkRedirectURI accepts an absolute URI without fragment or user information: http on a loopback host
// (localhost, 127.0.0.1, [::1]), https, or a private-use scheme of a native app. Schemes that run code or read local
// data are refused.
func checkRedirectURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return fmt.Errorf("%q is not an absolute URI", s)
	}
	if u.Fragment != "" || strings.Contains(s, "#") || u.User != nil {
		return fmt.Errorf("%q must not have a fragment or user information", s)
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("%q: http redirect URIs must be on a loopback host (localhost, 127.0.0.1 or [::1]); use https otherwise", s)
		}
	case "https":
		if u.Host == "" {
			return fmt.Errorf("%q has no host", s)
		}
	case "javascript", "data", "vbscript", "file", "about", "blob", "ws", "wss":
		return fmt.Errorf("%q: scheme %q is not allowed", s, u.Scheme)
	}
	return nil
}

// redirectMatches reports whether requested matches the registered redirect URI: equal strings, or, for http on a
// loopback host, the same host, path and query on any port (RFC 8252 §7.3).
func redirectMatches(registered, requested string) bool {
	if registered == requested {
		return true
	}
	r, err1 := url.Parse(registered)
	q, err2 := url.Parse(requested)
	if err1 != nil || err2 != nil || r.Scheme != "http" || q.Scheme != "http" || !isLoopbackHost(r.Hostname()) {
		return false
	}
	return strings.EqualFold(r.Hostname(), q.Hostname()) && r.EscapedPath() == q.EscapedPath() && r.RawQuery == q.RawQuery
}

// registrationRequest is the part of an RFC 7591 registration request the server reads.
type registrationRequest struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name"`
	ClientURI               string   `json:"client_uri"`
	LogoURI                 string   `json:"logo_uri"`
	Scope                   string   `json:"scope"`
	ApplicationType         string   `json:"application_type"`
}

// register is open Dynamic Client Registration (RFC 7591) for public clients. A request for a confidential client
// gets a public one (token_endpoint_auth_method "none"), as RFC 7591 §3.2.1 allows; the client must use what the
// answer says.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegistrationLen))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "invalid_client_metadata", "the registration request is too large or unreadable")
		return
	}
	var req registrationRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSONError(w, http.StatusBadRequest, "invalid_client_metadata", "the registration request is not a JSON object with the RFC 7591 fields")
		return
	}
	resp, code, err := registration(req)
	if err != nil {
		s.log.Info("client registration refused", "error_code", code, "err", err)
		writeJSONError(w, http.StatusBadRequest, code, err.Error())
		return
	}
	resp["client_id_issued_at"] = s.now().Unix()
	b, _ := json.Marshal(resp)
	s.log.Info("client registered", "client_name", req.ClientName, "redirect_uris", req.RedirectURIs)
	writeJSON(w, http.StatusCreated, b)
}

// registration decides a registration request: the response members, or an RFC 7591 error code and a description.
func registration(req registrationRequest) (map[string]any, string, error) {
	if len(req.RedirectURIs) == 0 {
		return nil, "invalid_redirect_uri", errors.New("redirect_uris is required")
	}
	if len(req.RedirectURIs) > maxRedirectURIs {
		return nil, "invalid_redirect_uri", fmt.Errorf("at most %d redirect_uris", maxRedirectURIs)
	}
	for _, u := range req.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return nil, "invalid_redirect_uri", err
		}
	}
	grants := req.GrantTypes
	if len(grants) == 0 {
		grants = []string{"authorization_code", "refresh_token"}
	}
	for _, g := range grants {
		if g != "authorization_code" && g != "refresh_token" {
			return nil, "invalid_client_metadata", fmt.Errorf("grant type %q is not supported; use authorization_code and refresh_token", g)
		}
	}
	for _, t := range req.ResponseTypes {
		if t != "code" {
			return nil, "invalid_client_metadata", fmt.Errorf("response type %q is not supported; use code", t)
		}
	}
	c := client{RedirectURIs: slices.Clone(req.RedirectURIs), Name: req.ClientName}
	id := c.id()
	if len(id) > maxClientIDLen {
		return nil, "invalid_client_metadata", errors.New("the redirect URIs and client name are too long")
	}
	resp := map[string]any{
		"client_id":                  id,
		"redirect_uris":              req.RedirectURIs,
		"token_endpoint_auth_method": "none",
		"grant_types":                grants,
		"response_types":             []string{"code"},
	}
	for k, v := range map[string]string{"client_name": req.ClientName, "client_uri": req.ClientURI, "logo_uri": req.LogoURI,
		"scope": req.Scope, "application_type": req.ApplicationType} {
		if v != "" {
			resp[k] = v
		}
	}
	return resp, "", nil
}
