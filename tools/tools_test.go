package tools

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// testNow is the fixed clock of every test server and signing transport.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testSecret signs identities in tests that configure a secret.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// gatewayTransport plays the gateway: it sets an identity, signed when secret is set, on every request it sends.
// The identity can change between requests.
type gatewayTransport struct {
	secret []byte

	mu sync.Mutex
	id identity.Identity
}

func (g *gatewayTransport) setIdentity(id identity.Identity) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.id = id
}

func (g *gatewayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	g.mu.Lock()
	id := g.id
	g.mu.Unlock()
	req = req.Clone(req.Context())
	identity.Strip(req.Header)
	id.Set(req.Header)
	if g.secret != nil {
		identity.Sign(req, g.secret, testNow)
	}
	return http.DefaultTransport.RoundTrip(req)
}

// startServer serves Handler(opts) on an httptest server, with the test clock.
func startServer(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	opts.Now = func() time.Time { return testNow }
	srv := httptest.NewServer(Handler(opts))
	t.Cleanup(srv.Close)
	return srv
}

// connect opens an MCP session on srv whose requests carry what gw sets.
func connect(t *testing.T, srv *httptest.Server, gw *gatewayTransport) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint:             srv.URL + Path,
		HTTPClient:           &http.Client{Transport: gw},
		DisableStandaloneSSE: true,
		MaxRetries:           -1,
	}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// callTool calls the tool name and returns its structured content, decoded from JSON, after checking that the call
// succeeded and that its one text content item is the same JSON.
func callTool(t *testing.T, cs *mcp.ClientSession, name string) any {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name})
	if err != nil {
		t.Fatalf("CallTool(%s): %v", name, err)
	}
	if res.IsError {
		t.Fatalf("CallTool(%s): tool error: %s", name, textOf(t, res))
	}
	text := textOf(t, res)
	var fromText any
	if err := json.Unmarshal([]byte(text), &fromText); err != nil {
		t.Fatalf("CallTool(%s): text content %q is not JSON: %v", name, text, err)
	}
	structured := roundTrip(t, res.StructuredContent)
	if !reflect.DeepEqual(structured, fromText) {
		t.Errorf("CallTool(%s): structured content %v and text content %v differ", name, structured, fromText)
	}
	return structured
}

// callToolError calls the tool name, checks that it answered with a tool error (not a protocol error), and returns
// the error's text.
func callToolError(t *testing.T, cs *mcp.ClientSession, name string) string {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name})
	if err != nil {
		t.Fatalf("CallTool(%s): got protocol error %v, want a tool error", name, err)
	}
	if !res.IsError {
		t.Fatalf("CallTool(%s): got success %v, want a tool error", name, res.StructuredContent)
	}
	if res.StructuredContent != nil {
		t.Errorf("CallTool(%s): tool error carries structured content %v", name, res.StructuredContent)
	}
	return textOf(t, res)
}

// textOf returns the text of res's single text content item.
func textOf(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) != 1 {
		t.Fatalf("got %d content items, want 1", len(res.Content))
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("got content %T, want *mcp.TextContent", res.Content[0])
	}
	return tc.Text
}

// roundTrip returns v marshalled to JSON and decoded into an any, to compare JSON values.
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	alice = identity.Identity{
		UserID: "user_alice", Email: "alice@example.com", Name: "Alice", OrgID: "org_a",
		Roles: []string{"admin"}, Permissions: []string{"read:data", "write:data"}, Scopes: []string{"openid", "email"},
	}
	bob = identity.Identity{UserID: "user_bob", Email: "bob@example.com", Scopes: []string{"openid"}}
)

func wantInfo(id identity.Identity) map[string]any {
	m := map[string]any{"userId": id.UserID}
	for k, v := range map[string]string{"email": id.Email, "name": id.Name, "organizationId": id.OrgID} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

func wantPermissions(id identity.Identity) map[string]any {
	list := func(s []string) []any {
		out := []any{}
		for _, v := range s {
			out = append(out, v)
		}
		return out
	}
	return map[string]any{"roles": list(id.Roles), "permissions": list(id.Permissions), "scopes": list(id.Scopes)}
}

// transportModes are the ways the service can be run; every identity test runs in each.
var transportModes = []struct {
	name   string
	opts   Options
	signed bool
}{
	{name: "stateless"},
	{name: "stateful", opts: Options{Stateful: true}},
	{name: "json response", opts: Options{JSONResponse: true}},
	{name: "signed", opts: Options{IdentitySecret: testSecret}, signed: true},
}

func gatewayFor(signed bool, id identity.Identity) *gatewayTransport {
	gw := &gatewayTransport{id: id}
	if signed {
		gw.secret = testSecret
	}
	return gw
}

// TestTwoUsersSeeTheirOwnIdentity is the seed's defect 2: two users on one server must each see their own identity,
// however their calls interleave.
func TestTwoUsersSeeTheirOwnIdentity(t *testing.T) {
	t.Parallel()
	for _, mode := range transportModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, mode.opts)
			sessions := map[string]*mcp.ClientSession{
				alice.UserID: connect(t, srv, gatewayFor(mode.signed, alice)),
				bob.UserID:   connect(t, srv, gatewayFor(mode.signed, bob)),
			}
			for _, id := range []identity.Identity{alice, bob, alice, bob} {
				cs := sessions[id.UserID]
				if got, want := callTool(t, cs, "get-user-info"), any(wantInfo(id)); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: get-user-info = %v, want %v", id.UserID, got, want)
				}
				if got, want := callTool(t, cs, "get-user-permissions"), any(wantPermissions(id)); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: get-user-permissions = %v, want %v", id.UserID, got, want)
				}
			}
		})
	}
}

