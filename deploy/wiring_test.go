package deploy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// The wiring tests start the real binaries (built by build.sh) with exactly the arguments and environment that
// compose.yaml and the pod spec declare, and run an authenticated tool call through them. What they change, and only
// that, because a test on one machine must:
//
//   - the authorization server: GATEWAY_ISSUER_URL is a local issuer (it takes precedence over the declared
//     MCP_USE_OAUTH_WORKOS_SUBDOMAIN, which stays as declared);
//   - the operator's secrets, which the repository does not hold: fresh values;
//   - addresses: the variables in bindVars and connectVars move to 127.0.0.1 and free ports, each declared port of a
//     network namespace (a compose service, a pod) to one free port, so that what the files wire together stays
//     wired together; a compose service's name stands for that service's loopback.

// issuer is a minimal authorization server: RFC 8414 metadata and a JWKS with one real RSA key.
type issuer struct {
	*httptest.Server
	key *rsa.PrivateKey
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: k}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.URL, "jwks_uri": is.URL + "/jwks", "authorization_endpoint": is.URL + "/authorize",
			"token_endpoint": is.URL + "/token", "code_challenge_methods_supported": []string{"S256"},
			"response_types_supported": []string{"code"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Close)
	return is
}

// token mints an access token for sub, issued for resource.
func (is *issuer) token(t *testing.T, sub, resource string) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": is.URL, "sub": sub, "aud": resource, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
		"email": sub + "@example.com", "client_id": "client_wiring", "scope": "openid email",
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// bearer adds a token to every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// callTool connects to endpoint as sub with a go-sdk client and calls get-user-info, which answers with the identity
// the gateway forwarded.
func callTool(t *testing.T, is *issuer, endpoint, resource, sub string, calls int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "wiring", Version: "1"}, nil)
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: endpoint, HTTPClient: &http.Client{Transport: bearer{is.token(t, sub, resource)}}, MaxRetries: -1,
	}, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v", endpoint, err)
	}
	defer s.Close()
	for range calls {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-info"})
		if err != nil {
			t.Fatalf("get-user-info: %v", err)
		}
		got, _ := json.Marshal(res.StructuredContent)
		if res.IsError || !strings.Contains(string(got), `"userId":"`+sub+`"`) {
			t.Fatalf("get-user-info: got %s (error %t), want userId %s", got, res.IsError, sub)
		}
	}
}

