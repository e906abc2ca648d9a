package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/ratelimit"
)

// limited decodes a 429's body and checks its shape and Retry-After.
func limited(t *testing.T, resp *http.Response, retryAfter string) {
	t.Helper()
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status: got %d %s, want 429", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After: got %q, want %q", got, retryAfter)
	}
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != "too_many_requests" || e.ErrorDescription == "" {
		t.Errorf("body: got %s (%v), want a too_many_requests error", body, err)
	}
}

// TestUserRateLimit checks GATEWAY_RATE_LIMIT_USER: a user over the rate gets 429 with Retry-After, another user
// does not, and the user passes again once the bucket refills.
func TestUserRateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_RATE_LIMIT_USER": "1/s,burst=2"}, true)
	alice, bob := h.token(t, "alice"), h.token(t, "bob")
	for range 2 {
		if resp := h.do(t, "POST", "/mcp", alice, nil, "{}"); resp.StatusCode != 200 {
			t.Fatalf("within the burst: got %d", resp.StatusCode)
		}
	}
	limited(t, h.do(t, "POST", "/mcp", alice, nil, "{}"), "1")
	if resp := h.do(t, "POST", "/mcp", bob, nil, "{}"); resp.StatusCode != 200 {
		t.Errorf("another user: got %d, want 200", resp.StatusCode)
	}
	if got := testutil.ToFloat64(h.gw.metrics.Limited.WithLabelValues(limitUserRate)); got != 1 {
		t.Errorf("mcp_gateway_limited_total{limit=user_rate}: got %v, want 1", got)
	}
	h.clock.Add(time.Second)
	if resp := h.do(t, "POST", "/mcp", alice, nil, "{}"); resp.StatusCode != 200 {
		t.Errorf("after a second: got %d, want 200", resp.StatusCode)
	}
}

// TestAnonymousRateLimit checks GATEWAY_RATE_LIMIT_ANONYMOUS: requests without a valid token from one address get
// 429 over the rate, logged once per interval, while a valid token from the same address still passes; the address
// passes again once its bucket refills.
func TestAnonymousRateLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_RATE_LIMIT_ANONYMOUS": "1/m,burst=2"}, true)
	for _, tok := range []string{"", "not.a.jwt"} {
		if resp := h.do(t, "POST", "/mcp", tok, nil, "{}"); resp.StatusCode != 401 {
			t.Fatalf("within the burst: got %d, want 401", resp.StatusCode)
		}
	}
	limited(t, h.do(t, "POST", "/mcp", "", nil, "{}"), "60")
	limited(t, h.do(t, "POST", "/mcp", "not.a.jwt", nil, "{}"), "60")
	if resp := h.do(t, "POST", "/mcp", h.token(t, "alice"), nil, "{}"); resp.StatusCode != 200 {
		t.Errorf("a valid token from the same address: got %d, want 200", resp.StatusCode)
	}
	if got := testutil.ToFloat64(h.gw.metrics.Limited.WithLabelValues(limitAnonymousRate)); got != 2 {
		t.Errorf("mcp_gateway_limited_total{limit=anonymous_rate}: got %v, want 2", got)
	}
	n := 0
	for _, l := range h.logs.lines(t) {
		if l["limit"] == limitAnonymousRate && l["level"] == "WARN" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("warnings about the limit: got %d, want 1", n)
	}
	h.clock.Add(time.Minute)
	if resp := h.do(t, "POST", "/mcp", "", nil, "{}"); resp.StatusCode != 401 {
		t.Errorf("after a minute: got %d, want 401", resp.StatusCode)
	}
}

