package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/identity"
	"github.com/mcp-gateway/gateway/proxy/policy"
	"github.com/mcp-gateway/gateway/tools"
)

// checkIssuer is an authorization server for --check tests: good unless told otherwise.
type checkIssuer struct {
	doc  func(base string) map[string]any // the metadata document
	jwks func(w http.ResponseWriter)      // the key set endpoint
}

func goodDoc(base string) map[string]any {
	return map[string]any{
		"issuer": base, "jwks_uri": base + "/oauth2/jwks", "authorization_endpoint": base + "/oauth2/authorize",
		"token_endpoint": base + "/oauth2/token", "registration_endpoint": base + "/oauth2/register",
		"code_challenge_methods_supported": []string{"S256"}, "client_id_metadata_document_supported": true,
	}
}

func goodJWKS(t *testing.T) func(http.ResponseWriter) {
	is := newIssuer(t) // the end-to-end test's issuer, for its real RSA key
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	}
}

func (ci checkIssuer) start(t *testing.T) string {
	t.Helper()
	var base string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(ci.doc(base))
	})
	mux.HandleFunc("GET /oauth2/jwks", func(w http.ResponseWriter, r *http.Request) { ci.jwks(w) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	base = srv.URL
	return base
}

// checkPolicy is a policy for --check tests: the development policy's rules (not the file itself, which builds with
// development mode only), with its line numbers.
const checkPolicy = `# The example policy of development mode.
#
#
default: deny
rules:
  - name: everyone-reads-themselves
    tools: ["get-user-info", "get-user-permissions"]
  - name: directory-lookups
    tools: ["get-workos-user"]
    require:
      permissions: ["users:read"]
  - name: admins
    tools: ["*"]
    require:
      roles: ["admin"]
`

// checkLines runs gateway --check and returns the name of every check by its mark (✓, ✗ or -), and the output.
func checkLines(t *testing.T, env map[string]string) (map[string][]string, string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), []string{"--check"}, env, &out, &out)
	marks := map[string][]string{}
	lines := strings.Split(out.String(), "\n")
	for i, line := range lines {
		mark, rest, ok := strings.Cut(line, " ")
		if !ok || (mark != "✓" && mark != "✗" && mark != "-") {
			continue
		}
		name, _, _ := strings.Cut(rest, ":")
		marks[mark] = append(marks[mark], name)
		if mark == "✗" && (i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "  fix: ")) {
			t.Errorf("✗ %s has no fix line under it", name)
		}
	}
	return marks, out.String(), err
}

