// Package relay carries long-lived event streams from a plain HTTP/1.1 upstream to clients for a fraction of the memory
// httputil.ReverseProxy needs, and otherwise answers as the reverse proxy would.
//
// An event stream stays open, mostly idle, for as long as its client is connected: MCP's standalone GET stream
// (protocol versions up to 2025-11-25), the older HTTP+SSE transport's GET stream, and the POST of
// subscriptions/listen (2026-07-28). Through httputil.ReverseProxy each one holds, in the proxy, four goroutines (the
// handler, the server's background reader, the transport's read and write loops), five bufio buffers and a copy
// buffer: about 67 KiB per idle stream. The relay holds the same stream with two small goroutines and no buffer while
// it waits: it sends the request on a connection of its own, reads the response head, and, when that is a 200 event
// stream, takes over the client's connection and copies the upstream's bytes, framing included, as they come; the
// connection closes with the stream. Any other answer is passed back through the ResponseWriter as the reverse proxy
// would pass it.
//
// The upstream request is the reverse proxy's own: httputil.ReverseProxy builds it (hop-by-hop headers, query
// cleaning, forwarding headers, Rewrite) and hands it over instead of sending it. What the relay does with the answer
// follows Go 1.26's net/http/httputil/reverseproxy.go, as noted where it does.
//
// The relay imports nothing of the gateway: the rewrite, the error answers, session binding and metrics are injected
// (Options).
package relay

import (
	"context"
	"errors"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"
)

// MaxHeadBytes bounds the response head, informational answers included, that the relay reads from the upstream; a
// longer one is an error (502 through the gateway's error writer).
const MaxHeadBytes = 1 << 20

// DefaultMaxBodyBytes is the largest request body relayed when Options.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 64 << 10

// ListenMethod is the JSON-RPC method that opens a long-lived event stream with a POST in MCP 2026-07-28. Clients name
// it in the Mcp-Method request header, which servers must check against the body (SEP-2243).
const ListenMethod = "subscriptions/listen"

// Options are the relay's settings and the gateway's parts it calls.
type Options struct {
	// UpstreamAddr is the upstream's host:port, spoken to in plain HTTP/1.1. Required.
	UpstreamAddr string
	// Dial connects to the upstream. nil: a net.Dialer with a 5s timeout. An idle stream holds no buffer only on a
	// connection the relay can poll (one that implements syscall.Conn, as *net.TCPConn does, on Linux).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// HeadTimeout bounds each write of the request and the wait for the response head; past it OnError gets an
	// error. A response body, such as an event stream, is not bounded by it. Required.
	HeadTimeout time.Duration
	// WriteTimeout bounds each write to the client of a stream the relay took over: a client that stops reading ends
	// its stream. An idle stream is not cut. Required.
	WriteTimeout time.Duration
	// MaxBodyBytes is the largest request body the relay carries (Relayable); larger or unknown-length bodies are
	// left to the reverse proxy. The relay writes the body before it reads the answer, which is sound while the body
	// fits the sockets' buffers. 0: DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Now is the clock (the Date of a taken-over response). nil: time.Now.
	Now func() time.Time
	// Rewrite builds the upstream request, as httputil.ReverseProxy.Rewrite does: the gateway's own rewrite (upstream
	// URL, credentials and inbound identity headers removed, identity set). Required.
	Rewrite func(*httputil.ProxyRequest)
	// OnResponseHead sees the upstream's response headers, hop-by-hop headers removed, before they are passed on, as
	// httputil.ReverseProxy.ModifyResponse does (session binding). nil: nothing.
	OnResponseHead func(h http.Header, r *http.Request)
	// OnError answers a request that failed before any of the answer was passed on, as
	// httputil.ReverseProxy.ErrorHandler does. The error may be the request body's (an http.MaxBytesError, a timeout)
	// or the upstream's. Required.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// OnStream, if set, is called when an event-stream answer to r starts, and returns the function called once when
	// it ends, with the bytes sent to the client after the head. detached reports whether the relay took over the
	// client's connection: the handler then returns at once, the stream goes on without it, and ended is the only
	// sign of its end (the place to record the request). Otherwise the answer is passed through the ResponseWriter
	// and the handler returns when it ends.
	OnStream func(r *http.Request, detached bool) (ended func(sent int64))
	// BufferPool lends copy buffers. nil: 4 KiB buffers from a sync.Pool.
	BufferPool httputil.BufferPool
}