// TestStreamLimitOnBothPaths checks GATEWAY_MAX_STREAMS_USER on the relay and on the reverse proxy: a user holding
// the cap gets 429 for one more stream, another user does not, and the slot is given back when the stream ends.
func TestStreamLimitOnBothPaths(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"on", "off"} {
		t.Run("relay "+path, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, map[string]string{"GATEWAY_MAX_STREAMS_USER": "1", "GATEWAY_STREAM_RELAY": path}, true)
			h.up.handler = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}
			open := func(ctx context.Context, sub string) *http.Response {
				req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/mcp", nil)
				req.Header.Set("Authorization", "Bearer "+h.token(t, sub))
				req.Header.Set("Accept", "text/event-stream")
				resp, err := h.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resp.Body.Close() })
				return resp
			}
			ctx, cancel := context.WithCancel(t.Context())
			if resp := open(ctx, "alice"); resp.StatusCode != 200 {
				t.Fatalf("first stream: got %d", resp.StatusCode)
			}
			limited(t, open(t.Context(), "alice"), "5")
			h.gw.limits.streams.mu.Lock()
			held := h.gw.limits.streams.open[h.is.URL+" alice"]
			h.gw.limits.streams.mu.Unlock()
			if held != 1 {
				t.Fatalf("alice's streams as counted: %d, want 1 (counted by issuer and sub)", held)
			}
			if resp := open(t.Context(), "bob"); resp.StatusCode != 200 {
				t.Errorf("another user's stream: got %d, want 200", resp.StatusCode)
			}
			cancel()
			waitFor(t, "alice's stream to be given back", func() bool {
				h.gw.limits.streams.mu.Lock()
				defer h.gw.limits.streams.mu.Unlock()
				return h.gw.limits.streams.open[h.is.URL+" alice"] == 0
			})
			if resp := open(t.Context(), "alice"); resp.StatusCode != 200 {
				t.Errorf("a stream after the first ended: got %d, want 200", resp.StatusCode)
			}
			if got := testutil.ToFloat64(h.gw.metrics.Limited.WithLabelValues(limitUserStreams)); got != 1 {
				t.Errorf("mcp_gateway_limited_total{limit=user_streams}: got %v, want 1", got)
			}
		})
	}
}

// TestLimitsOffMountNothing checks that without GATEWAY_RATE_LIMIT_USER no middleware is mounted for it, and that
// GATEWAY_RATE_LIMIT_ANONYMOUS=off and GATEWAY_MAX_STREAMS_USER=0 leave their limits off.
func TestLimitsOffMountNothing(t *testing.T) {
	t.Parallel()
	middlewares := func(env map[string]string) int {
		h := newHarness(t, env, false)
		n := -1
		chi.Walk(h.gw.handler.(chi.Routes), func(_, route string, _ http.Handler, mws ...func(http.Handler) http.Handler) error {
			if route == "/mcp" {
				n = len(mws)
			}
			return nil
		})
		return n
	}
	off, on := middlewares(nil), middlewares(map[string]string{"GATEWAY_RATE_LIMIT_USER": "10/s"})
	if on != off+1 {
		t.Errorf("middlewares on the MCP endpoint: got %d with the user limit and %d without, want one more", on, off)
	}
	h := newHarness(t, map[string]string{"GATEWAY_RATE_LIMIT_ANONYMOUS": "off", "GATEWAY_MAX_STREAMS_USER": "0"}, false)
	if l := h.gw.limits; l.user != nil || l.anonymous != nil || l.streams != nil {
		t.Errorf("limits on: %+v", l)
	}
}

// limitPolicy limits the calls of two tools, each per caller, and leaves a third unlimited.
const limitPolicy = `default: deny
rules:
  - name: limited-lookups
    tools: ["get-workos-user", "report-*"]
    limit: {rate: 2/m}
  - name: everyone
    tools: ["get-user-info"]
`