func TestCheck(t *testing.T) {
	t.Parallel()
	const secret = "check-identity-secret-of-32-bytes!!"
	tool := httptest.NewServer(tools.Handler(tools.Options{IdentitySecret: []byte(secret)}))
	t.Cleanup(tool.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	notMCP := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>hello</html>"))
	}))
	t.Cleanup(notMCP.Close)
	jwks := goodJWKS(t)
	dir := t.TempDir()
	goodPolicy, badPolicy := dir+"/good.yaml", dir+"/bad.yaml"
	if err := os.WriteFile(goodPolicy, []byte(checkPolicy+"  - name: prompts\n    prompts: ['*']\n  - name: reports\n    tools: ['report-*']\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badPolicy, []byte("rules:\n  - name: r\n    tools: ['*']\n    when: mcp.arguments.id == 1\n  - tools: [x]\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		issuer checkIssuer
		env    map[string]string // added to a good environment; "" deletes
		failed []string
		skip   []string
		output string // a piece of the output
		lines  int    // check lines printed; 0 means 11
	}{
		{name: "good", output: "all 11 checks passed"},
		{name: "misspelt variable", env: map[string]string{"GATEWAY_REQUIRED_SCOPE": "admin"}, failed: []string{"variables"},
			output: "✗ variables: GATEWAY_REQUIRED_SCOPE is not a variable the gateway reads, so its value is ignored; the closest one it reads is GATEWAY_REQUIRED_SCOPES"},
		{name: "two unknown variables", env: map[string]string{"GATEWAY_LOGLEVEL": "debug", "GATEWAY_PORT": "tcp://10.0.0.1:3000"},
			failed: []string{"variables", "variables"}, lines: 12, output: "enableServiceLinks: false"},
		{name: "public URL follows the listen port", env: map[string]string{"GATEWAY_LISTEN_ADDR": "127.0.0.1:8080"},
			output: "✓ public URL: http://localhost:8080 (GATEWAY_PUBLIC_URL is not set: http://localhost and the listen port) is loopback"},
		{name: "listen port 0 without a public URL", env: map[string]string{"GATEWAY_LISTEN_ADDR": "127.0.0.1:0"}, failed: []string{"public URL", "configuration"},
			skip:   []string{"issuer reachable", "issuer metadata", "JWKS", "client registration", "PKCE", "static client id", "audience", "upstream"},
			output: "GATEWAY_PUBLIC_URL must be set"},
		{name: "no registration endpoint", issuer: checkIssuer{doc: func(b string) map[string]any {
			d := goodDoc(b)
			delete(d, "registration_endpoint")
			delete(d, "client_id_metadata_document_supported")
			return d
		}}, failed: []string{"client registration"}, output: "enable Dynamic Client Registration"},
		{name: "client ID metadata documents only", issuer: checkIssuer{doc: func(b string) map[string]any {
			d := goodDoc(b)
			delete(d, "registration_endpoint")
			return d
		}}, output: "✓ client registration: Client ID Metadata Documents"},
		{name: "wrong issuer string", issuer: checkIssuer{doc: func(b string) map[string]any {
			d := goodDoc(b)
			d["issuer"] = b + "/"
			return d
		}}, failed: []string{"issuer metadata"}, output: "set GATEWAY_ISSUER_URL to exactly"},
		{name: "JWKS down", issuer: checkIssuer{jwks: func(w http.ResponseWriter) { http.Error(w, "down", http.StatusInternalServerError) }},
			failed: []string{"JWKS"}},
		{name: "JWKS without public keys", issuer: checkIssuer{jwks: func(w http.ResponseWriter) {
			key := make([]byte, 32)
			rand.Read(key)
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key, KeyID: "h", Algorithm: "HS256"}}})
		}}, failed: []string{"JWKS"}},
		{name: "no S256", issuer: checkIssuer{doc: func(b string) map[string]any {
			d := goodDoc(b)
			d["code_challenge_methods_supported"] = []string{"plain"}
			return d
		}}, failed: []string{"PKCE"}},
		{name: "issuer down", env: map[string]string{"GATEWAY_ISSUER_URL": closed.URL}, failed: []string{"issuer reachable"},
			skip: []string{"issuer metadata", "JWKS", "client registration", "PKCE"}},
		{name: "upstream down", env: map[string]string{"GATEWAY_UPSTREAM_URL": closed.URL + "/mcp"}, failed: []string{"upstream"}, output: "set GATEWAY_UPSTREAM_URL"},
		{name: "upstream path not MCP", env: map[string]string{"GATEWAY_UPSTREAM_URL": tool.URL + "/"}, failed: []string{"upstream"}, output: "answered 404"},
		{name: "upstream not MCP", env: map[string]string{"GATEWAY_UPSTREAM_URL": notMCP.URL + "/mcp"}, failed: []string{"upstream"}, output: "not with an MCP initialize result"},
		{name: "upstream with another identity secret", env: map[string]string{"GATEWAY_IDENTITY_SECRET": strings.Repeat("x", 32)}, failed: []string{"upstream"}, output: "same GATEWAY_IDENTITY_SECRET"},
		{name: "audience not accepted", env: map[string]string{"GATEWAY_AUDIENCES": "client_01ENVIRONMENT"}, failed: []string{"audience"}, output: "add http://localhost:3000/mcp to GATEWAY_AUDIENCES"},
		{name: "http public URL", env: map[string]string{"GATEWAY_PUBLIC_URL": "http://mcp.example.com"}, failed: []string{"public URL", "configuration"},
			skip: []string{"issuer reachable", "issuer metadata", "JWKS", "client registration", "PKCE", "static client id", "audience", "upstream"}},
		{name: "https public URL", env: map[string]string{"GATEWAY_PUBLIC_URL": "https://mcp.example.com"}, failed: []string{"audience"}, output: "✓ public URL: https://mcp.example.com uses https"},
		{name: "policy", env: map[string]string{"GATEWAY_POLICY_FILE": goodPolicy}, lines: 12, output: "✓ policy: " + goodPolicy +
			" loads: default deny, 5 rule(s); the upstream lists 3 tool(s) to the user gateway-check\n" +
			"    rule everyone-reads-themselves (line 6): tools get-user-info, get-user-permissions, for every caller\n" +
			"    rule directory-lookups (line 8): tools get-workos-user, requiring permissions all of users:read\n" +
			"    rule admins (line 12): all 3 tools, get-user-info, get-user-permissions, get-workos-user, requiring roles one of admin\n" +
			"    rule prompts (line 16): prompts \"*\", for every caller\n" +
			"    rule reports (line 18): matches none of the upstream's tools (tools \"report-*\"), for every caller\n"},
		{name: "policy that does not load", env: map[string]string{"GATEWAY_POLICY_FILE": badPolicy}, lines: 12, failed: []string{"policy"},
			output: "✗ policy: GATEWAY_POLICY_FILE does not load, so the gateway would not start: " + badPolicy + ":4:14: rule r: when: undefined field 'arguments'; " +
				badPolicy + ":5:5: rule #2: needs a name"},
		{name: "policy, configuration invalid", env: map[string]string{"GATEWAY_POLICY_FILE": goodPolicy, "GATEWAY_LISTEN_ADDR": "127.0.0.1:0"},
			failed: []string{"public URL", "configuration"}, lines: 12,
			skip: []string{"issuer reachable", "issuer metadata", "JWKS", "client registration", "PKCE", "static client id", "audience", "upstream"},
			output: "the upstream's tools could not be listed as the user gateway-check (the configuration is invalid), so each rule shows its globs\n" +
				"    rule everyone-reads-themselves (line 6): tools \"get-user-info\" \"get-user-permissions\", for every caller\n"},
		{lines: 12, name: "static client id", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC"}, output: "register http://localhost:3000/callback as the client's redirect URI"},
		{lines: 12, name: "static client id, scopes from the authorization server", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC"},
			issuer: checkIssuer{doc: func(b string) map[string]any {
				d := goodDoc(b)
				d["scopes_supported"] = []string{"email", "offline_access", "openid", "profile"}
				return d
			}}, output: "advertised: the authorization server's email offline_access openid profile; sent when a client sends none: email openid profile (what the protected resource metadata advertises); per-address limits count the TCP peer"},
		{lines: 12, name: "static client id, facade scopes", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC",
			"GATEWAY_FACADE_SCOPES": "openid email", "GATEWAY_FACADE_DEFAULT_SCOPE": "openid", "GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8"},
			output: "resource pinned to http://localhost:3000/mcp; scopes: only openid email (GATEWAY_FACADE_SCOPES); sent when a client sends none: openid (GATEWAY_FACADE_DEFAULT_SCOPE); per-address limits count the X-Forwarded-For address from [10.0.0.0/8]"},
		{lines: 12, name: "static client id without registration", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC"}, issuer: checkIssuer{doc: func(b string) map[string]any {
			d := goodDoc(b)
			delete(d, "registration_endpoint")
			delete(d, "client_id_metadata_document_supported")
			return d
		}}, output: "not needed at the authorization server"},
		{lines: 12, name: "static client id, no token endpoint", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC"}, issuer: checkIssuer{doc: func(b string) map[string]any {
			d := goodDoc(b)
			delete(d, "token_endpoint")
			return d
		}}, failed: []string{"client registration"}, output: "lacks authorization_endpoint or token_endpoint"},
		{name: "claim headers", env: map[string]string{"GATEWAY_CLAIM_HEADERS": "X-Tenant=org_id,X-Groups=groups"}, lines: 12,
			output: "✓ claim headers: X-Tenant ← org_id, X-Groups ← groups; each stripped from inbound requests in every spelling; signed with GATEWAY_IDENTITY_SECRET (signature version 3"},
		{name: "claim header refused", env: map[string]string{"GATEWAY_CLAIM_HEADERS": "Authorization=sub"}, failed: []string{"configuration"},
			skip:   []string{"issuer reachable", "issuer metadata", "JWKS", "client registration", "PKCE", "static client id", "audience", "upstream"},
			output: `GATEWAY_CLAIM_HEADERS: "Authorization": refused: a credential the gateway strips`},
		{name: "metadata documents", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC"}, lines: 12,
			output: "✓ client metadata documents: on: https client ids are fetched over https only"},
		{name: "metadata documents off", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC", "GATEWAY_CIMD": "off"}, lines: 12,
			output: "✓ client metadata documents: off (GATEWAY_CIMD=off)"},
		{name: "metadata documents from loopback, on loopback", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC",
			"GATEWAY_CIMD_ALLOW_PRIVATE": "true"}, lines: 12, output: "WITH loopback and private addresses allowed"},
		{name: "metadata documents from private addresses, on a public URL", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC",
			"GATEWAY_CIMD_ALLOW_PRIVATE": "true", "GATEWAY_PUBLIC_URL": "https://mcp.example.com", "GATEWAY_AUDIENCES": "http://localhost:3000/mcp https://mcp.example.com/mcp"},
			lines: 12, failed: []string{"client metadata documents"}, output: "unset GATEWAY_CIMD_ALLOW_PRIVATE"},
		{name: "metadata documents, CA file missing", env: map[string]string{"MCP_USE_OAUTH_WORKOS_CLIENT_ID": "client_01STATIC",
			"GATEWAY_CIMD_CA_FILE": "/nonexistent/ca.pem"}, lines: 12, failed: []string{"client metadata documents"}, output: "GATEWAY_CIMD_CA_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			is := tc.issuer
			if is.doc == nil {
				is.doc = goodDoc
			}
			if is.jwks == nil {
				is.jwks = jwks
			}
			env := map[string]string{
				"GATEWAY_ISSUER_URL":      is.start(t),
				"GATEWAY_UPSTREAM_URL":    tool.URL + "/mcp",
				"GATEWAY_IDENTITY_SECRET": secret,
			}
			for k, v := range tc.env {
				env[k] = v
			}
			if tc.name == "https public URL" {
				// The audiences default to the resource identifier; pin them to the loopback one to make this case fail
				// on the audience alone.
				env["GATEWAY_AUDIENCES"] = "http://localhost:3000/mcp"
			}
			marks, out, err := checkLines(t, env)
			if got := marks["✗"]; !slices.Equal(got, tc.failed) {
				t.Errorf("failed checks: got %q, want %q\n%s", got, tc.failed, out)
			}
			if got := marks["-"]; !slices.Equal(got, tc.skip) {
				t.Errorf("skipped checks: got %q, want %q\n%s", got, tc.skip, out)
			}
			want := tc.lines
			if want == 0 {
				want = 11
			}
			if n := len(marks["✓"]) + len(marks["✗"]) + len(marks["-"]); n != want {
				t.Errorf("got %d check lines, want %d\n%s", n, want, out)
			}
			if (err != nil) != (len(tc.failed) > 0) {
				t.Errorf("run: got %v, want an error exactly when a check fails", err)
			}
			if !strings.Contains(out, tc.output) {
				t.Errorf("output lacks %q:\n%s", tc.output, out)
			}
		})
	}
}

