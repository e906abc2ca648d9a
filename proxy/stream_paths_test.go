package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
)

// paths is one client-facing server in front of two gateways built from one configuration, one that carries
// long-lived event streams through the relay (GATEWAY_STREAM_RELAY=on) and one that carries them through the reverse
// proxy (off), and one upstream behind both. The header X-Test-Path of a request ("relay" or "proxy") chooses.
type paths struct {
	*harness
	gws map[string]*Gateway

	mu   sync.Mutex
	body string // the body of the upstream's last request
}

func newPaths(t *testing.T, env map[string]string) *paths {
	t.Helper()
	p := &paths{harness: &harness{key: tokentest.NewKey(t, "k1", 0), up: &upstreamRecorder{}, clock: tokentest.NewClock(), logs: &logBuffer{}}}
	h := p.harness
	h.is = tokentest.NewIssuer(t, h.key)
	h.upSrv = httptest.NewServer(h.up)
	t.Cleanup(h.upSrv.Close)
	h.srv = httptest.NewUnstartedServer(nil)
	m := map[string]string{
		"GATEWAY_ISSUER_URL":     h.is.URL,
		"GATEWAY_UPSTREAM_URL":   h.upSrv.URL + "/upstream/mcp",
		"GATEWAY_PUBLIC_URL":     "http://" + h.srv.Listener.Addr().String(),
		"GATEWAY_SESSION_SECRET": "0123456789abcdef0123456789abcdef", // both gateways bind sessions alike
	}
	for k, v := range env {
		m[k] = v
	}
	p.gws = map[string]*Gateway{}
	for path, relay := range map[string]string{"relay": "on", "proxy": "off"} {
		m["GATEWAY_STREAM_RELAY"] = relay
		cfg, err := config.Load(m)
		if err != nil {
			t.Fatal(err)
		}
		h.resource = cfg.Resource
		log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		gw, err := New(cfg, Options{Reg: prometheus.NewRegistry(), Now: h.clock.Now, ASClient: h.is.Client(), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := gw.discover(context.Background()); err != nil {
			t.Fatal(err)
		}
		p.gws[path] = gw
	}
	if !p.gws["relay"].streamRelay || p.gws["proxy"].streamRelay {
		t.Fatal("GATEWAY_STREAM_RELAY did not choose the paths")
	}
	h.gw = p.gws["relay"]
	h.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gw := p.gws[r.Header.Get("X-Test-Path")]
		r.Header.Del("X-Test-Path")
		gw.Handler().ServeHTTP(w, r)
	})
	h.srv.Start()
	t.Cleanup(h.srv.Close)
	return p
}

// answer sets the upstream's answer; the upstream keeps the body of each request.
func (p *paths) answer(f http.HandlerFunc) {
	p.up.mu.Lock()
	defer p.up.mu.Unlock()
	p.up.handler = func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.body = string(b)
		p.mu.Unlock()
		f(w, r)
	}
}

// rawAnswer makes the upstream answer with raw bytes and close the connection.
func rawAnswer(s string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer c.Close()
		io.WriteString(c, s)
	}
}

// exchange is what the client and the upstream saw of one request, with what differs by nature between two gateways
// (dates, request ids, and the Connection header: the relay closes the connection with the stream) made alike.
type exchange struct {
	Informational []string
	Status        int
	Header        http.Header
	Body          string
	Trailer       http.Header
	Detached      bool // the answer said Connection: close

	UpstreamTarget string
	UpstreamHeader http.Header
	UpstreamBody   string
}

// send sends one request through path on a connection of its own, reads every answer to it (informational ones
// included) and the body to its end, and returns what both ends saw.
func (p *paths) send(t *testing.T, path, method, target string, hdr map[string]string, body string) exchange {
	t.Helper()
	c, err := net.Dial("tcp", p.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(method, p.srv.URL+target, strings.NewReader(body))
	if body == "" {
		req.Body, req.ContentLength = nil, 0
	}
	req.Header.Set("Authorization", "Bearer "+p.token(t, "user_1"))
	req.Header.Set("X-Test-Path", path)
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	before := p.up.count()
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var x exchange
	resp, err := http.ReadResponse(br, req)
	for err == nil && resp.StatusCode < 200 && resp.StatusCode != 101 {
		x.Informational = append(x.Informational, fmt.Sprint(resp.StatusCode, " ", alike(resp.Header)))
		resp, err = http.ReadResponse(br, req)
	}
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the body: %v", path, err)
	}
	x.Status, x.Body, x.Trailer, x.Detached = resp.StatusCode, string(b), resp.Trailer, resp.Close
	x.Header = alike(resp.Header)
	if p.up.count() > before {
		up := p.up.last(t)
		x.UpstreamTarget = up.RequestURI
		x.UpstreamHeader = alike(up.Header)
		p.mu.Lock()
		x.UpstreamBody = p.body
		p.mu.Unlock()
	}
	return x
}

