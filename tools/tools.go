// Package tools is the MCP tool service that runs behind the gateway: three tools that report who the caller is
// (get-user-info, get-user-permissions) and fetch the caller's WorkOS profile (get-workos-user).
//
// The caller is whoever the gateway says it is on the HTTP request that carries the tool call: every handler reads the
// identity headers of that request (see package identity) and nothing is remembered per session, so two users sharing
// one server, or one session whose token changes, always see their own identity. [Handler] refuses, at the HTTP
// level, requests that carry no gateway identity and, when a secret is configured, requests whose identity signature is
// missing, wrong or stale.
package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// Defaults used when the corresponding [Options] field is zero.
const (
	DefaultWorkOSBaseURL  = "https://api.workos.com"
	DefaultWorkOSTimeout  = 10 * time.Second
	DefaultIdentityMaxAge = 60 * time.Second
)

// Options configures the tool server and its HTTP handler. The zero value is usable: it serves the tools without a
// WorkOS API key (get-workos-user then answers with a tool error) and without checking identity signatures.
type Options struct {
	// HTTPClient makes the requests to the WorkOS API. Nil means a new client with no settings of its own; every
	// request is bounded by WorkOSTimeout either way.
	HTTPClient *http.Client

	// Logger receives the service's logs. Nil discards them. Identity header values are never logged.
	Logger *slog.Logger

	// Now is the clock used to check identity signatures. Nil means time.Now.
	Now func() time.Time

	// WorkOSBaseURL is the base of the WorkOS API; a trailing slash is ignored. Empty means DefaultWorkOSBaseURL.
	// The API key travels to it, so anything but https exposes the key on the network.
	WorkOSBaseURL string

	// WorkOSAPIKey is the secret key (sk_…) sent as a bearer token to the WorkOS API by get-workos-user. Empty means
	// that tool answers with an error naming the variables to set; no request is made without a key.
	WorkOSAPIKey string

	// WorkOSTimeout bounds one WorkOS API request, connection included. Zero means DefaultWorkOSTimeout.
	WorkOSTimeout time.Duration

	// IdentitySecret is the secret the gateway signs identity headers with. Empty means signatures are not checked and
	// anyone who can reach the service can claim any identity: the service must then be reachable from the gateway
	// alone. When set, a request whose signature is missing, wrong or stale is refused.
	IdentitySecret []byte

	// IdentityMaxAge is how far a signature's time may lie from Now, either side. Zero means DefaultIdentityMaxAge.
	// A longer age allows more clock skew and a longer replay window for captured headers.
	IdentityMaxAge time.Duration

	// Stateful keeps MCP sessions: initialize opens one (Mcp-Session-Id), and GET opens a standalone event stream.
	// Default false: the go-sdk's stateless mode ([mcp.StreamableHTTPOptions.Stateless]), in which every POST is served
	// on its own, GET and DELETE answer 405, and every protocol version the go-sdk knows is served, 2026-07-28 included.
	// The tools keep nothing per session, so they lose nothing without one; a stateful handler refuses 2026-07-28
	// requests (400, -32022), and with several replicas a session lives on one of them only.
	Stateful bool

	// JSONResponse answers POSTs with application/json instead of an event stream (go-sdk
	// [mcp.StreamableHTTPOptions.JSONResponse]). Default false.
	JSONResponse bool

	// Tracer, when set, records a span per tool call, a child of the trace context in the call's traceparent header
	// (the gateway's request span). Nil: no spans, and nothing of them on the call path.
	Tracer trace.Tracer
}

// withDefaults returns a copy of o with every zero field that has a default filled in.
func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WorkOSBaseURL == "" {
		o.WorkOSBaseURL = DefaultWorkOSBaseURL
	}
	if o.WorkOSTimeout <= 0 {
		o.WorkOSTimeout = DefaultWorkOSTimeout
	}
	if o.IdentityMaxAge <= 0 {
		o.IdentityMaxAge = DefaultIdentityMaxAge
	}
	return o
}

// UserInfo is the result of get-user-info. Fields other than UserID are omitted when the token has no such claim.
type UserInfo struct {
	UserID         string `json:"userId" jsonschema:"the user's id (the token's sub claim)"`
	Email          string `json:"email,omitempty" jsonschema:"the user's email address, when the token carries one"`
	Name           string `json:"name,omitempty" jsonschema:"the user's name, when the token carries one"`
	OrganizationID string `json:"organizationId,omitempty" jsonschema:"the organization the user signed in to, if any"`
}

// UserPermissions is the result of get-user-permissions. Each list is empty, never null, when the token has none.
type UserPermissions struct {
	Roles       []string `json:"roles" jsonschema:"the user's roles"`
	Permissions []string `json:"permissions" jsonschema:"the user's permissions"`
	Scopes      []string `json:"scopes" jsonschema:"the scopes granted to the access token"`
}

// WorkOSUser is the result of get-workos-user: the WorkOS user object with the members and values the User Management
// API returned (the go-sdk re-encodes it, so member order may differ).
type WorkOSUser map[string]any

// noInput is the input of every tool: none of them takes arguments.
type noInput struct{}

