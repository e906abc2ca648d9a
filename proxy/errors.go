package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/mcp-gateway/gateway/proxy/token"
)

// Error is a request the gateway refuses or cannot complete: what the client sees (a status, a fixed code and
// description, the headers that go with them) and what the access line and the metrics say (a reason, a cause). The
// parts of the gateway that refuse a request build one and hand it to writeError, the one place that answers with it.
type Error struct {
	Status      int    // the response status
	Code        string // the JSON body's error; "" writes no body
	Description string // the JSON body's error_description: fixed, client-safe text
	// JSONRPC, when set, is the body instead of Code's: a JSON-RPC response (an error for a request, or the
	// gateway's answers to a batch), for MCP messages the gateway answers itself.
	JSONRPC []byte

	// Challenge, when set, is sent as WWW-Authenticate.
	Challenge *Challenge
	// RetryAfter, when positive, is sent as Retry-After, in seconds.
	RetryAfter int
	// Allow, when set, is sent as Allow (405).
	Allow string
	// Close asks the client to close the connection: the gateway answers without reading the request body.
	Close bool

	// Reason is why the request was refused, for the access line and mcp_gateway_auth_failures_total; "" when it was
	// not refused but failed.
	Reason token.Reason
	// Upstream names the kind of upstream failure, for mcp_gateway_upstream_errors_total; "" when the upstream is not
	// involved.
	Upstream string
	// Cause is what went wrong, for the access line; never sent.
	Cause error
	// Attrs are more for the access line.
	Attrs []slog.Attr
}

func (e *Error) Error() string {
	msg := e.Code
	if e.Reason != "" {
		msg = string(e.Reason)
	}
	if e.Cause != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, msg, e.Cause)
	}
	return fmt.Sprintf("%d %s", e.Status, msg)
}

func (e *Error) Unwrap() error { return e.Cause }

// errorBody is the JSON body of every error the gateway writes itself.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// writeError answers r with err, an *Error (anything else is a 500 whose cause is logged), and notes on the request's
// access line why. It is the one place that turns an error into what a client sees.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal_error", Description: "the gateway could not answer", Cause: err}
	}
	if st := stateOf(r.Context()); st != nil {
		st.note(e)
	}
	h := w.Header()
	if e.Challenge != nil {
		h.Set("WWW-Authenticate", e.Challenge.String())
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Allow != "" {
		h.Set("Allow", e.Allow)
	}
	if e.Close {
		h.Set("Connection", "close")
	}
	switch {
	case e.JSONRPC != nil:
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(e.Status)
		w.Write(e.JSONRPC)
	case e.Code == "":
		w.WriteHeader(e.Status)
	default:
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(e.Status)
		b, _ := json.Marshal(errorBody{Error: e.Code, ErrorDescription: e.Description})
		w.Write(append(b, '\n'))
	}
}

// refusal is the answer to a request refused for reason (see challengeFor for the ones about the token): fixed texts,
// with the challenge that tells a client where to get a token (prm, the protected resource metadata URL, and scopes).
func refusal(reason token.Reason, prm string, scopes []string, cause error, attrs ...slog.Attr) *Error {
	e := &Error{Reason: reason, Description: descriptions[reason], Cause: cause, Attrs: attrs}
	switch reason {
	case ReasonOrigin:
		e.Status, e.Code = http.StatusForbidden, "forbidden"
	case ReasonSession:
		e.Status, e.Code = http.StatusNotFound, "session_not_found"
	case token.ReasonKeysUnavailable, token.ReasonIntrospectionUnavailable:
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, "temporarily_unavailable", 5
	default:
		status, ch, code := challengeFor(reason, prm, scopes)
		e.Status, e.Code, e.Challenge = status, code, &ch
	}
	return e
}

// errMethod answers a method the route does not serve.
func errMethod(allow, use string) *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Description: "use " + use, Allow: allow}
}

// errNotReady answers a request for a document that discovery has not produced yet.
var errNotReady = &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
	Description: descriptions[token.ReasonKeysUnavailable], RetryAfter: 5}

// errBodyTimeout reports a request body that did not arrive within the read timeout.
var errBodyTimeout = errors.New("the request body did not arrive in time")

// upstreamFailure is the answer to a request the upstream could not complete with err: 413 for a body over the
// limit (max bytes), 408 for a body that did not arrive in time, a bare 499 for a client that went away, 504 when the
// upstream did not answer in time, 502 otherwise. The cause goes to the access line, never to the client.
func upstreamFailure(r *http.Request, err error, max int64, upstream string) *Error {
	st := stateOf(r.Context())
	var tooLarge *http.MaxBytesError
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, errBodyTimeout) || st != nil && st.body != nil && st.body.timedOut.Load(): // before the context, which the server cancels then too
		return &Error{Status: http.StatusRequestTimeout, Code: "request_timeout", Description: "the request body did not arrive in time",
			Close: true, Upstream: "body_timeout"}
	case errors.As(err, &tooLarge):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
			Description: fmt.Sprintf("the request body exceeds %d bytes", max), Upstream: "body_too_large"}
	case r.Context().Err() != nil:
		return &Error{Status: 499, Upstream: "canceled"} // client closed request; nobody reads this
	case errors.As(err, &timeout) && timeout.Timeout():
		return &Error{Status: http.StatusGatewayTimeout, Code: "gateway_timeout", Description: "the MCP server behind the gateway did not answer in time",
			Upstream: "timeout", Cause: err, Attrs: []slog.Attr{slog.String("upstream", upstream)}}
	default:
		return &Error{Status: http.StatusBadGateway, Code: "bad_gateway", Description: "the MCP server behind the gateway did not answer",
			Upstream: "unreachable", Cause: err, Attrs: []slog.Attr{slog.String("upstream", upstream)}}
	}
}