// TestSessionSeesCurrentIdentity checks that identity is read from each request, not remembered per session: when the
// headers of one session change between calls, the next call sees the new identity.
func TestSessionSeesCurrentIdentity(t *testing.T) {
	t.Parallel()
	for _, mode := range transportModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, mode.opts)
			gw := gatewayFor(mode.signed, alice)
			cs := connect(t, srv, gw)

			promoted := bob
			promoted.Roles = []string{"owner"}
			for _, id := range []identity.Identity{alice, bob, promoted, alice} {
				gw.setIdentity(id)
				if got, want := callTool(t, cs, "get-user-info"), any(wantInfo(id)); !reflect.DeepEqual(got, want) {
					t.Errorf("after switching to %s: get-user-info = %v, want %v", id.UserID, got, want)
				}
				if got, want := callTool(t, cs, "get-user-permissions"), any(wantPermissions(id)); !reflect.DeepEqual(got, want) {
					t.Errorf("after switching to %s: get-user-permissions = %v, want %v", id.UserID, got, want)
				}
			}
		})
	}
}

// TestUserToolsResults pins the exact results of get-user-info and get-user-permissions.
func TestUserToolsResults(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Options{})
	tests := []struct {
		name            string
		id              identity.Identity
		wantInfo        string
		wantPermissions string
	}{
		{
			name:            "every claim",
			id:              alice,
			wantInfo:        `{"userId":"user_alice","email":"alice@example.com","name":"Alice","organizationId":"org_a"}`,
			wantPermissions: `{"roles":["admin"],"permissions":["read:data","write:data"],"scopes":["openid","email"]}`,
		},
		{
			// An AuthKit access token carries sub and little else: absent claims are omitted, lists are empty.
			name:            "sub only",
			id:              identity.Identity{UserID: "user_01H5JQ5Z4"},
			wantInfo:        `{"userId":"user_01H5JQ5Z4"}`,
			wantPermissions: `{"roles":[],"permissions":[],"scopes":[]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs := connect(t, srv, &gatewayTransport{id: tt.id})
			for tool, want := range map[string]string{"get-user-info": tt.wantInfo, "get-user-permissions": tt.wantPermissions} {
				var w any
				if err := json.Unmarshal([]byte(want), &w); err != nil {
					t.Fatal(err)
				}
				if got := callTool(t, cs, tool); !reflect.DeepEqual(got, w) {
					t.Errorf("%s = %v, want %s", tool, got, want)
				}
			}
		})
	}
}

// TestToolsListed checks the three tools and that each declares an output schema, so that clients expect structured
// content.
func TestToolsListed(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Options{})
	cs := connect(t, srv, &gatewayTransport{id: alice})
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	got := map[string]bool{}
	for _, tool := range res.Tools {
		got[tool.Name] = true
		if tool.OutputSchema == nil {
			t.Errorf("tool %s has no output schema", tool.Name)
		}
		if tool.Description == "" {
			t.Errorf("tool %s has no description", tool.Name)
		}
	}
	want := map[string]bool{"get-user-info": true, "get-user-permissions": true, "get-workos-user": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tools = %v, want %v", got, want)
	}
}

// TestNoIdentityIsAToolError covers a server used without Handler (here over in-memory transports): a call without
// HTTP headers has no identity and must fail as a tool error, not answer with someone's identity.
func TestNoIdentityIsAToolError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	server := NewServer(Options{WorkOSAPIKey: "sk_test"})
	st, ct := mcp.NewInMemoryTransports()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	for _, tool := range []string{"get-user-info", "get-user-permissions", "get-workos-user"} {
		t.Run(tool, func(t *testing.T) {
			if got, want := callToolError(t, cs, tool), errNoIdentity.Error(); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// TestSchemasAsGenericAddTool checks that every tool declares the input and output schemas the go-sdk's generic
// mcp.AddTool derives from its types, so that serving the tools without it changes nothing clients see.
func TestSchemasAsGenericAddTool(t *testing.T) {
	t.Parallel()
	reference := mcp.NewServer(&mcp.Implementation{Name: "reference", Version: "1"}, nil)
	mcp.AddTool(reference, &mcp.Tool{Name: "get-user-info"},
		func(context.Context, *mcp.CallToolRequest, noInput) (*mcp.CallToolResult, UserInfo, error) {
			return nil, UserInfo{}, nil
		})
	mcp.AddTool(reference, &mcp.Tool{Name: "get-user-permissions"},
		func(context.Context, *mcp.CallToolRequest, noInput) (*mcp.CallToolResult, UserPermissions, error) {
			return nil, UserPermissions{}, nil
		})
	mcp.AddTool(reference, &mcp.Tool{Name: "get-workos-user"},
		func(context.Context, *mcp.CallToolRequest, noInput) (*mcp.CallToolResult, WorkOSUser, error) {
			return nil, nil, nil
		})
	schemas := func(s *mcp.Server) map[string]string {
		cs := connectInMemory(t, s)
		res, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatalf("ListTools: %v", err)
		}
		out := map[string]string{}
		for _, tool := range res.Tools {
			in, _ := json.Marshal(tool.InputSchema)
			outSchema, _ := json.Marshal(tool.OutputSchema)
			out[tool.Name] = "input " + string(in) + " output " + string(outSchema)
		}
		return out
	}
	got, want := schemas(NewServer(Options{})), schemas(reference)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schemas:\n got %v\nwant %v", got, want)
	}
}

// TestArguments checks that the tools hold their arguments to the declared input schema, which allows none: absent,
// null and {} are accepted, and anything else is a tool error naming what is wrong.
func TestArguments(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Options{})
	cs := connect(t, srv, &gatewayTransport{id: alice})
	tests := []struct {
		args      json.RawMessage
		wantError string // empty: the call succeeds
	}{
		{args: nil},
		{args: json.RawMessage(`null`)},
		{args: json.RawMessage(`{}`)},
		{args: json.RawMessage(` { } `)},
		{args: json.RawMessage(`{"x":1,"a":"b"}`), wantError: `validating "arguments": unexpected additional properties ["a" "x"]`},
		{args: json.RawMessage(`[]`), wantError: `validating "arguments": arguments must be a JSON object`},
		{args: json.RawMessage(`"x"`), wantError: `validating "arguments": arguments must be a JSON object`},
	}
	for _, tt := range tests {
		for _, tool := range []string{"get-user-info", "get-user-permissions", "get-workos-user"} {
			params := &mcp.CallToolParams{Name: tool}
			if tt.args != nil {
				params.Arguments = tt.args
			}
			res, err := cs.CallTool(t.Context(), params)
			if err != nil {
				t.Fatalf("%s(%s): %v", tool, tt.args, err)
			}
			text := textOf(t, res)
			switch {
			case tt.wantError == "" && tool == "get-workos-user":
				// No API key is configured: the arguments passed, and the tool says what is missing.
				if text != errNoAPIKey.Error() {
					t.Errorf("%s(%s) = %q, want %q", tool, tt.args, text, errNoAPIKey)
				}
			case tt.wantError == "":
				if res.IsError {
					t.Errorf("%s(%s): tool error %q, want success", tool, tt.args, text)
				}
			case !res.IsError || len(text) < len(tt.wantError) || text[:len(tt.wantError)] != tt.wantError:
				t.Errorf("%s(%s) = %q (isError %v), want an error starting %q", tool, tt.args, text, res.IsError, tt.wantError)
			}
		}
	}
}

// TestResultsMatchOutputSchema validates what the tools return against the output schemas they declare, for full and
// minimal identities: the service does not re-validate its own results on every call.
func TestResultsMatchOutputSchema(t *testing.T) {
	t.Parallel()
	srv := startServer(t, Options{})
	for _, id := range []identity.Identity{alice, bob, {UserID: "user_01H5JQ5Z4"}} {
		cs := connect(t, srv, &gatewayTransport{id: id})
		list, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tool := range list.Tools {
			if tool.Name == "get-workos-user" {
				continue // needs the WorkOS API; its schema is any object
			}
			var schema jsonschema.Schema
			b, _ := json.Marshal(tool.OutputSchema)
			if err := json.Unmarshal(b, &schema); err != nil {
				t.Fatal(err)
			}
			resolved, err := schema.Resolve(nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := resolved.Validate(callTool(t, cs, tool.Name)); err != nil {
				t.Errorf("%s for %s: %v", tool.Name, id.UserID, err)
			}
		}
	}
}

// connectInMemory connects a client to s over in-memory transports.
func connectInMemory(t *testing.T, s *mcp.Server) *mcp.ClientSession {
	t.Helper()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := s.Connect(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}
