package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// An event stream opened with GET (MCP's standalone stream, or the stream of the older HTTP+SSE transport) stays open,
// mostly idle, for as long as its client is connected. Through httputil.ReverseProxy each one holds, in the gateway,
// four goroutines (the handler, the server's background reader, the transport's read and write loops), five bufio
// buffers and a copy buffer: about 67 KiB per idle stream. The relay here holds the same stream with two small
// goroutines and no buffer while it waits: it sends the request itself, reads the response head, and, when that is a
// 200 event stream, takes over the client's connection and copies the upstream's bytes, framing included, as they come.
// Everything else about the request is the reverse proxy's: the same rewrite (credentials and inbound identity
// headers removed, the verified identity set), session binding and error answers.

// maxUpstreamHeadBytes bounds the response head the relay reads from the upstream.
const maxUpstreamHeadBytes = 1 << 20

// hopHeaders are the hop-by-hop headers (RFC 9110, section 7.6.1), which are not forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers from h, and those named by its Connection header.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// containsToken reports whether the comma-separated header values vv list token, in any letter case.
func containsToken(vv []string, token string) bool {
	for _, v := range vv {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// cleanQuery re-encodes a query the way httputil.ReverseProxy does before its Rewrite: one with a ';', a malformed
// escape or more than 10,000 parameters is parsed and encoded again, so that the upstream cannot read it differently
// from the gateway; any other is kept as sent.
func cleanQuery(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	if strings.Count(s, "&")+1 > 10000 {
		return reencode(s)
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// headReader reads the upstream's response head: until done is set it refuses to read more than left bytes and keeps
// a copy of what it read (raw), and after that it passes the body through untouched.
type headReader struct {
	r    io.Reader
	left int
	raw  []byte
	done bool
}

var errHeadTooLarge = errors.New("upstream response head too large")

func (h *headReader) Read(p []byte) (int, error) {
	if h.done {
		return h.r.Read(p)
	}
	if h.left <= 0 {
		return 0, errHeadTooLarge
	}
	if len(p) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= n
	h.raw = append(h.raw, p[:n]...)
	return n, err
}

// connectionTokens returns the header names listed by the Connection header lines of a raw response head.
func connectionTokens(head []byte) []string {
	var names []string
	for line := range bytes.SplitSeq(head, []byte("\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !strings.EqualFold(string(name), "Connection") {
			continue
		}
		for tok := range strings.SplitSeq(string(value), ",") {
			if tok = textproto.TrimString(tok); tok != "" && !strings.EqualFold(tok, "close") {
				names = append(names, tok)
			}
		}
	}
	return names
}

// addResponseHeaders adds the upstream's response headers src, without the hop-by-hop ones, to dst.
func addResponseHeaders(dst, src http.Header) {
	removeHopByHop(src)
	for k, vv := range src {
		dst[k] = append(dst[k], vv...)
	}
}

// relayable reports whether r opens an event stream the relay can carry: a GET over HTTP/1.1, without a body or an
// upgrade, that accepts text/event-stream.
func relayable(r *http.Request) bool {
	if r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.ContentLength != 0 || len(r.TransferEncoding) > 0 ||
		r.Header.Get("Upgrade") != "" {
		return false
	}
	for _, v := range r.Header["Accept"] {
		if strings.Contains(v, "text/event-stream") {
			return true
		}
	}
	return false
}

// ServeHTTP sends an authenticated request upstream: event streams opened with GET through the relay when it is on,
// everything else through the reverse proxy. A GET (an event stream, in MCP) ends when a shutdown starts; other
// requests may finish.
func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := u.g
	if r.Method != http.MethodGet {
		u.proxy.ServeHTTP(w, r)
		return
	}
	if g.relay && relayable(r) {
		g.relayStream(w, r, u.rewrite)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(g.closing, cancel)
	defer stop()
	u.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// outbound builds the upstream request for r as httputil.ReverseProxy does before and after its Rewrite: a clone
// without hop-by-hop headers or the X-Forwarded-* and Forwarded headers the client sent, rewritten by g.rewrite, with
// no default User-Agent. It asks the upstream to close the connection after the response, which ends the stream.
func (g *Gateway) outbound(r *http.Request, rewrite func(*httputil.ProxyRequest)) *http.Request {
	out := r.Clone(r.Context())
	out.Body, out.ContentLength, out.Close = nil, 0, true
	removeHopByHop(out.Header)
	if containsToken(r.Header["Te"], "trailers") {
		out.Header["Te"] = []string{"trailers"}
	}
	for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		delete(out.Header, k)
	}
	out.URL.RawQuery = cleanQuery(out.URL.RawQuery)
	rewrite(&httputil.ProxyRequest{In: r, Out: out})
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""}
	}
	return out
}

// relayStream forwards r, a relayable GET, on its own upstream connection. A 200 event stream is relayed on the
// client's hijacked connection by a tunnel; any other answer is passed back through w, like the reverse proxy would.
func (g *Gateway) relayStream(w http.ResponseWriter, r *http.Request, rewrite func(*httputil.ProxyRequest)) {
	g.streams.begin() // Shutdown also waits for relays on their way to a tunnel
	defer g.streams.end()
	st := stateOf(r.Context())
	out := g.outbound(r, rewrite)
	up, err := g.dialer.DialContext(r.Context(), "tcp", g.upstreamAddr) // its one write, the request head, fits the socket buffer
	if err != nil {
		g.upstreamError(w, r, err)
		return
	}
	// Until the tunnel owns it, the connection is closed if the client goes away or a shutdown starts, which ends a
	// wait for the head.
	stop := context.AfterFunc(r.Context(), func() { up.Close() })
	stopAtShutdown := context.AfterFunc(g.closing, func() { up.Close() })
	defer stopAtShutdown()
	owned := false
	defer func() {
		if !owned {
			stop()
			up.Close()
		}
	}()
	if err := out.Write(up); err != nil {
		g.upstreamError(w, r, err)
		return
	}
	// The raw head is kept to read its Connection header: ReadResponse drops that header when it says close, as it
	// will here, with any other hop-by-hop header it names.
	hr := &headReader{r: up, left: maxUpstreamHeadBytes}
	br := bufio.NewReaderSize(hr, 4<<10)
	up.SetReadDeadline(time.Now().Add(g.cfg.UpstreamTimeout)) // the head in time, like the transport's
	resp, err := http.ReadResponse(br, out)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(br, out) // informational answers are not passed on
	}
	up.SetReadDeadline(time.Time{})
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		err = errors.New("upstream switched protocols on a request that asked for no upgrade")
	}
	if err != nil {
		g.upstreamError(w, r, err)
		return
	}
	for _, name := range connectionTokens(hr.raw[:len(hr.raw)-br.Buffered()]) {
		resp.Header.Del(name)
	}
	hr.done, hr.raw = true, nil
	g.bindResponseSession(resp.Header, st)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		g.writeResponse(w, resp)
		return
	}
	if !stop() {
		g.upstreamError(w, r, context.Cause(r.Context())) // the client left while the head was read
		return
	}
	client, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// No connection to take over (a wrapped writer that cannot): stream through w instead, until either side ends.
		stop = context.AfterFunc(r.Context(), func() { up.Close() })
		g.metrics.OpenStreams.Inc()
		defer g.metrics.OpenStreams.Dec()
		g.writeResponse(w, resp)
		return
	}
	owned = true
	client.SetDeadline(time.Time{}) // a stream may stay idle for as long as both ends hold it

	h := w.Header() // what the middleware set: request id, CORS
	addResponseHeaders(h, resp.Header)
	delete(h, "Content-Length")
	switch {
	case len(resp.TransferEncoding) > 0 && resp.TransferEncoding[len(resp.TransferEncoding)-1] == "chunked":
		h["Transfer-Encoding"] = []string{"chunked"}
	case resp.ContentLength >= 0:
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	h["Connection"] = []string{"close"}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{g.now().UTC().Format(http.TimeFormat)}
	}
	var head bytes.Buffer
	head.Grow(1024)
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h.Write(&head)
	head.WriteString("\r\n")
	// Body bytes read with the head are sent with it, as received: the framing is the upstream's. With a known length,
	// no more than the body is sent: bytes after it are not the client's. (After a chunked body's last chunk the
	// upstream closes the connection, as asked; anything it sends before that reaches a client that was told the
	// connection closes, and that has sent nothing more on it.)
	rest, _ := br.Peek(br.Buffered())
	left := int64(-1)
	if resp.ContentLength >= 0 {
		if int64(len(rest)) > resp.ContentLength {
			rest = rest[:resp.ContentLength]
		}
		left = resp.ContentLength - int64(len(rest))
	}
	head.Write(rest)

	t := &tunnel{g: g, client: client, upstream: up, st: st, method: r.Method, path: r.URL.Path, start: st.start, left: left}
	g.obs.label(st) // now: routing's record of the route does not outlive the handler
	st.relayed = true
	g.metrics.OpenStreams.Inc()
	if !g.streams.add(t) {
		t.close() // Shutdown has already closed the streams
		return
	}
	client.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
	if _, err := client.Write(head.Bytes()); err != nil || cbuf.Reader.Buffered() > 0 {
		// A client that sent more on this connection gets no stream: it is closed, as announced.
		t.close()
		return
	}
	t.bytes.Add(int64(len(rest)))
	go t.pump()
	go t.watch()
}