// alike returns h without what differs by nature between the two gateways: Date and Connection; a request id is
// replaced by "set".
func alike(h http.Header) http.Header {
	h = h.Clone()
	delete(h, "Date")
	delete(h, "Connection")
	if _, ok := h["X-Request-Id"]; ok {
		h["X-Request-Id"] = []string{"set"}
	}
	return h
}

// TestStreamPaths runs one table of requests through the relay and through the reverse proxy and checks that the
// client and the upstream see the same of each: status, informational answers, headers, body and trailers at the
// client; target, headers and body at the upstream. Only how the connection ends may differ (the relay closes it
// with a stream it took over), and the relay is stricter about headers named by a Connection header that says close.
func TestStreamPaths(t *testing.T) {
	t.Parallel()
	p := newPaths(t, nil)
	stream := map[string]string{"Accept": "application/json, text/event-stream"}
	listen := map[string]string{"Accept": "application/json, text/event-stream", "Mcp-Method": "subscriptions/listen",
		"Content-Type": "application/json", "Mcp-Protocol-Version": "2026-07-28"}
	const listenBody = `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true}}}`
	events := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Mcp-Session-Id", "upstream-1")
		w.Header().Set("X-Upstream", "yes")
		io.WriteString(w, "event: message\ndata: {\"n\":1}\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "data: {\"n\":2}\n\n")
	}
	for _, tt := range []struct {
		name     string
		method   string
		target   string
		hdr      map[string]string
		body     string
		answer   http.HandlerFunc
		detached bool     // the relay takes the client's connection over
		differs  []string // headers the relay removes and the reverse proxy passes on
		check    func(t *testing.T, x exchange)
	}{
		{name: "GET stream, chunked, session id bound", method: "GET", target: "/mcp", hdr: stream, answer: events, detached: true,
			check: func(t *testing.T, x exchange) {
				if sid := x.Header.Get("Mcp-Session-Id"); !strings.HasPrefix(sid, "upstream-1.") {
					t.Errorf("Mcp-Session-Id: got %q, want the upstream's id bound to the caller", sid)
				}
				if x.Header.Get("X-Request-Id") != "set" {
					t.Error("no request id")
				}
			}},
		{name: "GET stream on another path (to the upstream's origin)", method: "GET", target: "/sse?x=1", hdr: stream, answer: events,
			detached: true,
			check: func(t *testing.T, x exchange) {
				if x.UpstreamTarget != "/sse?x=1" {
					t.Errorf("upstream target: got %q, want /sse?x=1", x.UpstreamTarget)
				}
			}},
		{name: "GET stream with a length", method: "GET", target: "/mcp", hdr: stream, detached: true,
			answer: rawAnswer("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\ndata: x\n\n")},
		{name: "GET stream with trailers", method: "GET", target: "/mcp", hdr: stream, detached: true,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Checksum")
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "data: x\n\n")
				w.Header().Set("X-Checksum", "abc")
			},
			check: func(t *testing.T, x exchange) {
				if x.Trailer.Get("X-Checksum") != "abc" {
					t.Errorf("trailers: got %v, want X-Checksum: abc", x.Trailer)
				}
			}},
		{name: "GET stream, hop-by-hop and Connection-named headers", method: "GET", target: "/mcp", hdr: stream, detached: true,
			answer: rawAnswer("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: X-Hop, keep-alive\r\nX-Hop: 1\r\n" +
				"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Kept: 1\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"9\r\ndata: x\n\n\r\n0\r\n\r\n"),
			check: func(t *testing.T, x exchange) {
				for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection"} {
					if _, ok := x.Header[k]; ok {
						t.Errorf("%s passed on", k)
					}
				}
				if x.Header.Get("X-Kept") != "1" {
					t.Error("an end-to-end header was dropped")
				}
			}},
		{name: "Connection: close naming a header", method: "GET", target: "/mcp", hdr: stream, differs: []string{"X-Hop"},
			answer: rawAnswer("HTTP/1.1 404 Not Found\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Type: application/json\r\n" +
				"Content-Length: 2\r\n\r\n{}")},
		{name: "404 with a length", method: "GET", target: "/mcp", hdr: stream,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Allow", "POST")
				w.WriteHeader(404)
				io.WriteString(w, `{"error":"no stream here"}`)
			}},
		{name: "500 chunked with trailers", method: "GET", target: "/mcp", hdr: stream,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Error")
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(500)
				io.WriteString(w, "part one, ")
				w.(http.Flusher).Flush()
				io.WriteString(w, "part two")
				w.Header().Set("X-Error", "late")
			},
			check: func(t *testing.T, x exchange) {
				if x.Trailer.Get("X-Error") != "late" || x.Body != "part one, part two" {
					t.Errorf("got %q, trailers %v", x.Body, x.Trailer)
				}
			}},
		{name: "103 Early Hints, then a stream", method: "GET", target: "/mcp", hdr: stream, detached: true,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", "</style.css>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Del("Link")
				events(w, r)
			},
			check: func(t *testing.T, x exchange) {
				if len(x.Informational) != 1 || !strings.HasPrefix(x.Informational[0], "103 ") {
					t.Errorf("informational answers: got %q, want one 103", x.Informational)
				}
			}},
		{name: "101 refused", method: "GET", target: "/mcp", hdr: stream,
			answer: rawAnswer("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: evil\r\n\r\nraw bytes"),
			check: func(t *testing.T, x exchange) {
				if x.Status != http.StatusBadGateway {
					t.Errorf("status: got %d, want 502", x.Status)
				}
			}},
		{name: "query with odd escapes, re-encoded", method: "GET", target: "/mcp?a=1;b=2&c=%zz&d=%41%2f&e=+&f=%2B&g", hdr: stream,
			answer: events, detached: true},
		{name: "query with odd escapes, kept", method: "GET", target: "/mcp?d=%41%2f&e=+&f=%2B&g&h=%E2%82%AC", hdr: stream,
			answer: events, detached: true,
			check: func(t *testing.T, x exchange) {
				if x.UpstreamTarget != "/upstream/mcp?d=%41%2f&e=+&f=%2B&g&h=%E2%82%AC" {
					t.Errorf("upstream target: got %q", x.UpstreamTarget)
				}
			}},
		{name: "identity set, inbound identity and hop-by-hop headers stripped", method: "GET", target: "/mcp", detached: true,
			hdr: map[string]string{"Accept": "text/event-stream", "Cookie": "session=1", "Forwarded": "for=6.6.6.6",
				"X-Forwarded-For": "6.6.6.6", "X_Forwarded_Host": "evil", "X-Auth-User-Id": "admin", "X_Auth_Email": "a@evil",
				"X-Request-Id": "client-chosen", "Connection": "X-Client-Hop", "X-Client-Hop": "1", "Te": "trailers",
				"Proxy-Authorization": "Basic eA==", "Last-Event-Id": "ev-1", "Mcp-Protocol-Version": "2025-06-18"},
			answer: events,
			check: func(t *testing.T, x exchange) {
				for _, k := range []string{"Cookie", "Forwarded", "X_forwarded_host", "X_auth_email", "X-Client-Hop", "Proxy-Authorization", "Authorization"} {
					if v, ok := x.UpstreamHeader[k]; ok {
						t.Errorf("upstream got %s: %q", k, v)
					}
				}
				for k, want := range map[string]string{"X-Auth-User-Id": "user_1", "X-Forwarded-For": "127.0.0.1", "Te": "trailers",
					"X-Request-Id": "set", "Last-Event-Id": "ev-1"} {
					if got := x.UpstreamHeader.Values(k); len(got) != 1 || got[0] != want {
						t.Errorf("upstream %s: got %q, want [%q]", k, got, want)
					}
				}
			}},
		{name: "POST subscriptions/listen", method: "POST", target: "/mcp", hdr: listen, body: listenBody, answer: events, detached: true,
			check: func(t *testing.T, x exchange) {
				if x.UpstreamBody != listenBody {
					t.Errorf("upstream body: got %q", x.UpstreamBody)
				}
			}},
		{name: "POST subscriptions/listen refused with JSON", method: "POST", target: "/mcp", hdr: listen, body: listenBody,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(400)
				io.WriteString(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"Header mismatch"}}`)
			}},
		{name: "POST tools/call answered with a short stream", method: "POST", target: "/mcp", body: `{"jsonrpc":"2.0","id":2,"method":"tools/call"}`,
			hdr: map[string]string{"Accept": "application/json, text/event-stream", "Mcp-Method": "tools/call"}, answer: events},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p.answer(tt.answer)
			relayed := p.send(t, "relay", tt.method, tt.target, tt.hdr, tt.body)
			proxied := p.send(t, "proxy", tt.method, tt.target, tt.hdr, tt.body)
			if relayed.Detached != tt.detached || proxied.Detached {
				t.Errorf("Connection: close: relay %t, reverse proxy %t; want %t, false", relayed.Detached, proxied.Detached, tt.detached)
			}
			relayed.Detached, proxied.Detached = false, false
			for _, k := range tt.differs {
				if _, ok := relayed.Header[k]; ok {
					t.Errorf("the relay passed on %s", k)
				}
				delete(proxied.Header, k)
			}
			if !reflect.DeepEqual(relayed, proxied) {
				t.Errorf("the paths differ:\nrelay %+v\nproxy %+v", relayed, proxied)
			}
			if tt.check != nil {
				tt.check(t, relayed)
			}
		})
	}
	waitFor(t, "the relayed streams to close", func() bool { return p.gws["relay"].relayedStreams() == 0 })
}

// TestShutdownEndsStreamsOnBothPaths checks that a shutdown ends at once the GET streams and the POST
// subscriptions/listen streams open through the relay and through the reverse proxy, and that each is recorded.
func TestShutdownEndsStreamsOnBothPaths(t *testing.T) {
	t.Parallel()
	p := newPaths(t, nil)
	p.answer(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": open\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	type open struct {
		path string
		resp *http.Response
	}
	var streams []open
	for _, path := range []string{"relay", "proxy"} {
		for _, method := range []string{"GET", "POST"} {
			body := ""
			hdr := map[string]string{"Accept": "text/event-stream", "X-Test-Path": path}
			if method == "POST" {
				body = `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{}}`
				hdr["Mcp-Method"] = "subscriptions/listen"
			}
			resp := p.do(t, method, "/mcp", p.token(t, "user_1"), hdr, body)
			if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != ": open\n" {
				t.Fatalf("%s %s: stream did not open: %q %v", path, method, line, err)
			}
			streams = append(streams, open{path + " " + method, resp})
		}
	}
	if got := p.gws["relay"].relayedStreams(); got != 2 {
		t.Fatalf("relayed streams: got %d, want 2", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for path, gw := range p.gws {
		if err := gw.Shutdown(ctx); err != nil {
			t.Fatalf("%s gateway's Shutdown: %v", path, err)
		}
	}
	for _, s := range streams {
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, s.resp.Body); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the %s stream stayed open after the shutdown", s.path)
		}
		waitFor(t, s.path+" access line", func() bool {
			return len(p.logs.linesOf(t, s.resp.Header.Get("X-Request-Id"))) == 1
		})
	}
}

// TestStreamPathSwitch checks each value of GATEWAY_STREAM_RELAY with an http:// and an https:// upstream, with and
// without an injected transport, and that the choice is logged once at start.
func TestStreamPathSwitch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		value, upstream string
		injected        bool
		want            bool // the relay is on
		wantErr         bool
	}{
		{"auto", "http://127.0.0.1:3001/mcp", false, true, false},
		{"auto", "http://127.0.0.1:3001/mcp", true, false, false},
		{"auto", "https://tools.example.com/mcp", false, false, false},
		{"on", "http://127.0.0.1:3001/mcp", false, true, false},
		{"on", "http://127.0.0.1:3001/mcp", true, true, false},
		{"on", "https://tools.example.com/mcp", false, false, true},
		{"off", "http://127.0.0.1:3001/mcp", false, false, false},
		{"off", "http://127.0.0.1:3001/mcp", true, false, false},
		{"sometimes", "http://127.0.0.1:3001/mcp", false, false, true},
	} {
		name := fmt.Sprintf("%s %s injected=%t", tt.value, tt.upstream, tt.injected)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://issuer.example.com",
				"GATEWAY_UPSTREAM_URL": tt.upstream, "GATEWAY_STREAM_RELAY": tt.value})
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "GATEWAY_STREAM_RELAY") {
					t.Fatalf("got %v, want an error naming GATEWAY_STREAM_RELAY", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			o := Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
			if tt.injected {
				o.UpstreamTransport = http.DefaultTransport
			}
			g, err := New(cfg, o)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.streamRelay; got != tt.want {
				t.Errorf("relay on: got %t, want %t", got, tt.want)
			}
			var said []string
			for _, l := range logs.lines(t) {
				if m, _ := l["msg"].(string); strings.HasPrefix(m, "long-lived event streams take") {
					said = append(said, m)
				}
			}
			want := "long-lived event streams take the reverse proxy"
			if tt.want {
				want = "long-lived event streams take the relay"
			}
			if !slices.Equal(said, []string{want}) {
				t.Errorf("logged %q, want once %q", said, want)
			}
		})
	}
}