func TestCheckWordsFixesForAuthKit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{"MCP_USE_OAUTH_WORKOS_SUBDOMAIN": "my-app-54"}, true},
		{map[string]string{"GATEWAY_ISSUER_URL": "https://my-app-54.authkit.app"}, true},
		{map[string]string{"GATEWAY_ISSUER_URL": "https://login.example.com"}, false},
	} {
		cfg, err := config.Load(tc.env)
		if err != nil {
			t.Fatal(err)
		}
		if got := isAuthKit(cfg); got != tc.want {
			t.Errorf("isAuthKit(%v): got %t, want %t", tc.env, got, tc.want)
		}
	}
}

// TestCheckProbesUpstreamAsTheGateway checks the upstream probe: every request carries the signed identity of
// gateway-check, a session the upstream opens is ended with DELETE, and an initialize result split over several
// event-stream data lines is read whole.
func TestCheckProbesUpstreamAsTheGateway(t *testing.T) {
	t.Parallel()
	const secret = "check-identity-secret-of-32-bytes!!"
	type seen struct {
		method, user string
		verified     bool
	}
	var (
		mu       sync.Mutex
		requests []seen
	)
	record := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			requests = append(requests, seen{r.Method, r.Header.Get(identity.HeaderUserID), identity.Verify(r, []byte(secret), time.Now(), time.Minute) == nil})
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
	stateful := httptest.NewServer(record(tools.Handler(tools.Options{IdentitySecret: []byte(secret), Stateful: true})))
	t.Cleanup(stateful.Close)
	split := httptest.NewServer(record(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var msg struct{ ID json.RawMessage }
		json.NewDecoder(r.Body).Decode(&msg)
		if msg.ID == nil { // notifications/initialized
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\ndata: \"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\ndata: \"serverInfo\":{\"name\":\"split\",\"version\":\"2\"}}}\n\n", msg.ID)
	})))
	t.Cleanup(split.Close)

	for _, tc := range []struct {
		name, url, want string
		methods         []string
	}{
		{"stateful upstream", stateful.URL + "/mcp", "mcp-gateway-tools 1.0.0, protocol 2025-06-18", []string{"POST", "POST", "DELETE"}},
		{"data lines", split.URL + "/mcp", "split 2, protocol 2025-06-18", []string{"POST", "POST"}},
	} {
		mu.Lock()
		requests = nil
		mu.Unlock()
		cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://auth.example.com", "GATEWAY_UPSTREAM_URL": tc.url,
			"GATEWAY_IDENTITY_SECRET": secret})
		if err != nil {
			t.Fatal(err)
		}
		got, err := probeUpstream(t.Context(), &http.Client{Timeout: checkTimeout}, cfg, time.Now)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
		mu.Lock()
		var methods []string
		for _, r := range requests {
			methods = append(methods, r.method)
			if r.user != "gateway-check" || !r.verified {
				t.Errorf("%s: %s as %q, signature verified %t; want gateway-check, signed", tc.name, r.method, r.user, r.verified)
			}
		}
		mu.Unlock()
		if !slices.Equal(methods, tc.methods) {
			t.Errorf("%s: got requests %q, want %q", tc.name, methods, tc.methods)
		}
	}
}

