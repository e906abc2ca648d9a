package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-gateway/gateway/proxy/token"
)

// rawRequest sends req on a new connection to the harness's gateway and returns the connection and a reader of its
// answers.
func (h *harness) rawRequest(t *testing.T, req string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// TestBodyMustArrive checks that a request body must arrive within GATEWAY_READ_TIMEOUT, extended while parts of it
// arrive, and that the deadline is gone once the body is read: a client that declares a body and sends none is
// answered 408 and its connection closed, whether or not it is authenticated; one that sends its body slowly but
// steadily is served; and an event stream answering a POST outlives the timeout.
func TestBodyMustArrive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_READ_TIMEOUT": "300ms"}, true)
	host := strings.TrimPrefix(h.srv.URL, "http://")
	tok := h.token(t, "user_1")

	t.Run("declared body never sent, authenticated", func(t *testing.T) {
		c, br := h.rawRequest(t, "POST /mcp HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: Bearer "+tok+
			"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if body := readBody(t, resp); resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "request_timeout") {
			t.Errorf("got %d %s, want 408 request_timeout", resp.StatusCode, body)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Error("the connection stayed open after the body timed out")
		}
	})
	t.Run("declared body never sent, anonymous", func(t *testing.T) {
		// A refusal answers at once and closes the connection, instead of waiting for the body (to discard it)
		// until the read timeout, here a minute.
		h := newHarness(t, map[string]string{"GATEWAY_READ_TIMEOUT": "60s"}, true)
		c, br := h.rawRequest(t, "POST /mcp HTTP/1.1\r\nHost: "+strings.TrimPrefix(h.srv.URL, "http://")+"\r\nContent-Length: 100\r\n\r\n")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("got %v, %v; want 401 at once", resp, err)
		}
		readBody(t, resp)
		if !resp.Close {
			t.Error("the refusal did not say Connection: close")
		}
		if _, err := br.ReadByte(); err == nil || isTimeout(err) {
			t.Errorf("the connection was held after the refusal: %v", err)
		}
	})
	t.Run("body sent slowly but steadily", func(t *testing.T) {
		body := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
		c, br := h.rawRequest(t, fmt.Sprintf("POST /mcp HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", host, tok, len(body)))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		for i := 0; i < len(body); i += 10 {
			time.Sleep(120 * time.Millisecond) // 5 parts over 600 ms: twice the timeout in all, never more than 120 ms apart
			io.WriteString(c, body[i:min(i+10, len(body))])
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("got %v, %v; want 200", resp, err)
		}
	})
	t.Run("event stream answering a POST outlives the timeout", func(t *testing.T) {
		h.up.handler = func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(time.Second): // three read timeouts
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "data: late\n\n")
		}
		defer func() { h.up.handler = nil }()
		resp := h.do(t, "POST", "/mcp", tok, map[string]string{"Content-Type": "application/json"}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
		if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "data: late") {
			t.Errorf("got %d %q, want the late event", resp.StatusCode, body)
		}
	})
}

