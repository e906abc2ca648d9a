package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/redisstore"
	"github.com/mcp-gateway/gateway/proxy/redisstore/redistest"
)

// State shared by replicas through a real redis-server: two gateways with the same configuration, each with its own
// HTTP server, registry and log, in front of the same issuer and upstream.

// optionBEnv is the configuration of Option B the replica tests add.
var optionBEnv = map[string]string{
	"MCP_USE_OAUTH_WORKOS_CLIENT_ID":     "client_UPSTREAM",
	"MCP_USE_OAUTH_WORKOS_CLIENT_SECRET": "upstream secret",
	"GATEWAY_SESSION_SECRET":             strings.Repeat("s", 32),
}

// newReplicas starts a redis-server and two gateways sharing it, configured by env (plus GATEWAY_REDIS_URL), with
// discovery done.
func newReplicas(t *testing.T, env map[string]string) (a, b *harness, srv *redistest.Server) {
	t.Helper()
	srv = redistest.New(t)
	env = maps.Clone(env)
	env["GATEWAY_REDIS_URL"] = srv.URL
	a = newHarness(t, env, true)
	b = replicaOf(t, a, env)
	for _, h := range []*harness{a, b} {
		t.Cleanup(func() { h.gw.Shutdown(context.Background()) })
	}
	return a, b, srv
}