// TestCheckPolicyWhenToolsAreRefused checks what --check says of a policy when the upstream answers initialize but
// refuses to list its tools to the user gateway-check: each rule is shown with its globs, and the reason.
func TestCheckPolicyWhenToolsAreRefused(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var msg struct {
			ID     json.RawMessage
			Method string
		}
		json.NewDecoder(r.Body).Decode(&msg)
		w.Header().Set("Content-Type", "application/json")
		switch msg.Method {
		case "initialize":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"picky","version":"1"}}}`, msg.ID)
		case "tools/list":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32001,"message":"sign in as a real user"}}`, msg.ID)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	t.Cleanup(upstream.Close)
	cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://auth.example.com", "GATEWAY_UPSTREAM_URL": upstream.URL + "/mcp",
		"GATEWAY_POLICY_FILE": "policy.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := probe(t.Context(), &http.Client{Timeout: checkTimeout}, cfg, time.Now, true)
	if err != nil || pr.info != "picky 1, protocol 2025-06-18" || pr.toolsErr == nil || !strings.Contains(pr.toolsErr.Error(), "sign in as a real user") {
		t.Fatalf("probe: got %+v, %v; want the server's info and the tools/list error", pr, err)
	}
	p, err := policy.Parse([]byte(checkPolicy), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := policyReport(p, pr.tools, pr.toolsErr)
	for _, want := range []string{"the upstream's tools could not be listed as the user gateway-check (", "sign in as a real user",
		"rule admins (line 12): tools \"*\", requiring roles one of admin"} {
		if !strings.Contains(got, want) {
			t.Errorf("policyReport lacks %q:\n%s", want, got)
		}
	}
}
