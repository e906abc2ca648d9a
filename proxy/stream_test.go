package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-gateway/gateway/proxy/relay"
)

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openStream opens a GET event stream through the harness's gateway with the extra headers hdr.
func (h *harness) openStream(t *testing.T, ctx context.Context, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token(t, "user_1"))
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestRelayedStream follows one GET event stream through the relay: events arrive as they are sent, a large one
// intact, the stream ends cleanly when the upstream ends it, and the gateway counts it while open and records it once
// closed.
func TestRelayedStream(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	release := make(chan struct{})
	big := "data: " + strings.Repeat("x", 100<<10) + "\n\n"
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Mcp-Session-Id", "upstream-session")
		io.WriteString(w, "event: message\ndata: {\"first\":true}\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, big)
		io.WriteString(w, "data: last\n\n")
	}
	resp := h.openStream(t, t.Context(), nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("response: %d %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on the relayed stream")
	}
	if sid := resp.Header.Get("Mcp-Session-Id"); sid == "" || strings.HasPrefix(sid, "upstream-session") && sid == "upstream-session" {
		t.Errorf("Mcp-Session-Id: got %q, want the upstream's id bound to the caller", sid)
	}
	if !resp.Close {
		t.Error("relayed stream does not announce Connection: close")
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "event: message\n" {
		t.Fatalf("first line: %q, %v", line, err)
	}
	if got := h.gw.relayedStreams(); got != 1 {
		t.Fatalf("relayed streams: got %d, want 1 (the stream did not go through the relay)", got)
	}
	if got := testutil.ToFloat64(h.gw.metrics.OpenStreams); got != 1 {
		t.Errorf("open streams: got %v, want 1", got)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading the rest of the stream: %v", err)
	}
	if want := "data: {\"first\":true}\n\n" + big + "data: last\n\n"; string(rest) != want {
		t.Errorf("rest of stream: got %d bytes, want %d", len(rest), len(want))
	}
	waitFor(t, "the stream to be closed", func() bool { return h.gw.relayedStreams() == 0 })
	if got := testutil.ToFloat64(h.gw.metrics.OpenStreams); got != 0 {
		t.Errorf("open streams after the end: got %v, want 0", got)
	}
	if got := testutil.ToFloat64(h.gw.metrics.Requests.WithLabelValues("mcp", "GET", "200")); got != 1 {
		t.Errorf("requests recorded for the stream: got %v, want 1", got)
	}
}

// TestRelayedStreamRequestAsReverseProxy checks that the relay sends the upstream the same headers as the reverse
// proxy does for the same request: credentials, cookies, forwarding headers and identity headers from the client are
// removed, the verified identity is set, and hop-by-hop headers are not forwarded.
func TestRelayedStreamRequestAsReverseProxy(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_IDENTITY_SECRET": "0123456789abcdef0123456789abcdef"}, true)
	hostile := map[string]string{
		"Cookie": "session=1", "Forwarded": "for=6.6.6.6", "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil",
		"X-Forwarded-Proto": "gopher", "X-Auth-User-Id": "admin", "X_Auth_Email": "admin@example.com",
		"X-Forwarded-User": "admin", "Connection": "X-Hop", "X-Hop": "1", "Proxy-Authorization": "Basic eA==",
		"Accept": "application/json, text/event-stream", "Last-Event-ID": "ev-1", "MCP-Protocol-Version": "2025-06-18",
		"Te": "trailers",
	}
	upstreamHeaders := func(method string) http.Header {
		t.Helper()
		h.up.handler = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {}\n\n")
		}
		resp := h.do(t, method, "/mcp?a=1;b=2&c=%zz", h.token(t, "user_1"), hostile, "")
		io.ReadAll(resp.Body)
		last := h.up.last(t)
		got := last.Header.Clone()
		// The identity signature covers the method, which differs (TestIdentitySignatureCoversRequest checks both).
		for _, k := range []string{"X-Request-Id", "Connection", "Content-Length", "X-Auth-Signature"} {
			delete(got, k)
		}
		got["(query)"] = []string{last.URL.RawQuery}
		return got
	}
	viaProxy := upstreamHeaders("DELETE") // not relayable: through httputil.ReverseProxy
	relayed := upstreamHeaders("GET")
	if !h.gw.streamRelay {
		t.Fatal("the relay is off in the test harness")
	}
	if !reflect.DeepEqual(relayed, viaProxy) {
		t.Errorf("upstream headers differ:\n relay %v\n proxy %v", relayed, viaProxy)
	}
	for _, k := range []string{"Cookie", "Forwarded", "X-Hop", "Proxy-Authorization", "Authorization", "X_auth_email"} {
		if v, ok := relayed[k]; ok {
			t.Errorf("relayed request carries %s: %q", k, v)
		}
	}
	for _, k := range []string{"X-Auth-User-Id", "X-Forwarded-User"} {
		if got := relayed.Get(k); got != "user_1" {
			t.Errorf("%s upstream: got %q, want user_1", k, got)
		}
	}
	if got := relayed.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For upstream: got %q, want 127.0.0.1", got)
	}
	if r := h.up.last(t); r.URL.Path != "/upstream/mcp" || r.Host != strings.TrimPrefix(h.upSrv.URL, "http://") {
		t.Errorf("relayed request: path %q host %q", r.URL.Path, r.Host)
	}
}