// TestPolicyToolLimit: a rule's limit counts the calls of each tool it grants, per caller: over it, a call gets 429
// with Retry-After and a JSON-RPC error with its id, and never reaches the upstream; other tools, other callers and
// lists are not counted; in a batch, only the call over its limit is answered by the gateway.
func TestPolicyToolLimit(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, limitPolicy, nil)
	for i := range 2 {
		if resp, body := ph.post(t, nil, "", nil, call(strconv.Itoa(i+1), "get-workos-user")); resp.StatusCode != 200 {
			t.Fatalf("call %d within the limit: got %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := ph.post(t, nil, "", nil, call("3", "get-workos-user"))
	want := `{"jsonrpc":"2.0","id":3,"error":{"code":429,"message":"Rate limit exceeded for tool get-workos-user: retry after 30 s","data":{"retryAfterSeconds":30}}}`
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "30" || body != want {
		t.Fatalf("over the limit: got %d Retry-After %q %s, want 429 30 %s", resp.StatusCode, resp.Header.Get("Retry-After"), body, want)
	}
	if n := len(ph.upstreamBodies()); n != 2 {
		t.Fatalf("%d calls reached the upstream, want 2", n)
	}
	if got := testutil.ToFloat64(ph.gw.metrics.Limited.WithLabelValues(limitToolRate)); got != 1 {
		t.Errorf("mcp_gateway_limited_total{limit=tool_rate}: got %v, want 1", got)
	}

	for _, body := range []string{call("4", "report-a"), call("5", "get-user-info"), call("6", "get-user-info"), listReq, listReq} {
		if resp, got := ph.post(t, nil, "", nil, body); resp.StatusCode != 200 {
			t.Errorf("%s: got %d %s, want 200 (another tool, an unlimited one, or a list)", body, resp.StatusCode, got)
		}
	}
	other := ph.token(t, "user_2", func(map[string]any) {})
	resp = ph.do(t, "POST", "/mcp", other, map[string]string{"Content-Type": "application/json",
		"Accept": "application/json, text/event-stream"}, call("7", "get-workos-user"))
	if b := readBody(t, resp); resp.StatusCode != 200 {
		t.Errorf("another caller's first call: got %d %s", resp.StatusCode, b)
	}

	ph.answer(func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `[{"jsonrpc":"2.0","id":9,"result":{}}]`)
	})
	before := len(ph.upstreamBodies())
	resp, body = ph.post(t, nil, "", nil, "["+call("8", "get-workos-user")+","+call("9", "get-user-info")+"]")
	if resp.StatusCode != 200 || !strings.Contains(body, `"id":8,"error":{"code":429`) || !strings.Contains(body, `"id":9,"result"`) {
		t.Fatalf("batch with one call over its limit: got %d %s", resp.StatusCode, body)
	}
	if got := ph.upstreamBodies()[before:]; len(got) != 1 || got[0] != "["+call("9", "get-user-info")+"]" {
		t.Fatalf("batch: the upstream got %q, want only the call within its limits", got)
	}
}

// countingLimiter counts the budgets asked of the limiter it wraps.
type countingLimiter struct {
	inner ratelimit.Limiter
	asks  atomic.Int64
}

func (c *countingLimiter) Allow(ctx context.Context, key string, r config.Rate) (bool, time.Duration) {
	c.asks.Add(1)
	return c.inner.Allow(ctx, key, r)
}

// TestToolLimitBatchIsBounded: one POST, a batch of a thousand calls, cost a thousand limiter round trips (with
// Redis, each up to its timeout, one after the other) and, under a rule granting a pattern (report-*), a thousand
// budgets of the limiter's 100,000: a few such POSTs filled it, and every other caller's new budgets then went
// uncounted. A POST asks for at most authz.MaxLimitTakes budgets, and a budget that refused once is not asked again in it.
func TestToolLimitBatchIsBounded(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, limitPolicy, nil)
	mem := ratelimit.NewMemory(limitKeys, nil)
	counter := &countingLimiter{inner: mem}
	ph.gw.limits.tools = counter
	batch := func(name func(i int) string) string {
		calls := make([]string, 1000)
		for i := range calls {
			calls[i] = call(strconv.Itoa(i+1), name(i))
		}
		return "[" + strings.Join(calls, ",") + "]"
	}
	ph.answer(func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `[]`)
	})

	resp, body := ph.post(t, nil, "", nil, batch(func(int) string { return "get-workos-user" }))
	if got := strings.Count(body, `"code":429`); resp.StatusCode != 200 || got != 998 {
		t.Fatalf("a batch of 1000 calls of one tool limited to 2/m: got %d with %d calls over the limit, want 200 with 998", resp.StatusCode, got)
	}
	if n := counter.asks.Load(); n > 3 {
		t.Errorf("a batch of 1000 calls of one tool asked the limiter %d times, want at most 3 (2 taken, 1 refused)", n)
	}

	counter.asks.Store(0)
	resp, body = ph.post(t, nil, "", nil, batch(func(i int) string { return "report-" + strconv.Itoa(i) }))
	if n := counter.asks.Load(); n > 3 {
		t.Errorf("a batch of 1000 distinct tools of one pattern asked the limiter %d times, want at most 3: they share a budget", n)
	}
	if n := mem.Len(); n != 2 {
		t.Errorf("budgets after the two batches: got %d, want 2 (get-workos-user, report-*)", n)
	}
	if got := strings.Count(body, `"code":429`); resp.StatusCode != 200 || got != 998 {
		t.Errorf("1000 distinct tools of a pattern limited to 2/m: got %d with %d over the limit, want 200 with 998", resp.StatusCode, got)
	}
}