// isTimeout reports whether err is a deadline the test set on its own connection.
func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestWedgedUpstream checks that an upstream that accepts and never answers gets the client a 504 JSON answer after
// GATEWAY_UPSTREAM_TIMEOUT, on the reverse proxy and on the event-stream relay, and that /readyz reports it.
func TestWedgedUpstream(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_UPSTREAM_TIMEOUT": "200ms"}, true)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	tok := h.token(t, "user_1")
	for _, tc := range []struct {
		name   string
		method string
		hdr    map[string]string
	}{
		{"POST through the reverse proxy", "POST", map[string]string{"Content-Type": "application/json"}},
		{"GET event stream through the relay", "GET", map[string]string{"Accept": "text/event-stream"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			resp := h.do(t, tc.method, "/mcp", tok, tc.hdr, "")
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, "gateway_timeout") {
				t.Errorf("got %d %s %s, want 504 JSON gateway_timeout", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("answered after %s", d)
			}
		})
	}

	// An upstream that accepts connections but never answers is not ready.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	w := newHarness(t, map[string]string{"GATEWAY_UPSTREAM_URL": "http://" + ln.Addr().String() + "/mcp"}, true)
	resp := w.do(t, "GET", "/readyz", "", nil, "")
	if body := readBody(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"upstream_reachable":false`) {
		t.Errorf("/readyz with a wedged upstream: got %d %s, want 503 upstream_reachable false", resp.StatusCode, body)
	}
	// An upstream that answers anything, even 404, is ready.
	h.up.mu.Lock()
	h.up.handler = func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }
	h.up.mu.Unlock()
	resp = h.do(t, "GET", "/readyz", "", nil, "")
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz with an answering upstream: got %d %s, want 200", resp.StatusCode, body)
	}
}

// TestOneLinePerRequest checks that a refused request writes exactly one log line, carrying the reason and the cause,
// and that past the budget the lines of requests without a verified caller are summarised, not written, while
// metrics count every request.
func TestOneLinePerRequest(t *testing.T) {
	t.Parallel()
	// Hundreds of refusals from one address on a clock that stands still: the limit per address is not under test.
	h := newHarness(t, map[string]string{"GATEWAY_RATE_LIMIT_ANONYMOUS": "off"}, true)
	resp := h.do(t, "POST", "/mcp", "not.a.jwt", nil, "{}")
	readBody(t, resp)
	id := resp.Header.Get("X-Request-Id")
	lines := h.logs.linesOf(t, id)
	if len(lines) != 1 {
		t.Fatalf("lines for a refused request: got %d, want 1: %v", len(lines), lines)
	}
	if l := lines[0]; l["reason"] != string(token.ReasonMalformed) || l["err"] == nil || l["status"] != float64(401) {
		t.Errorf("the line lacks the reason, cause or status: %v", l)
	}

	before := len(h.logs.lines(t))
	const flood = 3 * logBudgetLines
	for range flood {
		r := h.do(t, "POST", "/mcp", "", nil, "{}")
		r.Body.Close()
	}
	written := len(h.logs.lines(t)) - before
	if written > logBudgetLines {
		t.Errorf("%d anonymous refusals wrote %d lines, want at most %d", flood, written, logBudgetLines)
	}
	if got := testutil.ToFloat64(h.gw.metrics.AuthFailures.WithLabelValues(string(token.ReasonNoToken))); got != flood {
		t.Errorf("no_token refusals counted: got %v, want %d", got, flood)
	}
	// When the interval ends, one line sums up what was not written.
	h.clock.Add(logBudgetInterval)
	h.gw.obs.logDropped(h.gw.obs.budget.flush(h.clock.Now()))
	var summary map[string]any
	for _, l := range h.logs.lines(t) {
		if l["msg"] == "requests not logged one by one" {
			summary = l
		}
	}
	if summary == nil {
		t.Fatal("no summary line")
	}
	by, _ := summary["by_reason"].(map[string]any)
	if n, _ := by["no_token"].(float64); n < flood-logBudgetLines || n > flood {
		t.Errorf("summary: got %v, want at least %d no_token", summary, flood-logBudgetLines)
	}
	// A verified caller's requests are always logged.
	tok := h.token(t, "user_1")
	r := h.do(t, "POST", "/mcp", tok, nil, "{}")
	readBody(t, r)
	if got := len(h.logs.linesOf(t, r.Header.Get("X-Request-Id"))); got != 1 {
		t.Errorf("authenticated request lines: got %d, want 1", got)
	}
}

// TestEverySpellingOfTrustedHeadersIsStripped checks that no inbound header whose name, with letter case ignored and
// '_' read as '-', is one the gateway sets or checks reaches the upstream: WSGI, PHP and CGI upstreams read them as
// the gateway's own. Mcp_Session_Id carrying another user's session must not bypass the session binding.
func TestEverySpellingOfTrustedHeadersIsStripped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Mcp-Session-Id", "upstream-session-1")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}
	// Bob's session, as the upstream issued it.
	bob := h.do(t, "POST", "/mcp", h.token(t, "user_bob"), nil, "{}")
	readBody(t, bob)
	bobSession := bob.Header.Get("Mcp-Session-Id")
	if bobSession == "" {
		t.Fatal("no session issued")
	}
	h.up.handler = nil
	forged := map[string]string{
		"Mcp_Session_Id":      "upstream-session-1",
		"mcp_session_id":      bobSession,
		"X_Forwarded_For":     "10.6.6.6",
		"X_forwarded_host":    "evil.example",
		"X_FORWARDED_PROTO":   "https",
		"X_Request_Id":        "client-chosen",
		"Forwarded_":          "x", // not a spelling of Forwarded: passes
		"FORWARDED":           "for=10.6.6.6",
		"Authorization_":      "x",
		"Proxy_Authorization": "Basic eA==",
		"COOKIE":              "a=b",
	}
	resp := h.do(t, "POST", "/mcp", h.token(t, "user_1"), forged, "{}")
	if body := readBody(t, resp); resp.StatusCode != 200 {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	r := h.up.last(t)
	trusted := []string{"mcp-session-id", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-request-id",
		"forwarded", "authorization", "proxy-authorization", "cookie"}
	for name, v := range r.Header {
		folded := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if slices.Contains(trusted, folded) && strings.Contains(name, "_") || folded == "forwarded" || folded == "cookie" {
			t.Errorf("upstream got %s: %q", name, v)
		}
	}
	if got := r.Header.Values("Mcp-Session-Id"); len(got) != 0 {
		t.Errorf("upstream got a session id the caller does not own: %q", got)
	}
	for name, want := range map[string]string{
		"X-Forwarded-Host":  strings.TrimPrefix(h.srv.URL, "http://"),
		"X-Forwarded-Proto": "http",
		"X-Forwarded-For":   "127.0.0.1",
		"X-Request-Id":      resp.Header.Get("X-Request-Id"),
	} {
		if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s: got %q, want [%q]", name, got, want)
		}
	}
	if got := r.Header.Values("Forwarded_"); len(got) != 1 {
		t.Errorf("a header that is no spelling of one the gateway sets was dropped: %q", got)
	}
}

// upgrader answers an upgrade request with 101 and then echoes what it reads, like a WebSocket server would; without
// an upgrade offer it answers 200, unless always is set.
func upgrader(always bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" && !always {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"plain":true}`)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		io.Copy(c, brw)
	}
}

