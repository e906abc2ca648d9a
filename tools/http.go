package tools

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// Path is the one path [Handler] serves: the MCP streamable HTTP endpoint.
const Path = "/mcp"

// Handler returns the service's HTTP handler: the go-sdk streamable HTTP handler for a [NewServer] server at [Path],
// behind [RequireIdentity]. Every other path answers 404.
//
// The go-sdk's DNS-rebinding protection stays on: a request that arrives on a loopback address with a Host header that
// is not loopback is refused with 403. A gateway in front must therefore send the upstream's own host, as
// httputil.ProxyRequest.SetURL does, not the client's.
func Handler(opts Options) http.Handler {
	opts = opts.withDefaults()
	server := NewServer(opts)
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{
		Stateless:    !opts.Stateful,
		JSONResponse: opts.JSONResponse,
		Logger:       opts.Logger,
	})
	mux := http.NewServeMux()
	mux.Handle(Path, RequireIdentity(opts)(mcpHandler))
	return mux
}

// refusal is a request refused for its identity: status and body are fixed and safe to send, cause is logged.
type refusal struct {
	status      int
	code        string
	description string
	cause       error
}

func (r *refusal) Error() string { return r.code + ": " + r.cause.Error() }
func (r *refusal) Unwrap() error { return r.cause }

// checkIdentity decides whether request r may reach the tools: nil if so, else why not. It refuses with 401 a request
// without a gateway identity; with a secret, with 403 one whose signature is missing, wrong or stale, or was made for
// another method, path or host (identity.Verify, signature version 2); with 400 one whose identity headers are
// malformed.
func checkIdentity(r *http.Request, secret []byte, now time.Time, maxAge time.Duration) *refusal {
	_, err := identity.FromHeader(r.Header)
	if errors.Is(err, identity.ErrNoIdentity) {
		return &refusal{
			status:      http.StatusUnauthorized,
			code:        "unauthenticated",
			description: "this service must run behind the MCP gateway: the request carries no gateway identity",
			cause:       err,
		}
	}
	if len(secret) > 0 {
		if verr := identity.Verify(r, secret, now, maxAge); verr != nil {
			return &refusal{
				status:      http.StatusForbidden,
				code:        "forbidden",
				description: "the gateway identity on the request is not signed, or its signature is wrong or stale",
				cause:       verr,
			}
		}
	}
	if err != nil {
		return &refusal{
			status:      http.StatusBadRequest,
			code:        "invalid_identity",
			description: "the gateway identity headers on the request are malformed",
			cause:       err,
		}
	}
	return nil
}

// RequireIdentity returns middleware that lets through only requests carrying a gateway identity, signed with
// opts.IdentitySecret when that is set (see [Options]), and answers the rest with a JSON error body
// {"error": …, "error_description": …}. The cause is logged; identity header values are not.
func RequireIdentity(opts Options) func(http.Handler) http.Handler {
	opts = opts.withDefaults()
	secret := append([]byte(nil), opts.IdentitySecret...)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ref := checkIdentity(r, secret, opts.Now(), opts.IdentityMaxAge)
			if ref == nil {
				next.ServeHTTP(w, r)
				return
			}
			opts.Logger.LogAttrs(r.Context(), slog.LevelWarn, "request refused",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.String("remote_addr", r.RemoteAddr), slog.Int("status", ref.status),
				slog.String("reason", ref.code), slog.String("cause", ref.cause.Error()))
			writeError(w, ref.status, ref.code, ref.description)
		})
	}
}

// writeError answers with status and the JSON body {"error": code, "error_description": description}.
func writeError(w http.ResponseWriter, status int, code, description string) {
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, description})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
