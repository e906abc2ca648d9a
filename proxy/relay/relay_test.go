package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var discardLog = log.New(io.Discard, "", 0)

// pipeUpstream is an upstream reached through net.Pipe: it reads each request whole and answers it with raw bytes,
// then closes the connection.
type pipeUpstream struct {
	mu     sync.Mutex
	answer []byte
}

func (u *pipeUpstream) set(b []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.answer = b
}

func (u *pipeUpstream) dial(context.Context, string, string) (net.Conn, error) {
	u.mu.Lock()
	answer := u.answer
	u.mu.Unlock()
	c, s := net.Pipe()
	go func() {
		defer s.Close()
		req, err := http.ReadRequest(bufio.NewReader(s))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		s.Write(answer)
	}()
	return c, nil
}

// sides is a server that hands each request to the relay or, with the header X-Path: proxy, to an
// httputil.ReverseProxy set up alike (the same rewrite and error answer, upgrades refused), both in front of one
// pipeUpstream.
type sides struct {
	up  *pipeUpstream
	rl  *Relay
	srv *httptest.Server
}

func newSides(t testing.TB) *sides {
	t.Helper()
	s := &sides{up: &pipeUpstream{}}
	target := &url.URL{Scheme: "http", Host: "upstream.test"}
	rewrite := func(pr *httputil.ProxyRequest) { pr.SetURL(target) }
	fail := func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
	rl, err := New(Options{UpstreamAddr: "upstream.test:80", Dial: s.up.dial, HeadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, Rewrite: rewrite, OnError: fail})
	if err != nil {
		t.Fatal(err)
	}
	s.rl = rl
	rp := &httputil.ReverseProxy{
		Rewrite:   rewrite,
		Transport: &http.Transport{DialContext: s.up.dial, DisableKeepAlives: true, DisableCompression: true},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				return ErrUnaskedUpgrade
			}
			return nil
		},
		ErrorHandler: fail,
		ErrorLog:     discardLog,
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Path") == "proxy" {
			rp.ServeHTTP(w, r)
			return
		}
		rl.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// seen is what a client saw of one answer; body and trailers only when the body was read to its end.
type seen struct {
	Informational []int
	Status        int
	Header        http.Header
	Body          string
	Trailer       http.Header
	BodyErr       bool
}

// get sends one relayable GET through path on a connection of its own and returns what came back, or an error when
// no answer came.
func (s *sides) get(path string) (seen, error) {
	var x seen
	c, err := net.Dial("tcp", s.srv.Listener.Addr().String())
	if err != nil {
		return x, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /mcp HTTP/1.1\r\nHost: gateway.test\r\nAccept: text/event-stream\r\nX-Path: "+path+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	for err == nil && resp.StatusCode < 200 {
		x.Informational = append(x.Informational, resp.StatusCode)
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		return x, err
	}
	x.Status, x.Header = resp.StatusCode, resp.Header
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		x.BodyErr = true
		return x, nil
	}
	x.Body, x.Trailer = string(b), resp.Trailer
	return x, nil
}

// headSeeds are answers of every kind the relay handles differently.
var headSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n",
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\ndata: x\n\nextra",
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nTrailer: X-A\r\n\r\n9\r\ndata: x\n\n\r\n0\r\nX-A: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 1\r\n\r\n",
	"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
	"HTTP/1.1 404 Not Found\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\n{}",
	"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nTrailer: X-B, X-C\r\n\r\n3\r\nabc\r\n0\r\nX-B: 2\r\nX-C: 3\r\n\r\n",
	"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: until close\n\n",
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
	"HTTP/1.1 204 No Content\r\nContent-Type: text/event-stream\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	"garbage",
}

