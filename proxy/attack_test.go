package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Attacks by outside parties and misbehaving upstreams: each test states what was done and what the gateway does.

// TestAttackReadyzPoisonedByCancelledProbe: an anonymous client asks for /readyz and hangs up while the gateway's
// probe of the upstream is under way. The probe must not run under that client's context: its failure would be
// cached, and for the next second every /readyz (the load balancer's, the kubelet's) would say the upstream is
// unreachable although it answers.
func TestAttackReadyzPoisonedByCancelledProbe(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var answered atomic.Bool
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && answered.CompareAndSwap(false, true) {
			entered <- struct{}{}
			<-release // the attacker has hung up
			select {
			case <-r.Context().Done():
				return // the probe was abandoned with its caller
			case <-time.After(300 * time.Millisecond): // then answers, well within the probe's second
			}
		}
		w.WriteHeader(http.StatusOK)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+"/readyz", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := h.srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel() // the attacker hangs up
	<-errc
	close(release)

	// The upstream is healthy: the next HEAD is answered at once.
	resp := h.do(t, http.MethodGet, "/readyz", "", nil, "")
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz after an anonymous client hung up on it: got %d %s, want 200 (the upstream answers)", resp.StatusCode, body)
	}
}

// wedgedListener accepts connections and never reads from them or answers. Its connections are closed when the
// test ends, before the servers the test registers after it are closed (which wait for their requests).
func wedgedListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln
}

// unwedge closes ln and the connections it accepted when the test ends; register it after the harness, so that it
// runs first.
func unwedge(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
}

var attackBodySize = 4194303

// TestAttackWedgedUpstreamLargeBody: the upstream accepts the connection and never reads. A POST whose body does not
// fit in the socket buffers blocks the transport's write of the body, and the transport's response-header timeout
// only starts once the body is written: each write to the upstream must complete within GATEWAY_UPSTREAM_TIMEOUT, so
// the client gets 504 (not 408: it sent its body in time) and nothing stays in the gateway.
func TestAttackWedgedUpstreamLargeBody(t *testing.T) {
	t.Parallel()
	ln := wedgedListener(t)
	h := newHarness(t, map[string]string{
		"GATEWAY_UPSTREAM_URL":     "http://" + ln.Addr().String() + "/mcp",
		"GATEWAY_UPSTREAM_TIMEOUT": "200ms",
		"GATEWAY_READ_TIMEOUT":     "300ms",
	}, true)
	unwedge(t, ln)
	tok := h.token(t, "user_1")
	body := bytes.Repeat([]byte("x"), attackBodySize) // under GATEWAY_MAX_BODY_BYTES (4 MiB)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+"/mcp", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Errorf("no answer within %s with GATEWAY_UPSTREAM_TIMEOUT=200ms and GATEWAY_READ_TIMEOUT=300ms: %v", time.Since(start).Round(time.Millisecond), err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("got %d %s, want 504", resp.StatusCode, b)
		}
	}
	// The client is gone; the gateway should be too.
	deadline := time.Now().Add(3 * time.Second)
	for h.gw.obs.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.gw.obs.inflight.Load(); n > 0 {
		t.Errorf("%d request(s) still in the gateway 3s after their client left", n)
	}
}

// TestAttackUpstreamCutBodyWritesTwoLines: an upstream that declares a length and closes halfway must not make the
// reverse proxy write a warning of its own ("ReverseProxy read error during body copy") beside the access line.
func TestAttackUpstreamCutBodyWritesTwoLines(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, true)
	h.up.handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		io.WriteString(w, `{"partial":`)
		w.(http.Flusher).Flush()
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	}
	tok := h.token(t, "user_1")
	before := len(h.logs.lines(t))
	const n = 5
	for range n {
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/mcp", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := h.srv.Client().Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	waitFor(t, "the requests to be recorded", func() bool { return h.gw.obs.inflight.Load() == 0 })
	var extra []string
	for _, l := range h.logs.lines(t)[before:] {
		if l["msg"] != "request" && l["level"] != "DEBUG" {
			extra = append(extra, fmt.Sprint(l["msg"]))
		}
	}
	if len(extra) > 0 {
		t.Errorf("%d requests wrote %d lines besides their access lines, e.g. %q", n, len(extra), extra[0])
	}
}

// TestAttackSlowReaderOutlivesEveryTimeout: served as cmd/gateway serves it (no server WriteTimeout, which would cut
// event streams), an anonymous client that pipelines requests and never reads their answers must not keep its
// connection: each write must be taken within GATEWAY_WRITE_TIMEOUT.
func TestAttackSlowReaderOutlivesEveryTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{"GATEWAY_READ_TIMEOUT": "200ms", "GATEWAY_WRITE_TIMEOUT": "200ms"}, true)
	closed := make(chan struct{}, 1)
	srv := &http.Server{
		Handler:           h.gw.Handler(),
		ReadHeaderTimeout: 200 * time.Millisecond,
		IdleTimeout:       200 * time.Millisecond,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				select {
				case closed <- struct{}{}:
				default:
				}
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		req := strings.Repeat("GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: x\r\n\r\n", 1000)
		for range 20 { // 20,000 answers of about 400 bytes: more than the socket buffers hold, answered in well under 3s
			if _, err := io.WriteString(c, req); err != nil {
				return
			}
		}
	}()
	select {
	case <-closed:
	case <-time.After(3 * time.Second): // 15× every timeout
		t.Error("a connection that does not read its answers was still open 3s later, with GATEWAY_WRITE_TIMEOUT at 200ms")
	}
}