// errNoIdentity is the tool error for a call that reached a tool without a gateway identity, which [Handler] prevents.
var errNoIdentity = errors.New("no gateway identity on this request: this service must run behind the MCP gateway")

// NewServer returns an MCP server with the three tools. It serves any transport; over HTTP, use [Handler], which
// also refuses requests without a gateway identity.
func NewServer(opts Options) *mcp.Server {
	opts = opts.withDefaults()
	s := mcp.NewServer(&mcp.Implementation{Name: "mcp-gateway-tools", Version: "1.0.0"}, &mcp.ServerOptions{
		Logger: opts.Logger,
	})
	addTool(s, &mcp.Tool{
		Name:        "get-user-info",
		Description: "Get information about the authenticated user: id, email, name and organization.",
	}, getUserInfo)
	addTool(s, &mcp.Tool{
		Name:        "get-user-permissions",
		Description: "Get the authenticated user's roles and permissions, and the scopes granted to the token.",
	}, getUserPermissions)
	w := &workos{
		client:  opts.HTTPClient,
		logger:  opts.Logger,
		baseURL: opts.WorkOSBaseURL,
		apiKey:  opts.WorkOSAPIKey,
		timeout: opts.WorkOSTimeout,
	}
	addTool(s, &mcp.Tool{
		Name:        "get-workos-user",
		Description: "Fetch the authenticated user's full profile from the WorkOS User Management API.",
	}, w.getUser)
	if opts.Tracer != nil {
		s.AddReceivingMiddleware(traceCalls(opts.Tracer))
	}
	return s
}

// addTool adds to s the tool t, which takes no arguments and answers with h's result as structured content and as the
// same JSON in a text block. Its input and output schemas are those the go-sdk's generic mcp.AddTool derives from
// noInput and Out, and arguments are held to the input schema as it would hold them. It does the per-call work by hand
// rather than through mcp.AddTool, whose generic validation decodes the arguments and the result once more each and
// walks both schemas on every call: about a fifth of the service's CPU per call, with its garbage.
func addTool[Out any](s *mcp.Server, t *mcp.Tool, h func(context.Context, *mcp.CallToolRequest) (Out, error)) {
	in, err := jsonschema.For[noInput](nil)
	if err != nil {
		panic(fmt.Sprintf("tool %s: input schema: %v", t.Name, err))
	}
	out, err := jsonschema.For[Out](nil)
	if err != nil {
		panic(fmt.Sprintf("tool %s: output schema: %v", t.Name, err))
	}
	t.InputSchema, t.OutputSchema = in, out
	s.AddTool(t, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if err := checkNoArguments(req.Params.Arguments); err != nil {
			return toolErrorResult(fmt.Errorf("validating \"arguments\": %w", err)), nil
		}
		v, err := h(ctx, req)
		if err != nil {
			return toolErrorResult(err), nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("marshaling output: %w", err)
		}
		return &mcp.CallToolResult{
			Content:           []mcp.Content{&mcp.TextContent{Text: string(b)}},
			StructuredContent: json.RawMessage(b),
		}, nil
	})
}

// toolErrorResult is the result of a call that failed as a tool error: the error's text, with isError set.
func toolErrorResult(err error) *mcp.CallToolResult {
	var res mcp.CallToolResult
	res.SetError(err)
	return &res
}

// checkNoArguments holds a call's arguments to noInput's schema, {"type":"object","additionalProperties":false}: they
// may be absent, null or an empty object, and anything else is refused with the reason.
func checkNoArguments(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "{}" {
		return nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return fmt.Errorf("arguments must be a JSON object: %w", err)
	}
	if len(members) == 0 {
		return nil
	}
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names)
	return fmt.Errorf("unexpected additional properties %q", names)
}

// callerIdentity reads the identity the gateway set on the HTTP request that carried req. The go-sdk fills
// req.Extra.Header from that request on every call, also in a stateful session, so nothing here outlives the call.
func callerIdentity(req *mcp.CallToolRequest) (identity.Identity, error) {
	if req.Extra == nil || req.Extra.Header == nil {
		return identity.Identity{}, errNoIdentity
	}
	id, err := identity.FromHeader(req.Extra.Header)
	if err != nil {
		return identity.Identity{}, errNoIdentity
	}
	return id, nil
}

func getUserInfo(_ context.Context, req *mcp.CallToolRequest) (UserInfo, error) {
	id, err := callerIdentity(req)
	if err != nil {
		return UserInfo{}, err
	}
	return UserInfo{UserID: id.UserID, Email: id.Email, Name: id.Name, OrganizationID: id.OrgID}, nil
}

func getUserPermissions(_ context.Context, req *mcp.CallToolRequest) (UserPermissions, error) {
	id, err := callerIdentity(req)
	if err != nil {
		return UserPermissions{}, err
	}
	return UserPermissions{
		Roles:       nonNil(id.Roles),
		Permissions: nonNil(id.Permissions),
		Scopes:      nonNil(id.Scopes),
	}, nil
}

// nonNil returns s, or an empty slice when s is nil, so that it marshals as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
