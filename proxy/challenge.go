package proxy

import (
	"net/http"
	"strings"

	"github.com/mcp-gateway/gateway/proxy/token"
)

// Challenge describes a WWW-Authenticate: Bearer challenge (RFC 6750 §3, RFC 9728 §5.1).
type Challenge struct {
	// Error is "", "invalid_token", "invalid_request" or "insufficient_scope".
	Error string
	// Description is client-safe ASCII text without '"' or '\'.
	Description string
	// Scopes are the scopes the resource needs; empty omits scope=.
	Scopes []string
	// ResourceMetadata is the URL of the protected resource metadata.
	ResourceMetadata string
}

// String formats the challenge. Error and description come first, so that clients that read only the first
// parameters still see them.
func (c Challenge) String() string {
	var b strings.Builder
	b.WriteString("Bearer ")
	sep := ""
	param := func(name, value string) {
		b.WriteString(sep)
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(quoteSafe(value))
		b.WriteString(`"`)
		sep = ", "
	}
	if c.Error != "" {
		param("error", c.Error)
		if c.Description != "" {
			param("error_description", c.Description)
		}
	}
	if len(c.Scopes) > 0 {
		param("scope", strings.Join(c.Scopes, " "))
	}
	param("resource_metadata", c.ResourceMetadata)
	return b.String()
}

// quoteSafe drops the characters that cannot appear in a quoted-string parameter as the gateway writes them.
func quoteSafe(s string) string {
	if !strings.ContainsAny(s, "\"\\\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '"', '\\', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

// Reasons for refusing a request that are not about its bearer token (see token.Reason).
const (
	ReasonSession token.Reason = "session_mismatch" // Mcp-Session-Id unknown or owned by another user
	ReasonOrigin  token.Reason = "origin"           // Origin header not allowed
)

// descriptions are the fixed, client-safe texts for each reason. They say what is wrong with the request, never how the
// gateway is configured.
var descriptions = map[token.Reason]string{
	token.ReasonNoToken:                  "authentication required: send an OAuth access token in the Authorization header",
	token.ReasonMalformed:                "the access token is malformed",
	token.ReasonSignature:                "the access token signature is invalid",
	token.ReasonUnknownKey:               "the access token is signed with an unknown key",
	token.ReasonExpired:                  "the access token has expired",
	token.ReasonNotYetValid:              "the access token is not valid yet",
	token.ReasonIssuer:                   "the access token was issued by another authorization server",
	token.ReasonAudience:                 "the access token was not issued for this resource",
	token.ReasonMissingClaim:             "the access token lacks a required claim",
	token.ReasonInvalidClaim:             "the access token has a role, permission or scope value that cannot be forwarded",
	token.ReasonScope:                    "the access token lacks a required scope",
	token.ReasonKeysUnavailable:          "the authorization server keys are not loaded yet, retry shortly",
	token.ReasonInactive:                 "the access token is not active",
	token.ReasonIntrospectionUnavailable: "the authorization server could not confirm the access token, retry shortly",
	ReasonSession:                        "unknown session, or a session that belongs to another user: initialize a new session",
	ReasonOrigin:                         "origin not allowed",
}

// challengeFor maps an authentication failure to its status, challenge and body code. It decides what a client sees of a
// refused token (see refusal).
func challengeFor(reason token.Reason, prm string, scopes []string) (status int, ch Challenge, code string) {
	ch = Challenge{ResourceMetadata: prm, Scopes: scopes, Description: descriptions[reason]}
	switch reason {
	case token.ReasonNoToken:
		ch.Description = "" // RFC 6750 §3.1: no error code when the request carried no credentials
		return http.StatusUnauthorized, ch, "unauthorized"
	case token.ReasonScope:
		ch.Error = "insufficient_scope"
		return http.StatusForbidden, ch, ch.Error
	default:
		ch.Error = "invalid_token"
		return http.StatusUnauthorized, ch, ch.Error
	}
}