// replicaOf starts a second gateway with a's issuer, upstream, clock and public URL, configured by env.
func replicaOf(t *testing.T, a *harness, env map[string]string) *harness {
	t.Helper()
	b := &harness{is: a.is, key: a.key, up: a.up, upSrv: a.upSrv, clock: a.clock, reg: prometheus.NewRegistry(), logs: &logBuffer{}}
	m := map[string]string{"GATEWAY_ISSUER_URL": a.is.URL, "GATEWAY_UPSTREAM_URL": a.upSrv.URL + "/upstream/mcp",
		"GATEWAY_PUBLIC_URL": a.srv.URL}
	maps.Copy(m, env)
	cfg, err := config.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	b.resource = cfg.Resource
	b.gw, err = New(cfg, Options{Reg: b.reg, Now: b.clock.Now, ASClient: b.is.Client(),
		Logger: slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	b.srv = httptest.NewServer(b.gw.Handler())
	t.Cleanup(b.srv.Close)
	if err := b.gw.discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// timedStatus sends a request as user to h's MCP endpoint and returns the status, failing t when the answer took
// longer than Redis's bound allows.
func timedStatus(t *testing.T, h *harness, user string) int {
	t.Helper()
	start := time.Now()
	resp := h.do(t, "POST", "/mcp", h.token(t, user), nil, "{}")
	readBody(t, resp)
	if took := time.Since(start); took > redisstore.DefaultTimeout+400*time.Millisecond {
		t.Errorf("a request took %s; Redis may hold one for %s at most", took, redisstore.DefaultTimeout)
	}
	return resp.StatusCode
}

// TestReplicasShareOneUserBudget: with GATEWAY_REDIS_URL, a user's GATEWAY_RATE_LIMIT_USER budget is one across
// replicas (not one per replica), another user has their own, and neither replica touched its memory fallback.
func TestReplicasShareOneUserBudget(t *testing.T) {
	t.Parallel()
	a, b, _ := newReplicas(t, map[string]string{"GATEWAY_RATE_LIMIT_USER": "1/m,burst=4"})
	for i, h := range []*harness{a, b, a, b} {
		if got := timedStatus(t, h, "alice"); got != 200 {
			t.Fatalf("request %d within the burst of 4: got %d", i+1, got)
		}
	}
	for name, h := range map[string]*harness{"a": a, "b": b} {
		resp := h.do(t, "POST", "/mcp", h.token(t, "alice"), nil, "{}")
		limited(t, resp, "60")
		if got := timedStatus(t, h, "bob"); got != 200 {
			t.Errorf("replica %s, another user: got %d, want 200", name, got)
		}
	}
	for name, h := range map[string]*harness{"a": a, "b": b} {
		if got := testutil.ToFloat64(h.gw.metrics.RedisUp); got != 1 {
			t.Errorf("replica %s: mcp_gateway_redis_up got %v, want 1", name, got)
		}
		if got := testutil.ToFloat64(h.gw.metrics.RedisErrors.WithLabelValues("rate_limit")); got != 0 {
			t.Errorf("replica %s: mcp_gateway_redis_errors_total{op=rate_limit} got %v, want 0", name, got)
		}
	}
}

// TestReplicasShareOneToolBudget: with GATEWAY_REDIS_URL, a policy rule's limit on a tool is one budget per user across
// replicas.
func TestReplicasShareOneToolBudget(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(limitPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	a, b, _ := newReplicas(t, map[string]string{"GATEWAY_POLICY_FILE": file, "GATEWAY_AUDIT_LOG": "off"})
	hdr := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	post := func(h *harness, user, id string) *http.Response {
		return h.do(t, "POST", "/mcp", h.token(t, user), hdr, call(id, "get-workos-user"))
	}
	for i, h := range []*harness{a, b} {
		if resp := post(h, "alice", strconv.Itoa(i+1)); resp.StatusCode != 200 {
			t.Fatalf("call %d within the limit of 2/m: got %d %s", i+1, resp.StatusCode, readBody(t, resp))
		}
	}
	for name, h := range map[string]*harness{"a": a, "b": b} {
		resp := post(h, "alice", "3")
		if body := readBody(t, resp); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `"code":429`) {
			t.Errorf("replica %s, a third call: got %d %s, want 429", name, resp.StatusCode, body)
		}
		if resp := post(h, "bob", "4"); resp.StatusCode != 200 {
			t.Errorf("replica %s, another user: got %d", name, resp.StatusCode)
		}
	}
}

// browser is a client that does not follow redirects and keeps its cookies by hand, as the Option B tests need.
type browser struct {
	t       *testing.T
	cookies string
}

// send sends a request to h as the browser and keeps the cookies the answer sets.
func (br *browser) send(h *harness, method, path string, form url.Values) *http.Response {
	br.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		br.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", h.gw.cfg.Public.String())
	}
	if br.cookies != "" {
		req.Header.Set("Cookie", br.cookies)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		br.t.Fatal(err)
	}
	br.t.Cleanup(func() { resp.Body.Close() })
	for _, c := range resp.Cookies() {
		br.cookies = strings.TrimPrefix(br.cookies+"; "+c.Name+"="+c.Value, "; ")
	}
	return resp
}

var hiddenField = regexp.MustCompile(`name="(request|csrf)" value="([^"]*)"`)

// startSignIn registers a client at h, consents in br and returns the callback URL (path and query) the upstream
// would send br to with a code.
func startSignIn(t *testing.T, h *harness, br *browser) string {
	t.Helper()
	resp := h.do(t, "POST", "/register", "", map[string]string{"Content-Type": "application/json"},
		`{"client_name":"c","redirect_uris":["http://127.0.0.1:1/callback"],"token_endpoint_auth_method":"none"}`)
	var reg struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal([]byte(readBody(t, resp)), &reg); err != nil || reg.ClientID == "" {
		t.Fatalf("register: %d %v", resp.StatusCode, err)
	}
	q := url.Values{"response_type": {"code"}, "client_id": {reg.ClientID}, "redirect_uri": {"http://127.0.0.1:1/callback"},
		"state": {"client-state"}, "code_challenge": {"challenge"}, "code_challenge_method": {"S256"}}
	resp = br.send(h, "GET", "/authorize?"+q.Encode(), nil)
	page := readBody(t, resp)
	form := url.Values{"decision": {"allow"}}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
	}
	resp = br.send(h, "POST", "/authorize", form)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 302 || loc.Query().Get("state") == "" {
		t.Fatalf("consent: got %d to %q, want a redirect upstream with a state", resp.StatusCode, loc)
	}
	return "/callback?" + url.Values{"code": {"UPCODE"}, "state": {loc.Query().Get("state")}, "iss": {h.is.URL}}.Encode()
}

// TestReplicasShareSignInState: with GATEWAY_REDIS_URL, an Option B callback used at one replica is refused at the
// other (without it, only the replica that saw it would refuse it), in either direction.
func TestReplicasShareSignInState(t *testing.T) {
	t.Parallel()
	a, b, _ := newReplicas(t, optionBEnv)
	for _, order := range [][2]*harness{{a, b}, {b, a}} {
		br := &browser{t: t}
		cb := startSignIn(t, a, br)
		if resp := br.send(order[0], "GET", cb, nil); resp.StatusCode != 302 {
			t.Fatalf("callback: got %d %s, want 302", resp.StatusCode, readBody(t, resp))
		}
		resp := br.send(order[1], "GET", cb, nil)
		if body := readBody(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "used already") {
			t.Errorf("the callback replayed at the other replica: got %d, want 400 (used already)\n%s", resp.StatusCode, body)
		}
	}
}

// readyzRedis returns the redis member of h's /readyz answer, and its status code.
func readyzRedis(t *testing.T, h *harness) (string, int) {
	t.Helper()
	resp := h.do(t, "GET", "/readyz", "", nil, "")
	var doc struct {
		Redis string `json:"redis"`
	}
	json.Unmarshal([]byte(readBody(t, resp)), &doc)
	return doc.Redis, resp.StatusCode
}

// TestReplicasThroughARedisOutage: Redis is stopped and started again while two replicas serve. While it is down,
// rate limits keep answering within the bound, from each replica's memory (a user over the shared budget passes
// again, up to the per-replica limit: fail open); a sign-in callback is refused with 503 and not spent (fail closed);
// /readyz stays ready and says Redis is down; the gauge is 0 and the outage logged once. Once Redis is back, both
// recover by themselves: the same callback completes, and the budget is shared again.
func TestReplicasThroughARedisOutage(t *testing.T) {
	t.Parallel()
	env := maps.Clone(optionBEnv)
	env["GATEWAY_RATE_LIMIT_USER"] = "1/m,burst=2"
	a, b, srv := newReplicas(t, env)
	for i, h := range []*harness{a, b} {
		if got := timedStatus(t, h, "alice"); got != 200 {
			t.Fatalf("request %d: got %d", i+1, got)
		}
	}
	if got := timedStatus(t, a, "alice"); got != 429 {
		t.Fatalf("over the shared budget: got %d, want 429", got)
	}
	br := &browser{t: t}
	cb := startSignIn(t, a, br)

	srv.Stop()
	for name, h := range map[string]*harness{"a": a, "b": b} {
		// Each replica's memory bucket for alice is full: 2 pass, the third is refused, each answered in time.
		for i, want := range []int{200, 200, 429} {
			if got := timedStatus(t, h, "alice"); got != want {
				t.Errorf("replica %s while Redis is down, request %d: got %d, want %d", name, i+1, got, want)
			}
		}
		resp := br.send(h, "GET", cb, nil)
		if body := readBody(t, resp); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("replica %s, callback while Redis is down: got %d, want 503 with Retry-After\n%s", name, resp.StatusCode, body)
		}
		if got := testutil.ToFloat64(h.gw.metrics.RedisUp); got != 0 {
			t.Errorf("replica %s: mcp_gateway_redis_up got %v, want 0", name, got)
		}
		if r, code := readyzRedis(t, h); r != "down" || code != 200 {
			t.Errorf("replica %s: /readyz got %d redis %q, want 200 and down", name, code, r)
		}
		if n := strings.Count(h.logs.String(), "redis does not answer"); n != 1 {
			t.Errorf("replica %s: outage warnings got %d, want 1", name, n)
		}
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, h := range []*harness{a, b} {
		for r, _ := readyzRedis(t, h); r != "up"; r, _ = readyzRedis(t, h) {
			if time.Now().After(deadline) {
				t.Fatalf("Redis restarted: /readyz still says %q after 10s", r)
			}
			a.clock.Add(time.Second) // the replicas' clock: a trial call is due once a second
			time.Sleep(20 * time.Millisecond)
		}
	}
	if resp := br.send(b, "GET", cb, nil); resp.StatusCode != 302 {
		t.Errorf("the callback refused during the outage, once Redis is back: got %d, want 302", resp.StatusCode)
	}
	if resp := br.send(a, "GET", cb, nil); resp.StatusCode != 400 {
		t.Errorf("its replay at the other replica: got %d, want 400", resp.StatusCode)
	}
	// The restarted Redis is empty (no persistence): a full shared budget of 2 again, across replicas.
	for i, want := range []int{200, 200, 429, 429} {
		if got := timedStatus(t, []*harness{a, b}[i%2], "carol"); got != want {
			t.Errorf("after the restart, request %d: got %d, want %d", i+1, got, want)
		}
	}
}

// TestReplayAfterARedisRestart: a Redis without persistence (deploy/compose.yaml's) forgets every used state when it
// restarts, so a callback already completed in the last 10 minutes is accepted again afterwards, at any replica (by
// the browser that started it: a state is bound to it; and the authorization server still takes its code once).
func TestReplayAfterARedisRestart(t *testing.T) {
	t.Skip("known: used sign-in states live only in Redis; a Redis restarted without persistence accepts a completed " +
		"callback again; needs persistence, or each replica remembering the states it accepted as well")
	t.Parallel()
	a, b, srv := newReplicas(t, optionBEnv)
	br := &browser{t: t}
	cb := startSignIn(t, a, br)
	if resp := br.send(a, "GET", cb, nil); resp.StatusCode != 302 {
		t.Fatalf("callback: got %d %s, want 302", resp.StatusCode, readBody(t, resp))
	}
	srv.Stop()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, h := range []*harness{a, b} {
		for r, _ := readyzRedis(t, h); r != "up"; r, _ = readyzRedis(t, h) {
			if time.Now().After(deadline) {
				t.Fatalf("Redis restarted: /readyz still says %q after 10s", r)
			}
			a.clock.Add(time.Second)
			time.Sleep(20 * time.Millisecond)
		}
	}
	for name, h := range map[string]*harness{"a": a, "b": b} {
		if resp := br.send(h, "GET", cb, nil); resp.StatusCode != 400 {
			t.Errorf("replica %s, the completed callback replayed after Redis restarted: got %d, want 400", name, resp.StatusCode)
		}
	}
}