// TestNoTunnels checks that an upgrade offer is never forwarded: the upstream sees a plain request and the client a
// plain answer, an upstream that switches protocols anyway gets the client a 502, and GATEWAY_ALLOW_UPGRADE=true
// forwards it.
func TestNoTunnels(t *testing.T) {
	t.Parallel()
	offer := map[string]string{"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "websocket", "Sec-Websocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-Websocket-Version": "13"}
	t.Run("offer dropped", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, true)
		h.up.handler = upgrader(false)
		resp := h.do(t, "GET", "/mcp", h.token(t, "user_1"), offer, "")
		if body := readBody(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "plain") {
			t.Errorf("got %d %s, want the plain answer", resp.StatusCode, body)
		}
		if r := h.up.last(t); r.Header.Get("Upgrade") != "" || r.Header.Get("Connection") != "" {
			t.Errorf("upstream saw the offer: Upgrade %q, Connection %q", r.Header.Get("Upgrade"), r.Header.Get("Connection"))
		}
	})
	t.Run("h2c offer from curl --http2", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, true)
		resp := h.do(t, "POST", "/mcp", h.token(t, "user_1"), map[string]string{"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "Http2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}, "{}")
		if body := readBody(t, resp); resp.StatusCode != 200 || resp.ProtoMajor != 1 {
			t.Errorf("got %s %d %s, want HTTP/1.1 200", resp.Proto, resp.StatusCode, body)
		}
	})
	t.Run("upstream switches anyway", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, true)
		h.up.handler = upgrader(true)
		resp := h.do(t, "POST", "/mcp", h.token(t, "user_1"), offer, "{}")
		if body := readBody(t, resp); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("got %d %s, want 502", resp.StatusCode, body)
		}
	})
	t.Run("GATEWAY_ALLOW_UPGRADE", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, map[string]string{"GATEWAY_ALLOW_UPGRADE": "true"}, true)
		h.up.handler = upgrader(false)
		host := strings.TrimPrefix(h.srv.URL, "http://")
		c, br := h.rawRequest(t, "GET /mcp HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: Bearer "+h.token(t, "user_1")+
			"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("got %v, %v; want 101", resp, err)
		}
		io.WriteString(c, "ping")
		b := make([]byte, 4)
		if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
			t.Errorf("tunnel echo: got %q, %v", b, err)
		}
	})
}

