package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/mcp-gateway/gateway/proxy/token"
)

// TokenVerifier checks a bearer token and returns whom it names. Its errors should be *token.AuthError, whose reason
// decides what the client sees; any other error is answered as a malformed token.
type TokenVerifier func(ctx context.Context, raw string) (*token.Principal, error)

// AuthOptions are what Authenticate tells a client that has no acceptable token, and what it requires of one.
type AuthOptions struct {
	// ResourceMetadata is the URL of the protected resource metadata, sent in every challenge.
	ResourceMetadata string
	// Scopes must all be in a token; they are advertised in the challenge.
	Scopes []string
	// Resource and Audiences are named on the access line of a token refused for its audience, with how to fix it.
	Resource  string
	Audiences []string
	// Anonymous, when set, sees each request refused for want of a valid token (no token, or one that does not
	// verify; not a 503 while the keys are not loaded) and may answer it instead: the limit per client address. A
	// request with a valid token is never counted, so users behind a shared address are not refused with strangers.
	// Nil: no limit.
	Anonymous func(r *http.Request) *Error
	// Admit, when set, sees each request whose token would cost a call to the authorization server to verify (an
	// opaque token whose introspection is not cached) before that call, and may refuse it: the same limit per client
	// address, counted up front, so that a flood of random tokens costs no call past it. counted says it counted the
	// request, which Anonymous then does not count again.
	Admit func(r *http.Request, raw string) (counted bool, refused *Error)
}

// Authenticate lets a request pass only with a bearer token that verify accepts and that carries every required
// scope, and records its principal for the handlers after it (PrincipalFromContext). Any other request is answered
// with a challenge that tells the client where to get a token (RFC 6750, RFC 9728). The token is never logged.
func Authenticate(verify TokenVerifier, o AuthOptions) func(http.Handler) http.Handler {
	refuse := func(reason token.Reason, cause error, attrs ...slog.Attr) *Error {
		return refusal(reason, o.ResourceMetadata, o.Scopes, cause, attrs...)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st := stateOf(r.Context())
			p, counted, err := authenticate(r, verify, o, refuse)
			if p != nil && st != nil {
				st.principal = p // also when a scope is missing: the access line names the caller
			}
			if err != nil {
				var refused *Error
				if o.Anonymous != nil && p == nil && !counted && errors.As(err, &refused) && refused.Status != http.StatusServiceUnavailable {
					if e := o.Anonymous(r); e != nil {
						err = e
					}
				}
				writeError(w, r, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// authenticate finds and verifies r's token and checks its scopes. It returns the principal of a verified token even
// when it refuses it for a missing scope, and whether o.Admit counted the request.
func authenticate(r *http.Request, verify TokenVerifier, o AuthOptions, refuse func(token.Reason, error, ...slog.Attr) *Error) (p *token.Principal, counted bool, err error) {
	tok, err := token.BearerToken(r.Header)
	switch {
	case errors.Is(err, token.ErrMultipleAuthorization):
		const desc = "send exactly one Authorization header"
		e := refuse(token.ReasonMalformed, err)
		e.Status, e.Code, e.Description = http.StatusBadRequest, "invalid_request", desc
		e.Challenge = &Challenge{Error: "invalid_request", Description: desc, ResourceMetadata: o.ResourceMetadata}
		return nil, false, e
	case errors.Is(err, token.ErrNoBearer):
		return nil, false, refuse(token.ReasonNoToken, nil)
	case err != nil:
		return nil, false, refuse(token.ReasonMalformed, err)
	}
	if o.Admit != nil {
		var refused *Error
		if counted, refused = o.Admit(r, tok); refused != nil {
			return nil, true, refused
		}
	}
	p, err = verify(r.Context(), tok)
	if err != nil {
		var ae *token.AuthError
		if !errors.As(err, &ae) {
			ae = &token.AuthError{Reason: token.ReasonMalformed, Err: err}
		}
		var attrs []slog.Attr
		if ae.Reason == token.ReasonAudience {
			attrs = []slog.Attr{slog.Any("token_aud", ae.TokenAudience), slog.Any("accepted", o.Audiences),
				slog.String("fix", "with WorkOS, add "+o.Resource+" as a Resource Indicator in the dashboard (Connect → Configuration) so "+
					"tokens carry it as aud; otherwise set GATEWAY_AUDIENCES to the audience your authorization server issues for this resource")}
		}
		return nil, counted, refuse(ae.Reason, ae, attrs...)
	}
	if missing := token.MissingScopes(p.Scopes, o.Scopes); len(missing) > 0 {
		return p, counted, refuse(token.ReasonScope, nil, slog.String("missing_scopes", strings.Join(missing, " ")))
	}
	return p, counted, nil
}