// checkChallenge checks that a request without a token gets the challenge built from the declared public URL.
func checkChallenge(t *testing.T, endpoint, publicURL, mcpPath string) {
	t.Helper()
	resp, err := http.Post(endpoint, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := `Bearer resource_metadata="` + publicURL + `/.well-known/oauth-protected-resource` + mcpPath + `"`
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || got != want {
		t.Errorf("no token: got %d %q, want 401 %q", resp.StatusCode, got, want)
	}
}

// forged asks the tool service directly for a tool as a made-up user, as anything beside the gateway might.
func forged(t *testing.T, toolsURL string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, toolsURL, strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	id := identity.Identity{UserID: "user_forged"}
	id.Set(req.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// resource is the MCP URL a token must be issued for: the declared public URL and MCP path, or their defaults.
func resource(env map[string]string) (publicURL, mcpPath string) {
	publicURL = strings.TrimSuffix(cmpOr(env["GATEWAY_PUBLIC_URL"], "http://localhost:3000"), "/")
	return publicURL, cmpOr(env["GATEWAY_MCP_PATH"], "/mcp")
}

// TestComposeWiring runs the prod profile's gateway and tool service as compose.yaml declares them, with .env.example
// as the operator's .env plus the issuer and the secret.
func TestComposeWiring(t *testing.T) {
	is := newIssuer(t)
	vars := envExample(t)
	vars["GATEWAY_ISSUER_URL"] = is.URL
	vars["GATEWAY_IDENTITY_SECRET"] = randomSecret(t)
	t.Logf("operator input in place of .env: .env.example with GATEWAY_ISSUER_URL=%s and a fresh GATEWAY_IDENTITY_SECRET", is.URL)
	c, _ := loadCompose(t, vars)
	var names []string
	for name, s := range c.Services {
		if slices.Contains(s.Profiles, "prod") {
			names = append(names, name)
		}
	}
	l := newLoopback(t, names...)

	// Started in dependency order, as compose does: the gateway depends on a healthy tool service.
	tools := c.Services["tools"]
	toolsEnv := l.env("tools", "tools", tools.Environment)
	tp := start(t, "tools", tools.Command, toolsEnv)
	eventually(t, "tools health check", func() error { return runCheck(t, tools.Healthcheck.Test[1:], toolsEnv) }, tp)

	gw := c.Services["gateway"]
	gwEnv := l.env("gateway", "gateway", gw.Environment)
	gp := start(t, "gateway", gw.Command, gwEnv)
	eventually(t, "gateway health check", func() error { return runCheck(t, gw.Healthcheck.Test[1:], gwEnv) }, gp)
	base := "http://" + gwEnv["GATEWAY_LISTEN_ADDR"]
	eventually(t, "gateway ready", wantStatus(base+"/readyz", http.StatusOK), gp, tp)

	// The published port is the gateway's listener.
	for _, p := range gw.Ports {
		if target := p[strings.LastIndex(p, ":")+1:]; target != port(t, gw.Environment["GATEWAY_LISTEN_ADDR"]) {
			t.Errorf("gateway publishes container port %s, but listens on %s", target, gw.Environment["GATEWAY_LISTEN_ADDR"])
		}
	}

	publicURL, mcpPath := resource(gw.Environment)
	callTool(t, is, base+mcpPath, publicURL+mcpPath, "user_compose", 2)
	checkChallenge(t, base+mcpPath, publicURL, mcpPath)
	if got := forged(t, "http://"+toolsEnv["TOOLS_LISTEN_ADDR"]+"/mcp"); got != http.StatusForbidden {
		t.Errorf("forged identity straight to the tool service: got %d, want 403", got)
	}
	if got, _ := getStatus("http://" + gwEnv["GATEWAY_METRICS_ADDR"] + "/metrics"); got != http.StatusOK {
		t.Errorf("metrics on GATEWAY_METRICS_ADDR: got %d, want 200", got)
	}
}

// TestKubernetesWiring runs the example overlay's pod twice, as the HorizontalPodAutoscaler's two minimum replicas,
// behind a round-robin stand-in for the Service, and checks that one client's requests succeed whichever replica
// answers them.
func TestKubernetesWiring(t *testing.T) {
	checkPodWiring(t, kustomizeBuild(t, overlay))
}

// TestHelmWiring is TestKubernetesWiring for the Helm chart's pod with its default values.
func TestHelmWiring(t *testing.T) {
	checkPodWiring(t, helmTemplate(t, helmValues[:1]))
}

// checkPodWiring runs the pod of m, once per minimum replica, and calls tools through a round robin over them.
func checkPodWiring(t *testing.T, m *manifests) {
	is := newIssuer(t)
	gwC, toolsC := m.container(t, "gateway"), m.container(t, "tools")
	gwDeclared, toolsDeclared := m.env(t, gwC), m.env(t, toolsC)
	gwDeclared["GATEWAY_ISSUER_URL"] = is.URL
	t.Logf("operator input: GATEWAY_ISSUER_URL=%s added to the gateway container, fresh secrets in secrets.env", is.URL)

	type replica struct {
		gw, tools       *process
		gwEnv, toolsEnv map[string]string
		base            string
	}
	var replicas []*replica
	l := newLoopback(t)
	for i := range int(*m.hpa.Spec.MinReplicas) {
		netns := fmt.Sprintf("pod-%d", i)
		r := &replica{toolsEnv: l.env(netns, "tools", toolsDeclared), gwEnv: l.env(netns, "gateway", gwDeclared)}
		r.tools = start(t, netns+"/tools", toolsC.Command, r.toolsEnv)
		r.gw = start(t, netns+"/gateway", gwC.Command, r.gwEnv)
		probe := func(p *corev1.Probe) string {
			return "http://127.0.0.1:" + l.port(netns, containerPort(t, gwC, p.HTTPGet.Port.String())) + p.HTTPGet.Path
		}
		eventually(t, netns+" readiness probe", wantStatus(probe(gwC.ReadinessProbe), http.StatusOK), r.gw, r.tools)
		eventually(t, netns+" liveness probe", wantStatus(probe(gwC.LivenessProbe), http.StatusOK), r.gw)
		eventually(t, netns+" tools liveness probe", func() error { return runCheck(t, toolsC.LivenessProbe.Exec.Command, r.toolsEnv) }, r.tools)
		r.base = "http://127.0.0.1:" + l.port(netns, containerPort(t, gwC, "http"))
		replicas = append(replicas, r)
	}

	// The Service: each request to the next replica, streams relayed as they come.
	var next atomic.Uint64
	service := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u, _ := url.Parse(replicas[next.Add(1)%uint64(len(replicas))].base)
			pr.SetURL(u)
		},
		FlushInterval: -1,
	})
	t.Cleanup(service.Close)

	publicURL, mcpPath := resource(gwDeclared)
	callTool(t, is, service.URL+mcpPath, publicURL+mcpPath, "user_k8s", 4)
	checkChallenge(t, service.URL+mcpPath, publicURL, mcpPath)
	for i, r := range replicas {
		metrics := scrape(t, "http://127.0.0.1:"+l.port(fmt.Sprintf("pod-%d", i), m.deployment.Spec.Template.Annotations["prometheus.io/port"])+"/metrics")
		if !regexp.MustCompile(`(?m)^mcp_gateway_requests_total\{code="200",method="POST",route="mcp"\} [1-9]`).MatchString(metrics) {
			t.Errorf("replica %d answered no MCP request; the round robin did not reach it", i)
		}
		if got := forged(t, "http://"+r.toolsEnv["TOOLS_LISTEN_ADDR"]+"/mcp"); got != http.StatusForbidden {
			t.Errorf("replica %d: forged identity straight to the tool service: got %d, want 403", i, got)
		}
	}

	// With its tool service gone, a replica is not ready (the Service stops sending it requests) and answers 502.
	r := replicas[0]
	r.tools.stop(t)
	eventually(t, "readiness without the tool service", wantStatus(r.base+gwC.ReadinessProbe.HTTPGet.Path, http.StatusServiceUnavailable), r.gw)
	req, _ := http.NewRequest(http.MethodPost, r.base+mcpPath, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+is.token(t, "user_k8s", publicURL+mcpPath))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("request to a replica without its tool service: got %d, want 502", resp.StatusCode)
	}

	// Every metric the dashboard plots is one the gateway exports.
	checkDashboard(t, scrape(t, "http://127.0.0.1:"+l.port("pod-0", containerPort(t, gwC, "metrics"))+"/metrics"))
}