// TestShutdownEndsStreams checks that a shutdown ends the open event streams at once, relayed or proxied, while a
// request in flight finishes, and that every request has its access line.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	slow := make(chan struct{})
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			<-slow
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"finished":true}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	relayed := h.openStream(t, t.Context(), nil)
	waitFor(t, "the stream to be relayed", func() bool { return h.gw.relayedStreams() == 1 })
	// A GET the relay does not take (no Accept: text/event-stream) goes through the reverse proxy.
	proxied := h.do(t, "GET", "/mcp", h.token(t, "user_1"), nil, "")
	if proxied.StatusCode != 200 {
		t.Fatalf("proxied stream: %d", proxied.StatusCode)
	}
	type answer struct {
		resp *http.Response
		body string
	}
	post := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("POST", h.srv.URL+"/mcp", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+h.token(t, "user_1"))
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			post <- answer{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		post <- answer{resp, string(b)}
	}()
	waitFor(t, "the POST to reach the upstream", func() bool { return h.up.count() >= 3 })

	shut := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	go func() { shut <- h.gw.Shutdown(ctx) }()
	for name, r := range map[string]*http.Response{"relayed": relayed, "proxied": proxied} {
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, r.Body); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the %s stream stayed open after the shutdown started", name)
		}
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) before the request in flight finished", err)
	default:
	}
	close(slow)
	a := <-post
	if a.resp == nil || a.resp.StatusCode != 200 || !strings.Contains(a.body, "finished") {
		t.Errorf("the request in flight: got %v %q, want it finished", a.resp, a.body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Shutdown took %s", d)
	}
	for name, r := range map[string]*http.Response{"relayed": relayed, "proxied": proxied, "in flight": a.resp} {
		if got := len(h.logs.linesOf(t, r.Header.Get("X-Request-Id"))); got != 1 {
			t.Errorf("%s request: %d access lines, want 1", name, got)
		}
	}
}

// TestSlowUpstreamIsNotTheClientsFault checks that time the gateway spends waiting for the upstream to take a request
// body does not count against the client's read timeout: a client that sent its whole body at once is served, not
// answered 408, when the upstream starts reading it only after several read timeouts.
func TestSlowUpstreamIsNotTheClientsFault(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_READ_TIMEOUT": "200ms"}, true)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(800 * time.Millisecond) // the slow upstream under test: four read timeouts before it reads
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"read":%d}`, n)
	}
	body := strings.Repeat("x", 4<<20-1) // more than the sockets between client, gateway and upstream hold
	resp := h.do(t, "POST", "/mcp", h.token(t, "user_1"), map[string]string{"Content-Type": "application/json"}, body)
	if got := readBody(t, resp); resp.StatusCode != 200 || got != fmt.Sprintf(`{"read":%d}`, len(body)) {
		t.Errorf("got %d %.200s, want 200 and the whole body read", resp.StatusCode, got)
	}
}

// TestShutdownEndsRelayWaitingForItsHead checks that a relayed GET whose upstream has not answered yet ends when a
// shutdown starts, instead of holding the shutdown for GATEWAY_UPSTREAM_TIMEOUT, and is recorded.
func TestShutdownEndsRelayWaitingForItsHead(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true) // GATEWAY_UPSTREAM_TIMEOUT: 30s
	arrived := make(chan struct{})
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // never answers
	}
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", h.srv.URL+"/mcp", nil)
		req.Header.Set("Authorization", "Bearer "+h.token(t, "user_1"))
		req.Header.Set("Accept", "text/event-stream")
		resp, err := h.srv.Client().Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		got <- result{resp, err}
	}()
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.gw.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v after %s", err, time.Since(start))
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("the client got no answer: %v", r.err)
	}
	if r.resp.StatusCode < 500 {
		t.Errorf("status %d, want a 5xx: the upstream never answered", r.resp.StatusCode)
	}
	if n := len(h.logs.linesOf(t, r.resp.Header.Get("X-Request-Id"))); n != 1 {
		t.Errorf("access lines: %d, want 1", n)
	}
}