// alikeHeader returns h without what differs by nature (Date, Connection; and Content-Length or Content-Type when raw
// gives none, which the server behind the reverse proxy adds or not, depending on when its flush timer fires), with the names of announced trailers in one order, and without the headers named by any Connection line of raw: the relay removes even those named beside
// close, which http.ReadResponse hides from the reverse proxy.
func alikeHeader(h http.Header, raw []byte) http.Header {
	h = h.Clone()
	delete(h, "Date")
	delete(h, "Connection")
	br := bufio.NewReader(bytes.NewReader(raw))
	up, err := http.ReadResponse(br, nil)
	for err == nil && up.StatusCode < 200 {
		up, err = http.ReadResponse(br, nil)
	}
	for _, k := range []string{"Content-Length", "Content-Type"} {
		if err != nil || up.Header[k] == nil {
			delete(h, k)
		}
	}
	removeHopByHop(h, raw)
	if tr := h.Values("Trailer"); len(tr) > 0 {
		var names []string
		for _, v := range tr {
			for n := range strings.SplitSeq(v, ",") {
				names = append(names, strings.TrimSpace(n))
			}
		}
		slices.Sort(names)
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	return h
}

// FuzzResponseHead feeds arbitrary upstream answers to the relay and to httputil.ReverseProxy and checks that the
// client sees the same from both: whether an answer came (or was cut), the informational answers, the status and headers, and the
// body and trailers whenever both bodies end cleanly. Run it with go test -fuzz FuzzResponseHead ./proxy/relay.
func FuzzResponseHead(f *testing.F) {
	for _, s := range headSeeds {
		f.Add([]byte(s))
	}
	s := newSides(f)
	f.Fuzz(func(t *testing.T, answer []byte) {
		s.up.set(answer)
		relayed, rerr := s.get("relay")
		proxied, perr := s.get("proxy")
		// A body cut halfway is an answer aborted: the reverse proxy's server may or may not have sent its head by
		// then (it flushes it from a timer), the relay has.
		switch {
		case rerr != nil && perr != nil:
			return
		case rerr != nil && !proxied.BodyErr, perr != nil && !relayed.BodyErr:
			t.Fatalf("an answer from one side only: relay %v, reverse proxy %v", rerr, perr)
		case rerr != nil || perr != nil:
			return
		}
		relayed.Header, proxied.Header = alikeHeader(relayed.Header, answer), alikeHeader(proxied.Header, answer)
		if relayed.BodyErr || proxied.BodyErr {
			relayed.Body, proxied.Body, relayed.Trailer, proxied.Trailer = "", "", nil, nil
			relayed.BodyErr, proxied.BodyErr = false, false
		}
		if !reflect.DeepEqual(relayed, proxied) {
			t.Errorf("the sides differ for %q:\nrelay %+v\nproxy %+v", answer, relayed, proxied)
		}
	})
	if n := s.rl.Streams(); n != 0 {
		waitStreams(f, s.rl)
	}
}

// waitStreams waits until rl has no open stream.
func waitStreams(t testing.TB, rl *Relay) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rl.EndStreams()
	if err := rl.Wait(ctx); err != nil {
		t.Fatalf("streams still open: %v", err)
	}
}