// scrape returns the text of a metrics endpoint.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestComposeDevProfile runs the dev profile's gateway --dev, built as its image is (BUILD_TAGS empty), with the
// declared environment, and checks that it serves and stops cleanly. It is skipped while the gateway has no --dev.
func TestComposeDevProfile(t *testing.T) {
	c, _ := loadCompose(t, map[string]string{}) // no .env: no account
	dev := c.Services["gateway-dev"]
	dir := t.TempDir()
	build := exec.Command("./build.sh", dir)
	build.Env = append(os.Environ(), "BUILD_TAGS="+dev.Build.Args["BUILD_TAGS"])
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("BUILD_TAGS=%q build.sh: %v\n%s", dev.Build.Args["BUILD_TAGS"], err, out)
	}
	l := newLoopback(t)
	env := l.env("host", "gateway", dev.Environment)
	// The declared host stays (it decides the advertised URL); only the port moves. The development authorization
	// server's default port, 3002, moves too: a developer's own --dev run may hold it.
	declaredHost, _, _ := net.SplitHostPort(dev.Environment["GATEWAY_LISTEN_ADDR"])
	listenPort := port(t, env["GATEWAY_LISTEN_ADDR"])
	env["GATEWAY_LISTEN_ADDR"] = net.JoinHostPort(declaredHost, listenPort)
	env["GATEWAY_DEV_ISSUER_ADDR"] = "127.0.0.1:" + l.port("host", "3002")
	cmd := exec.Command(filepath.Join(dir, dev.Command[0]), dev.Command[1:]...)
	cmd.Env = environ(env)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	base := "http://127.0.0.1:" + listenPort
	deadline := time.After(20 * time.Second)
	for ready := false; !ready; {
		select {
		case err := <-done:
			if strings.Contains(out.String(), "flag provided but not defined: -dev") {
				t.Skipf("this gateway has no --dev yet: %s", out)
			}
			t.Fatalf("gateway --dev exited: %v\n%s", err, out)
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("gateway --dev did not answer /healthz within 20s\n%s", out)
		case <-time.After(50 * time.Millisecond):
			code, _ := getStatus(base + "/healthz")
			ready = code == http.StatusOK
		}
	}
	// README says http://localhost:3000/mcp; the banner must say the same host.
	if want := "http://localhost:" + listenPort + "/mcp"; !strings.Contains(out.String(), want) {
		t.Errorf("gateway --dev does not advertise %s:\n%s", want, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("gateway --dev on SIGTERM: %v\n%s", err, out)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Errorf("gateway --dev did not stop within 30s of SIGTERM\n%s", out)
	}
}
