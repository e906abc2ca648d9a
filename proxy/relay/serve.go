package relay

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"time"
)

// errBuilt is how outbound's transport hands the built request back instead of sending it.
var errBuilt = errors.New("relay: request built")

// ErrUnaskedUpgrade is the error OnError gets when the upstream answers 101 Switching Protocols: the relay offers no
// upgrade (a request that does is not Relayable).
var ErrUnaskedUpgrade = errors.New("upstream switched protocols on a request that offered no upgrade")

// handBack is a transport that sends nothing: it returns errBuilt, and the reverse proxy passes the request it built
// to its ErrorHandler.
type handBack struct{}

func (handBack) RoundTrip(*http.Request) (*http.Response, error) { return nil, errBuilt }

// outbound builds the upstream request for r with httputil.ReverseProxy itself, so that it is byte for byte the
// request the reverse proxy would send (its hop-by-hop removal, Te: trailers, forwarding-header removal, query
// cleaning, Rewrite, empty User-Agent), whatever the Go version: its transport hands the request back instead of
// sending it. The request asks the upstream to close the connection after the answer, which ends a stream. An error is
// the reverse proxy's own refusal of r (an invalid upgrade offer).
func (rl *Relay) outbound(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	var out *http.Request
	var failed error
	rp := &httputil.ReverseProxy{
		Rewrite:   rl.o.Rewrite,
		Transport: handBack{},
		ErrorHandler: func(_ http.ResponseWriter, o *http.Request, err error) {
			if errors.Is(err, errBuilt) {
				out = o
				return
			}
			failed = err
		},
	}
	rp.ServeHTTP(w, r)
	if out == nil {
		if failed == nil {
			failed = errors.New("relay: the reverse proxy built no request")
		}
		return nil, failed
	}
	out = out.WithContext(r.Context()) // without the reverse proxy's trace of informational answers
	out.Close = true
	if out.Body != nil {
		out.Body = io.NopCloser(r.Body) // the reverse proxy's wrapper refuses reads once it returned; the server closes r.Body
	}
	return out, nil
}

// ServeHTTP relays r, which must be Relayable, on its own upstream connection. A 200 event stream is relayed on the
// client's connection, taken over; any other answer is passed back through w as the reverse proxy would.
func (rl *Relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rl.streams.begin() // Wait also waits for requests on their way to a stream
	defer rl.streams.end()
	out, err := rl.outbound(w, r)
	if err != nil {
		rl.o.OnError(w, r, err)
		return
	}
	up, err := rl.dial(r.Context(), "tcp", rl.o.UpstreamAddr)
	if err != nil {
		rl.o.OnError(w, r, err)
		return
	}
	x := &exchange{rl: rl, w: w, r: r, up: up}
	// Until a tunnel owns it, the connection is closed if the client goes away or EndStreams is called, which ends a
	// wait for the head.
	x.stopOnLeave = context.AfterFunc(r.Context(), func() { up.Close() })
	stopOnEnd := context.AfterFunc(rl.closing, func() { up.Close() })
	defer stopOnEnd()
	defer func() {
		if !x.owned {
			x.stopOnLeave()
			up.Close()
		}
	}()
	if err := x.roundTrip(out); err != nil {
		rl.o.OnError(w, r, err)
		return
	}
	if x.resp.StatusCode != http.StatusOK || !isEventStream(x.resp.Header) {
		rl.writeResponse(w, r, x.resp)
		return
	}
	x.detach()
}

// exchange is one request on its own upstream connection, until its answer is passed back or a tunnel owns the
// connection.
type exchange struct {
	rl          *Relay
	w           http.ResponseWriter
	r           *http.Request
	up          net.Conn
	stopOnLeave func() bool // stops closing up when the client leaves
	owned       bool        // a tunnel owns up
	br          *bufio.Reader
	resp        *http.Response
}

// roundTrip writes out (the body is the client's, read as it is written) and reads the final answer's head, passing
// informational answers on as the reverse proxy does. The answer's hop-by-hop headers are removed, and
// OnResponseHead has seen the rest.
func (x *exchange) roundTrip(out *http.Request) error {
	if err := out.Write(writeBound{x.up, x.rl.o.HeadTimeout}); err != nil {
		return err
	}
	x.up.SetWriteDeadline(time.Time{})
	hr := &headReader{r: x.up, left: MaxHeadBytes}
	x.br = bufio.NewReaderSize(hr, 4<<10)
	x.up.SetReadDeadline(time.Now().Add(x.rl.o.HeadTimeout)) // the head in time, like the transport's
	resp, head, err := readHead(hr, x.br, out, x.informational)
	x.up.SetReadDeadline(time.Time{})
	if err != nil {
		return err
	}
	removeHopByHop(resp.Header, head)
	if x.rl.o.OnResponseHead != nil {
		x.rl.o.OnResponseHead(resp.Header, x.r)
	}
	x.resp = resp
	return nil
}

// writeBound gives each write to c timeout to complete, as the reverse proxy's upstream connections do: the upstream
// must take each part of the request in time, while a client may send a body slowly but steadily (its reads are
// bounded by the caller).
type writeBound struct {
	c       net.Conn
	timeout time.Duration
}

func (w writeBound) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Write(p)
}

// informational passes a 1xx answer on as reverseproxy.go's Got1xxResponse hook does (Go 1.26): its headers as
// received, over those already set, which are then cleared.
func (x *exchange) informational(resp *http.Response) {
	h := x.w.Header()
	copyHeader(h, resp.Header)
	x.w.WriteHeader(resp.StatusCode)
	clear(h)
}

// detach takes over the client's connection for a 200 event stream and hands both connections to a tunnel. Where
// the connection cannot be taken over (a writer that does not allow it), the stream is passed through w instead,
// until either side ends it.
func (x *exchange) detach() {
	rl, w, r := x.rl, x.w, x.r
	if !x.stopOnLeave() {
		rl.o.OnError(w, r, context.Cause(r.Context())) // the client left while the head was read
		return
	}
	client, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		x.stopOnLeave = context.AfterFunc(r.Context(), func() { x.up.Close() })
		rl.writeResponse(w, r, x.resp)
		return
	}
	x.owned = true
	client.SetDeadline(time.Time{}) // a stream may stay idle for as long as both ends hold it
	head, body, left := streamHead(w.Header(), x.resp, x.br, rl.now())
	t := &tunnel{rl: rl, client: client, upstream: x.up, left: left, ended: func(int64) {}}
	if rl.o.OnStream != nil {
		t.ended = rl.o.OnStream(r, true)
	}
	if !rl.streams.add(t) {
		t.close() // EndStreams has already closed the streams
		return
	}
	client.SetWriteDeadline(time.Now().Add(rl.o.WriteTimeout))
	if _, err := client.Write(head); err != nil || cbuf.Reader.Buffered() > 0 {
		// A client that sent more on this connection gets no stream: it is closed, as announced.
		t.close()
		return
	}
	t.sent.Add(int64(body))
	go t.pump()
	go t.watch()
}