// writeResponse passes resp back through w as the reverse proxy would: hop-by-hop headers removed, the body flushed
// as it comes if it is an event stream, and the response aborted if the upstream's body fails halfway.
func (g *Gateway) writeResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	addResponseHeaders(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	buf := g.buffers.Get()
	defer g.buffers.Put(buf)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if stream {
				rc.Flush()
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			panic(http.ErrAbortHandler) // the client must not take a cut body for a whole one
		}
	}
}

// tunnel is one relayed event stream: the client's hijacked connection and the upstream connection it came from.
type tunnel struct {
	g        *Gateway
	client   net.Conn
	upstream net.Conn
	st       *reqState
	method   string
	path     string
	start    time.Time
	bytes    atomic.Int64 // bytes sent to the client after the head, framing included
	left     int64        // body bytes still to send when the upstream gave a length; -1: until it closes
	once     sync.Once
}

// pump copies the upstream's bytes to the client as they arrive, holding a buffer only while there is data to copy,
// until either side ends.
func (t *tunnel) pump() {
	defer t.close()
	for t.left != 0 {
		if err := awaitReadable(t.upstream); err != nil {
			return
		}
		buf := t.g.buffers.Get()
		p := buf
		if t.left > 0 && int64(len(p)) > t.left {
			p = p[:t.left]
		}
		n, err := t.upstream.Read(p)
		if n > 0 {
			if t.left > 0 {
				t.left -= int64(n)
			}
			t.client.SetWriteDeadline(time.Now().Add(t.g.cfg.WriteTimeout)) // a client that stops reading ends its stream
			if _, werr := t.client.Write(p[:n]); werr != nil {
				t.g.buffers.Put(buf)
				return
			}
			t.bytes.Add(int64(n))
		}
		t.g.buffers.Put(buf)
		if err != nil {
			return
		}
	}
}

