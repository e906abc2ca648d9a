package devauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxTokenRequestLen bounds the body of a token request.
const maxTokenRequestLen = 64 << 10

// tokenError is a refused token request (RFC 6749 §5.2).
type tokenError struct {
	status      int
	code        string
	description string
}

func badGrant(description string) *tokenError {
	return &tokenError{http.StatusBadRequest, "invalid_grant", description}
}

// token is the token endpoint: authorization_code (with PKCE) and refresh_token grants for public clients.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	resp, terr := s.tokenResponse(w, r)
	if terr != nil {
		s.log.Info("token request refused", "error_code", terr.code, "reason", terr.description)
		if terr.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		}
		writeJSONError(w, terr.status, terr.code, terr.description)
		return
	}
	b, _ := json.Marshal(resp)
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) tokenResponse(w http.ResponseWriter, r *http.Request) (map[string]any, *tokenError) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenRequestLen)
	if err := r.ParseForm(); err != nil {
		return nil, &tokenError{http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded"}
	}
	f := r.PostForm
	for k, v := range f {
		if len(v) > 1 && k != "resource" {
			return nil, &tokenError{http.StatusBadRequest, "invalid_request", "parameter " + k + " is repeated"}
		}
	}
	clientID := f.Get("client_id")
	if user, _, ok := r.BasicAuth(); ok { // public clients may still send their id this way; a secret is ignored
		if u, err := url.QueryUnescape(user); err == nil {
			user = u
		}
		if clientID != "" && clientID != user {
			return nil, &tokenError{http.StatusBadRequest, "invalid_request", "client_id differs between the body and the Authorization header"}
		}
		clientID = user
	}
	if _, err := parseClientID(clientID); err != nil {
		return nil, &tokenError{http.StatusUnauthorized, "invalid_client", "unknown client_id: register the client first"}
	}
	switch f.Get("grant_type") {
	case "authorization_code":
		return s.exchangeCode(f, clientID)
	case "refresh_token":
		return s.refreshGrant(f, clientID)
	case "":
		return nil, &tokenError{http.StatusBadRequest, "invalid_request", "grant_type is required"}
	default:
		return nil, &tokenError{http.StatusBadRequest, "unsupported_grant_type", "use authorization_code or refresh_token"}
	}
}

// exchangeCode redeems an authorization code. A code works once; presenting it again revokes the refresh tokens it
// produced (RFC 6749 §4.1.2).
func (s *Server) exchangeCode(f url.Values, clientID string) (map[string]any, *tokenError) {
	code := f.Get("code")
	now := s.now()
	s.mu.Lock()
	e, ok := s.state.codes[code]
	if !ok {
		spent, wasSpent := s.state.spent[code]
		if wasSpent {
			s.state.revoke(spent.family)
		}
		s.mu.Unlock()
		if wasSpent {
			s.log.Warn("authorization code presented twice; every token issued from it is revoked")
			return nil, badGrant("the authorization code was already used")
		}
		return nil, badGrant("unknown or expired authorization code")
	}
	delete(s.state.codes, code)
	s.state.spent[code] = spentEntry{family: e.family, expires: e.expires}
	s.mu.Unlock()

	switch {
	case !now.Before(e.expires):
		return nil, badGrant("the authorization code has expired")
	case e.clientID != clientID:
		return nil, badGrant("the authorization code was issued to another client")
	case (e.redirectGiven || f.Has("redirect_uri")) && f.Get("redirect_uri") != e.redirectURI:
		return nil, badGrant("redirect_uri differs from the one in the authorization request")
	}
	verifier := f.Get("code_verifier")
	if verifier == "" {
		return nil, &tokenError{http.StatusBadRequest, "invalid_request", "code_verifier is required (PKCE)"}
	}
	if len(verifier) < 43 || len(verifier) > 128 || !isUnreserved(verifier) || !equal(s256(verifier), e.challenge) {
		return nil, badGrant("PKCE verification failed: code_verifier does not match code_challenge")
	}
	if _, aerr := resourceOf(f["resource"], e.resource); aerr != nil {
		return nil, &tokenError{http.StatusBadRequest, aerr.code, aerr.description}
	}
	return s.issue(e.grant, e.scope, now, true)
}

