package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/mcp-gateway/gateway/proxy/authz"
	"github.com/mcp-gateway/gateway/proxy/policy"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// Decider decides what a caller may see and use. *policy.Policy is one; the gateway reads the one in force for each
// request (see policyStore), so that a reload applies to the next request.
type Decider interface {
	authz.Decider
	// Rules returns the rule names, the only values of the decisions metric's rule label besides "default".
	Rules() []string
}

// AuthorizeOptions are what Authorize needs besides the policy.
type AuthorizeOptions struct {
	// MaxBodyBytes bounds the request body Authorize reads (GATEWAY_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// ResourceMetadata is the protected resource metadata URL, sent in step-up challenges.
	ResourceMetadata string
	// Audit receives one event per MCP message; nil: none.
	Audit *authz.AuditLog
	// Count counts each message's decision (mcp_gateway_policy_decisions_total); nil: not counted.
	Count func(policy.Decision)
	// Limit takes a tool call of the caller's from its budget under the limit of the rule that allowed it, and
	// reports whether it fit, and when not, how long until it would (limits.takeToolCall); nil: rules' limits are
	// not applied.
	Limit func(r *http.Request, rule, budget string, l *policy.Limit) (ok bool, retry time.Duration)
}

// Authorize applies the policy current returns to the MCP messages of a request, for a caller that Authenticate
// verified; package authz reads and decides them. A POST's body is read once (at most MaxBodyBytes) and each of its
// messages decided on what it names (policy.md §1.1): a denied request is answered as the MCP server answers an
// unknown tool, prompt or resource and never reaches the upstream; a request that needs more scopes makes the whole
// POST a 403 insufficient_scope challenge; the upstream's answers to list requests are filtered (see
// authz.Exchange.ModifyResponse). What is forwarded is byte for byte what was read, less the messages the gateway
// answered, and with list requests under ids of the gateway's. A GET that resumes a stream (Last-Event-ID) has its
// list responses filtered too; other requests pass. Each message gets one audit event when the request ends.
func Authorize(current func() Decider, o AuthorizeOptions) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			st := stateOf(r.Context())
			if st == nil || st.principal == nil {
				writeError(w, r, errors.New("authorize: no verified caller")) // unreachable: Authenticate comes first
				return
			}
			d := current()
			if d == nil {
				writeError(w, r, errors.New("authorize: no policy in force")) // unreachable: the store always has one
				return
			}
			ex := authz.New(d, policy.FactsFromClaims(st.principal.Claims()), r)
			switch {
			case r.Method == http.MethodPost:
				ok := readPost(w, r, ex, o)
				traceExchange(st, ex)
				if !ok {
					finish(w, st, ex, o, false)
					return
				}
			case ex.Resumes():
			default:
				next.ServeHTTP(w, r)
				return
			}
			if ex.Rewrites() {
				st.mcp = ex
				r.Header.Del("Accept-Encoding") // an answer the gateway rewrites must come uncompressed
			} else if o.Audit != nil {
				st.mcp = ex // for the upstream's status in the audit events
			}
			next.ServeHTTP(w, r)
			finish(w, st, ex, o, true)
		})
	}
}

// readPost reads and decides a POST. It reports whether the request goes on upstream; when it does not, it has
// answered it: a body that could not be read or is not JSON-RPC, headers that disagree with it, a step-up challenge,
// or the gateway's answers when every message was denied.
func readPost(w http.ResponseWriter, r *http.Request, ex *authz.Exchange, o AuthorizeOptions) bool {
	if err := ex.ReadPost(r, o.MaxBodyBytes, o.Count); err != nil {
		writeError(w, r, readFailure(r, err, o.MaxBodyBytes))
		return false
	}
	if scopes := ex.StepUp(); scopes != nil {
		writeError(w, r, refusal(token.ReasonScope, o.ResourceMetadata, scopes, nil, slog.String("policy", "step_up")))
		return false
	}
	var retry time.Duration
	if o.Limit != nil {
		retry = ex.Limit(func(rule, budget string, l *policy.Limit) (bool, time.Duration) { return o.Limit(r, rule, budget, l) })
	}
	answer, ok := ex.Forward(r)
	if !ok {
		e := &Error{Status: answer.Status, Code: "denied", JSONRPC: answer.Body, Attrs: []slog.Attr{slog.String("policy", "deny")}}
		switch {
		case answer.Status == http.StatusTooManyRequests:
			e.Code, e.RetryAfter = "too_many_requests", retryAfterSeconds(retry)
			e.Attrs = []slog.Attr{slog.String("limit", limitToolRate)}
		case answer.Body == nil:
			e.Code = "" // denied notifications: 202 and no body
		}
		writeError(w, r, e)
	}
	return ok
}

// readFailure is the answer to a POST whose messages could not be read: 400 with the JSON-RPC error package authz
// wrote for a body that is not JSON-RPC messages (-32700) or headers that disagree with it (-32020), else the
// answer to a body that could not be read.
func readFailure(r *http.Request, err error, max int64) *Error {
	var parse *authz.ParseError
	var header *authz.HeaderError
	switch {
	case errors.As(err, &parse):
		return &Error{Status: http.StatusBadRequest, Code: "parse_error", Cause: parse.Err, JSONRPC: parse.Response()}
	case errors.As(err, &header):
		return &Error{Status: http.StatusBadRequest, Code: "header_mismatch", Cause: header, JSONRPC: header.Response()}
	}
	return bodyFailure(r, err, max)
}

// bodyFailure is the answer to a request body that could not be read: too large (413), too slow (408), a client that
// went away (499), or cut (400).
func bodyFailure(r *http.Request, err error, max int64) *Error {
	var tooLarge *http.MaxBytesError
	st := stateOf(r.Context())
	if errors.As(err, &tooLarge) || errors.Is(err, errBodyTimeout) || r.Context().Err() != nil ||
		st != nil && st.body != nil && st.body.timedOut.Load() {
		return upstreamFailure(r, err, max, "")
	}
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: "the request body could not be read",
		Close: true, Cause: err}
}

// finish writes the audit events of the request's messages once it has ended (forwarded: whether it went upstream).
func finish(w http.ResponseWriter, st *reqState, ex *authz.Exchange, o AuthorizeOptions, forwarded bool) {
	if o.Audit == nil {
		return
	}
	status := 0
	if forwarded {
		status = ex.UpstreamStatus()
		if sw, ok := w.(*statusWriter); ok && status == 0 {
			status = sw.status // the relay's answer, which the reverse proxy's hook did not see
		}
	}
	p := st.principal
	o.Audit.Write(ex, &authz.Request{ID: st.reqID, Session: st.upstreamSession, Subject: p.Subject, Issuer: p.Issuer,
		ClientID: p.Identity.ClientID, OrgID: p.Identity.OrgID, Start: st.start}, status)
}