// watch ends the tunnel when the client closes its connection, or sends anything: the response said the
// connection closes after it.
func (t *tunnel) watch() {
	var b [1]byte
	t.client.Read(b[:])
	t.close()
}

// close ends the stream once: both connections are closed and the request is recorded as the access log and
// metrics would have recorded it through the reverse proxy.
func (t *tunnel) close() {
	t.once.Do(func() {
		t.client.Close()
		t.upstream.Close()
		t.g.streams.remove(t)
		t.g.metrics.OpenStreams.Dec()
		t.g.obs.record(context.Background(), t.st, t.method, t.path, http.StatusOK, t.bytes.Load(), t.g.now().Sub(t.start))
	})
}

// streamSet is the open tunnels, which Shutdown waits for and then closes, and the relays that may still open one.
type streamSet struct {
	mu      sync.Mutex
	m       map[*tunnel]struct{}
	pending int  // relays between their start and their tunnel
	closed  bool // Shutdown closed the tunnels: any later one is refused
}

func (s *streamSet) begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending++
}

func (s *streamSet) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending--
}

// add records t, unless the set is closed.
func (s *streamSet) add(t *tunnel) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = make(map[*tunnel]struct{})
	}
	s.m[t] = struct{}{}
	return true
}

func (s *streamSet) remove(t *tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, t)
}

// busy reports whether a tunnel is open or a relay may still open one.
func (s *streamSet) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m) > 0 || s.pending > 0
}

func (s *streamSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// closeAll refuses new tunnels and returns the open ones.
func (s *streamSet) closeAll() []*tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	out := make([]*tunnel, 0, len(s.m))
	for t := range s.m {
		out = append(out, t)
	}
	return out
}

// EndStreams ends every open event stream opened with GET, relayed or proxied, and refuses new relayed ones: the
// start of a shutdown. Each stream's request is recorded as it ends. Register it with http.Server.RegisterOnShutdown,
// so that open streams do not hold the server's Shutdown for its whole timeout; clients reconnect (to another
// replica).
func (g *Gateway) EndStreams() {
	g.endStreams()
	for _, t := range g.streams.closeAll() {
		t.close()
	}
}

// Shutdown ends the event streams (EndStreams) and waits until every request the gateway is answering has ended and
// been recorded, or ctx ends. Call it after the server's Shutdown, or its Close once that timed out: the handlers of
// the connections Close cut still write their access lines, which Shutdown waits for.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.EndStreams()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for g.obs.inflight.Load() > 0 || g.streams.busy() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