// refreshGrant rotates a refresh token: the old one stops working and a new one comes with the access token.
// Presenting a spent refresh token again revokes the whole authorization (OAuth 2.1 §4.3.1).
func (s *Server) refreshGrant(f url.Values, clientID string) (map[string]any, *tokenError) {
	rt := f.Get("refresh_token")
	now := s.now()
	s.mu.Lock()
	e, ok := s.state.refresh[rt]
	if !ok || !now.Before(e.expires) {
		spent, wasSpent := s.state.spent[rt]
		if wasSpent {
			s.state.revoke(spent.family)
		}
		s.mu.Unlock()
		if wasSpent {
			s.log.Warn("spent refresh token presented again; every token of that authorization is revoked")
			return nil, badGrant("the refresh token was already used; sign in again")
		}
		return nil, badGrant("unknown or expired refresh token")
	}
	if e.clientID != clientID {
		s.mu.Unlock()
		return nil, badGrant("the refresh token was issued to another client")
	}
	scope := e.scope
	if f.Has("scope") {
		scope = strings.Fields(f.Get("scope"))
		for _, sc := range scope {
			if !slices.Contains(e.scope, sc) {
				s.mu.Unlock()
				return nil, &tokenError{http.StatusBadRequest, "invalid_scope", "scope " + sc + " was not granted"}
			}
		}
	}
	if _, aerr := resourceOf(f["resource"], e.resource); aerr != nil {
		s.mu.Unlock()
		return nil, &tokenError{http.StatusBadRequest, aerr.code, aerr.description}
	}
	delete(s.state.refresh, rt)
	s.state.spent[rt] = spentEntry{family: e.family, expires: e.expires}
	s.mu.Unlock()
	return s.issue(e.grant, scope, now, false)
}

// issue signs an access token (and an ID token when openid was granted at sign-in) and stores a new refresh token.
func (s *Server) issue(g grant, scope []string, now time.Time, withIDToken bool) (map[string]any, *tokenError) {
	u := g.user
	claims := map[string]any{
		"iss":       s.issuer,
		"sub":       u.ID,
		"aud":       g.resource,
		"exp":       now.Add(s.accessTTL).Unix(),
		"iat":       now.Unix(),
		"jti":       ulid(),
		"client_id": g.clientID,
		"sid":       g.sid,
		"scope":     strings.Join(scope, " "),
		"email":     u.Email,
		"name":      u.Name(),
	}
	if u.OrgID != "" {
		claims["org_id"] = u.OrgID
	}
	if len(u.Roles) > 0 {
		claims["role"] = u.Roles[0]
		claims["roles"] = u.Roles
	}
	if len(u.Permissions) > 0 {
		claims["permissions"] = u.Permissions
	}
	access, err := s.sign(claims)
	if err != nil {
		return nil, &tokenError{http.StatusInternalServerError, "server_error", "the token could not be signed"}
	}
	refresh := randomToken(32)
	s.mu.Lock()
	if err := s.state.room(now); err != nil {
		s.mu.Unlock()
		return nil, &tokenError{http.StatusServiceUnavailable, "temporarily_unavailable", err.Error()}
	}
	s.state.refresh[refresh] = &refreshEntry{grant: g, expires: now.Add(s.refreshTT)}
	s.mu.Unlock()

	resp := map[string]any{
		"access_token":  access,
		"token_type":    "Bearer",
		"expires_in":    int64(s.accessTTL.Seconds()),
		"refresh_token": refresh,
		"scope":         strings.Join(scope, " "),
	}
	if withIDToken && slices.Contains(g.scope, "openid") {
		id := map[string]any{
			"iss": s.issuer, "sub": u.ID, "aud": g.clientID, "exp": now.Add(s.accessTTL).Unix(), "iat": now.Unix(),
			"sid": g.sid, "email": u.Email, "email_verified": true, "name": u.Name(), "given_name": u.FirstName,
			"family_name": u.LastName,
		}
		if g.nonce != "" {
			id["nonce"] = g.nonce
		}
		if u.OrgID != "" {
			id["org_id"] = u.OrgID
		}
		if resp["id_token"], err = s.sign(id); err != nil {
			return nil, &tokenError{http.StatusInternalServerError, "server_error", "the token could not be signed"}
		}
	}
	s.log.Info("tokens issued", "user", u.ID, "aud", g.resource, "scope", strings.Join(scope, " "))
	return resp, nil
}

// sign returns claims as a compact RS256 JWS.
func (s *Server) sign(claims map[string]any) (string, error) {
	b, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := s.signer.Sign(b)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