func TestNewRefusesMissingOptions(t *testing.T) {
	t.Parallel()
	full := Options{UpstreamAddr: "u:80", HeadTimeout: time.Second, WriteTimeout: time.Second,
		Rewrite: func(*httputil.ProxyRequest) {}, OnError: func(http.ResponseWriter, *http.Request, error) {}}
	if _, err := New(full); err != nil {
		t.Fatalf("complete options: %v", err)
	}
	for name, mod := range map[string]func(*Options){
		"no address":       func(o *Options) { o.UpstreamAddr = "" },
		"no head timeout":  func(o *Options) { o.HeadTimeout = 0 },
		"no write timeout": func(o *Options) { o.WriteTimeout = -1 },
		"no rewrite":       func(o *Options) { o.Rewrite = nil },
		"no error writer":  func(o *Options) { o.OnError = nil },
	} {
		o := full
		mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}

func TestRelayable(t *testing.T) {
	t.Parallel()
	rl, err := New(Options{UpstreamAddr: "u:80", HeadTimeout: time.Second, WriteTimeout: time.Second, MaxBodyBytes: 100,
		Rewrite: func(*httputil.ProxyRequest) {}, OnError: func(http.ResponseWriter, *http.Request, error) {}})
	if err != nil {
		t.Fatal(err)
	}
	req := func(method string, length int64, hdr ...string) *http.Request {
		r := httptest.NewRequest(method, "/mcp", nil)
		r.ContentLength = length
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		return r
	}
	sse := "text/event-stream"
	for _, tt := range []struct {
		name     string
		r        *http.Request
		longLive bool
		want     bool
	}{
		{"GET stream", req("GET", 0, "Accept", sse), true, true},
		{"GET accepting both", req("GET", 0, "Accept", "application/json, "+sse), true, true},
		{"GET without Accept", req("GET", 0), true, false},
		{"GET with a body", req("GET", 5, "Accept", sse), true, false},
		{"GET with an upgrade offer", req("GET", 0, "Accept", sse, "Upgrade", "websocket"), true, false},
		{"POST listen", req("POST", 60, "Accept", sse, "Mcp-Method", ListenMethod), true, true},
		{"POST listen, body at the bound", req("POST", 100, "Accept", sse, "Mcp-Method", ListenMethod), true, true},
		{"POST listen, body over the bound", req("POST", 101, "Accept", sse, "Mcp-Method", ListenMethod), true, false},
		{"POST listen, body of unknown length", req("POST", -1, "Accept", sse, "Mcp-Method", ListenMethod), true, false},
		{"POST listen without Accept", req("POST", 60, "Mcp-Method", ListenMethod), true, false},
		{"POST listen named twice", req("POST", 60, "Accept", sse, "Mcp-Method", ListenMethod, "Mcp-Method", ListenMethod), false, false},
		{"POST tools/call", req("POST", 60, "Accept", sse, "Mcp-Method", "tools/call"), false, false},
		{"POST without Mcp-Method", req("POST", 60, "Accept", sse), false, false},
		{"POST listen in other letters", req("POST", 60, "Accept", sse, "Mcp-Method", "Subscriptions/Listen"), false, false},
		{"DELETE", req("DELETE", 0, "Accept", sse), false, false},
	} {
		if got := LongLived(tt.r); got != tt.longLive {
			t.Errorf("%s: LongLived got %t, want %t", tt.name, got, tt.longLive)
		}
		if got := rl.Relayable(tt.r); got != tt.want {
			t.Errorf("%s: Relayable got %t, want %t", tt.name, got, tt.want)
		}
	}
	h2 := req("GET", 0, "Accept", sse)
	h2.ProtoMajor, h2.ProtoMinor = 2, 0
	if rl.Relayable(h2) {
		t.Error("an HTTP/2 request is relayable")
	}
}

// TestEndStreams checks that EndStreams ends an open stream at once, calls its end function, and that the relay
// takes over no connection afterwards.
func TestEndStreams(t *testing.T) {
	t.Parallel()
	upSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": open\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer upSrv.Close()
	target, _ := url.Parse(upSrv.URL)
	ended := make(chan int64, 1)
	var errs []error
	var mu sync.Mutex
	rl, err := New(Options{UpstreamAddr: target.Host, HeadTimeout: time.Second, WriteTimeout: time.Second,
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		OnError: func(w http.ResponseWriter, r *http.Request, err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			w.WriteHeader(http.StatusBadGateway)
		},
		OnStream: func(r *http.Request, detached bool) func(int64) {
			return func(n int64) { ended <- n }
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rl)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != ": open\n" {
		t.Fatalf("first line: %q, %v", line, err)
	}
	if rl.Streams() != 1 {
		t.Fatalf("streams: got %d, want 1", rl.Streams())
	}
	rl.EndStreams()
	if _, err := io.ReadAll(br); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading to the end: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the end function was not called")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rl.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	// After EndStreams a stream request is ended as it starts: its connection is closed.
	if resp, err := srv.Client().Do(req.Clone(context.Background())); err == nil {
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if rl.Streams() != 0 {
		t.Errorf("streams after EndStreams: %d", rl.Streams())
	}
}

// TestOutboundQueryAsReverseProxy checks that the upstream request's query is cleaned by the standard library itself:
// a well-formed query is kept as sent, one with a ';' is encoded again, and with GODEBUG urlmaxqueryparams set every
// query is encoded again, as httputil.ReverseProxy does (a copy of its cleaning, which the relay had, missed that).
func TestOutboundQueryAsReverseProxy(t *testing.T) {
	rl, err := New(Options{UpstreamAddr: "u:80", HeadTimeout: time.Second, WriteTimeout: time.Second,
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "u"}) },
		OnError: func(http.ResponseWriter, *http.Request, error) {}})
	if err != nil {
		t.Fatal(err)
	}
	query := func(target string) string {
		t.Helper()
		out, err := rl.outbound(httptest.NewRecorder(), httptest.NewRequest("GET", target, nil))
		if err != nil {
			t.Fatal(err)
		}
		if !out.Close || out.Header.Get("User-Agent") != "" {
			t.Errorf("outbound request: Close %t, User-Agent %q; want true and empty", out.Close, out.Header.Get("User-Agent"))
		}
		return out.URL.RawQuery
	}
	for target, want := range map[string]string{"/mcp?b=2&a=%41": "b=2&a=%41", "/mcp?b=2;c=3&a=1": "a=1"} {
		if got := query(target); got != want {
			t.Errorf("%s: got query %q, want %q", target, got, want)
		}
	}
	t.Setenv("GODEBUG", "urlmaxqueryparams=20000")
	if got := query("/mcp?b=2&a=%41"); got != "a=A&b=2" {
		t.Errorf("with urlmaxqueryparams set: got query %q, want %q (encoded again)", got, "a=A&b=2")
	}
}

// TestSlowBodyIsNotTheUpstreamsFault checks that HeadTimeout bounds each write of a request body to the upstream, as
// the reverse proxy's upstream connections do, not the whole body: a client that sends its POST body steadily but
// slower, in all, than HeadTimeout is relayed, not answered 502.
func TestSlowBodyIsNotTheUpstreamsFault(t *testing.T) {
	t.Parallel()
	up := &pipeUpstream{}
	up.set([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"))
	target := &url.URL{Scheme: "http", Host: "upstream.test"}
	rl, err := New(Options{UpstreamAddr: "upstream.test:80", Dial: up.dial, HeadTimeout: 300 * time.Millisecond,
		WriteTimeout: 5 * time.Second, Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		OnError: func(w http.ResponseWriter, r *http.Request, err error) {
			t.Logf("relay error: %v", err)
			w.WriteHeader(http.StatusBadGateway)
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rl)
	defer srv.Close()
	const pieces, size = 5, 2000 // 10,000 bytes over 800ms, a piece every 200ms: more than one 4 KiB write upstream
	pr, pw := io.Pipe()
	go func() {
		for i := range pieces {
			if i > 0 {
				time.Sleep(200 * time.Millisecond) // a slow client, not synchronisation
			}
			pw.Write(bytes.Repeat([]byte("a"), size))
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/mcp", pr)
	req.ContentLength = pieces * size
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Method", ListenMethod)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "{}" {
		t.Errorf("got %d %q, want 200 {}", resp.StatusCode, b)
	}
	waitStreams(t, rl)
}