// TestRelayedStreamClientLeaves checks that a client that closes its stream ends the upstream request too.
func TestRelayedStreamClientLeaves(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	canceled := make(chan struct{})
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(canceled)
	}
	ctx, cancel := context.WithCancel(t.Context())
	resp := h.openStream(t, ctx, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	waitFor(t, "the stream to be relayed", func() bool { return h.gw.relayedStreams() == 1 })
	cancel()
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not cancelled 10s after the client went away")
	}
	waitFor(t, "the stream to be closed", func() bool { return h.gw.relayedStreams() == 0 })
	if got := testutil.ToFloat64(h.gw.metrics.OpenStreams); got != 0 {
		t.Errorf("open streams: got %v, want 0", got)
	}
}

// TestRelayedStreamOtherAnswers checks that a GET the upstream answers with something other than a 200 event stream
// is passed back like the reverse proxy would, without hop-by-hop headers, and that an upstream that cannot be reached
// or answers with a head too large gets a 502.
func TestRelayedStreamOtherAnswers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		// Written raw: Go's server would replace this Connection header with its own.
		c, _, _ := http.NewResponseController(w).Hijack()
		defer c.Close()
		body := `{"error":"no standalone stream"}`
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n"+
			"Allow: POST, DELETE\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	}
	resp := h.openStream(t, t.Context(), nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 405 || string(body) != `{"error":"no standalone stream"}` || resp.Header.Get("Allow") != "POST, DELETE" {
		t.Errorf("got %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if resp.Header.Get("X-Hop") != "" {
		t.Error("a header named by the upstream's Connection header was passed on")
	}

	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("b", relay.MaxHeadBytes))
		w.Header().Set("Content-Type", "text/event-stream")
	}
	if resp := h.openStream(t, t.Context(), nil); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("upstream head over the limit: got %d, want 502", resp.StatusCode)
	}

	h.upSrv.Close()
	resp = h.openStream(t, t.Context(), nil)
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "bad_gateway") {
		t.Errorf("upstream down: got %d %q, want 502 bad_gateway", resp.StatusCode, body)
	}
}

// TestShutdownClosesRelayedStreams checks that Shutdown returns at once with no stream open, and otherwise waits for
// TestRelayedStreamPipelinedRequest checks that a client that sends more on the connection of its stream gets the
// connection closed rather than its bytes read as a request.
func TestRelayedStreamPipelinedRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET /mcp HTTP/1.1\r\nHost: " + strings.TrimPrefix(h.srv.URL, "http://") + "\r\nAccept: text/event-stream\r\n" +
		"Authorization: Bearer " + h.token(t, "user_1") + "\r\n\r\n"
	// The second request is sent with the first, before any answer.
	if _, err := io.WriteString(c, req+"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", resp, err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(br); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection not closed after a pipelined request: %v", err)
	}
	waitFor(t, "the stream to be closed", func() bool { return h.gw.relayedStreams() == 0 })
}

// TestRelayedStreamLongAnswers checks that answers longer than the bound on the upstream's head pass whole: a 2 MiB
// JSON answer with a length, and a 2 MiB error ended by closing the connection.
func TestRelayedStreamLongAnswers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	big := strings.Repeat("x", 2<<20)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(big)+2))
		io.WriteString(w, `"`+big+`"`)
	}
	resp := h.openStream(t, t.Context(), nil)
	body, err := io.ReadAll(resp.Body)
	if err != nil || len(body) != len(big)+2 {
		t.Errorf("2 MiB answer with a length: got %d bytes, %v", len(body), err)
	}
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		c, _, _ := http.NewResponseController(w).Hijack()
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n"+big)
	}
	resp = h.openStream(t, t.Context(), nil)
	body, err = io.ReadAll(resp.Body)
	if resp.StatusCode != 404 || err != nil || len(body) != len(big) {
		t.Errorf("2 MiB answer ended by closing: got %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
}

// TestRelayedStreamStopsAtContentLength checks that a stream with a length sends the client that many bytes and no
// more, whatever the upstream sends after them.
func TestRelayedStreamStopsAtContentLength(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		c, _, _ := http.NewResponseController(w).Hijack()
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\ndata: x\n\n")
		time.Sleep(50 * time.Millisecond) // let the relay pass the body on before the rest comes
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 5\r\n\r\nforge")
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /mcp HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer "+h.token(t, "user_1")+"\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection not closed: %v", err)
	}
	if !strings.HasSuffix(string(all), "\r\n\r\ndata: x\n\n") || strings.Contains(string(all), "forge") {
		t.Errorf("client received %q", all)
	}
}

// TestRelayedStreamClientLeavesBeforeHead checks that a client that goes away while the upstream has not answered is
// recorded as such (499), and that an upstream switching protocols unasked gets a 502.
func TestRelayedStreamClientLeavesBeforeHead(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	arrived := make(chan struct{})
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-arrived; cancel() }()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+h.token(t, "user_1"))
	req.Header.Set("Accept", "text/event-stream")
	if resp, err := h.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got %d, want the request cancelled", resp.StatusCode)
	}
	waitFor(t, "the cancelled request to be recorded", func() bool {
		return testutil.ToFloat64(h.gw.metrics.Requests.WithLabelValues("mcp", "GET", "499")) == 1
	})

	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		c, _, _ := http.NewResponseController(w).Hijack()
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: evil\r\n\r\nraw bytes")
	}
	if resp := h.openStream(t, t.Context(), nil); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("upstream switching protocols: got %d, want 502", resp.StatusCode)
	}
}