// Relay carries relayable requests (Relayable) to one upstream. Create it with New.
type Relay struct {
	o       Options
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	now     func() time.Time
	buffers httputil.BufferPool
	streams streamSet
	closing context.Context // ends with EndStreams
	end     context.CancelFunc
}

// New returns a relay for o, or an error naming the first required option that is missing.
func New(o Options) (*Relay, error) {
	switch {
	case o.UpstreamAddr == "":
		return nil, errors.New("relay: no upstream address")
	case o.HeadTimeout <= 0:
		return nil, errors.New("relay: head timeout must be positive")
	case o.WriteTimeout <= 0:
		return nil, errors.New("relay: write timeout must be positive")
	case o.Rewrite == nil:
		return nil, errors.New("relay: no rewrite")
	case o.OnError == nil:
		return nil, errors.New("relay: no error writer")
	}
	rl := &Relay{o: o, dial: o.Dial, now: o.Now, buffers: o.BufferPool}
	if rl.dial == nil {
		rl.dial = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	if rl.now == nil {
		rl.now = time.Now
	}
	if rl.buffers == nil {
		rl.buffers = newBufferPool(4 << 10)
	}
	if rl.o.MaxBodyBytes == 0 {
		rl.o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	rl.closing, rl.end = context.WithCancel(context.Background())
	return rl, nil
}

// LongLived reports whether r asks for a long-lived event stream: a GET (MCP's standalone stream before 2026-07-28, the
// HTTP+SSE transport's stream), or a POST whose one Mcp-Method header names ListenMethod. A client that names
// another method than its body's only chooses how its own answer is carried: the upstream refuses the mismatch.
func LongLived(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet:
		return true
	case http.MethodPost:
		m := r.Header["Mcp-Method"]
		return len(m) == 1 && m[0] == ListenMethod
	}
	return false
}

// Relayable reports whether the relay carries r: a long-lived stream request (LongLived) over HTTP/1.1 that accepts
// text/event-stream, offers no upgrade, and has no body (GET) or one of known length up to MaxBodyBytes (POST).
func (rl *Relay) Relayable(r *http.Request) bool {
	if !LongLived(r) || r.ProtoMajor != 1 || r.ProtoMinor < 1 || len(r.TransferEncoding) > 0 || r.Header.Get("Upgrade") != "" {
		return false
	}
	if r.ContentLength < 0 || r.ContentLength > rl.o.MaxBodyBytes || r.Method == http.MethodGet && r.ContentLength != 0 {
		return false
	}
	for _, v := range r.Header["Accept"] {
		if strings.Contains(v, "text/event-stream") {
			return true
		}
	}
	return false
}

// EndStreams ends every stream the relay took over, ends the requests still waiting for their answer's head, and
// refuses to take over any other connection from then on (answers are still passed through the ResponseWriter). Each
// stream's OnStream end function is called. It is the start of a shutdown.
func (rl *Relay) EndStreams() {
	rl.end()
	for _, t := range rl.streams.closeAll() {
		t.close()
	}
}

// Wait returns when no request is being relayed and no stream is open, or with ctx's error when ctx ends first.
func (rl *Relay) Wait(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for rl.streams.busy() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Streams returns the number of open streams the relay took over.
func (rl *Relay) Streams() int { return rl.streams.len() }

// isEventStream reports whether h's Content-Type is text/event-stream, as reverseproxy.go's flushInterval (Go 1.26)
// decides it.
func isEventStream(h http.Header) bool {
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return ct == "text/event-stream"
}

// bufferPool lends buffers of one size.
type bufferPool struct{ p sync.Pool }

func newBufferPool(size int) *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, size); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(p []byte) { b.p.Put(&p) }