// TestToolLimitKeySpaceIsNotOneCallersToFill: under a rule that grants a pattern (report-*), one caller names as many
// tools as it likes; were each a budget of its own, once the limiter held as many as it may (100,000; 200 here),
// every other caller's new budgets would pass uncounted (and with Redis, they would fill its memory). The tools a
// pattern matches share one budget per caller, so the caller's made-up names take one.
func TestToolLimitKeySpaceIsNotOneCallersToFill(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, limitPolicy, nil)
	mem := ratelimit.NewMemory(200, nil)
	ph.gw.limits.tools = mem
	ph.answer(func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	})
	for i := range 400 {
		resp, _ := ph.post(t, nil, "", nil, call(strconv.Itoa(i+1), "report-"+strconv.Itoa(i)))
		if want := http.StatusTooManyRequests; i >= 2 && resp.StatusCode != want {
			t.Fatalf("call %d of a made-up report-* tool: got %d, want %d (report-* is one budget of 2/m)", i+1, resp.StatusCode, want)
		}
	}
	if n := mem.Len(); n != 1 {
		t.Errorf("budgets after 400 made-up names: got %d, want 1", n)
	}
	other := ph.token(t, "user_2", func(map[string]any) {})
	codes := make([]int, 3)
	for i := range codes {
		resp := ph.do(t, "POST", "/mcp", other, map[string]string{"Content-Type": "application/json",
			"Accept": "application/json, text/event-stream"}, call(strconv.Itoa(i+1), "get-workos-user"))
		readBody(t, resp)
		codes[i] = resp.StatusCode
	}
	if codes[2] != http.StatusTooManyRequests {
		t.Errorf("another caller's third call of a tool limited to 2/m: got %v, want the third 429", codes)
	}
}

// keyLimiter records the longest key asked of it.
type keyLimiter struct {
	mu      sync.Mutex
	longest int
}

func (k *keyLimiter) Allow(_ context.Context, key string, _ config.Rate) (bool, time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.longest = max(k.longest, len(key))
	return true, 0
}

// TestToolLimitKeyIsBounded: a tool name is whatever the caller writes, up to the body limit (4 MiB). Under a rule
// granting a pattern (report-*), the name went into the budget's key as it was, and the key stays in the limiter's
// memory (or in Redis) until its budget refills: a few hundred calls of megabyte names held gigabytes. The key holds
// a long name's digest instead.
func TestToolLimitKeyIsBounded(t *testing.T) {
	t.Parallel()
	ph := newPolicyHarness(t, limitPolicy, nil)
	keys := &keyLimiter{}
	ph.gw.limits.tools = keys
	long := "report-" + strings.Repeat("x", 100_000)
	if resp, body := ph.post(t, nil, "", nil, call("1", long)); resp.StatusCode != 200 {
		t.Fatalf("call: got %d %s", resp.StatusCode, body)
	}
	if keys.longest == 0 || keys.longest > 256 {
		t.Errorf("a budget's key for a 100,000-byte tool name: got %d bytes, want 1 to 256", keys.longest)
	}
}
