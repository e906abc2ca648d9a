package proxy

import (
	"context"
	"net/http"
	"net/http/httputil"
	"time"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/relay"
)

// ServeHTTP sends an authenticated request upstream: the long-lived event streams the relay carries through it
// (package relay, when GATEWAY_STREAM_RELAY puts it on), everything else through the reverse proxy. A long-lived
// stream (a GET, or a POST of subscriptions/listen) ends when a shutdown starts; other requests may finish.
func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u.g.limits.streams != nil && relay.LongLived(r) {
		st := stateOf(r.Context())
		if !u.g.limits.openStream(w, r, st) {
			return
		}
		defer st.endStream() // unless the relay's stream took it over
	}
	if u.relay != nil && u.relay.Relayable(r) && !(u.policed && filtered(r)) {
		u.relay.ServeHTTP(w, r)
		return
	}
	if !relay.LongLived(r) {
		u.proxy.ServeHTTP(w, r)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(u.g.closing, cancel)
	defer stop()
	u.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// filtered reports whether Authorize must see r's answer (a resumed stream, which may replay list responses): then
// it takes the reverse proxy, whose answers pass through ModifyResponse.
func filtered(r *http.Request) bool {
	st := stateOf(r.Context())
	return st != nil && st.mcp != nil && st.mcp.Resumes()
}

// streamPath decides which path long-lived event streams take, and why, from GATEWAY_STREAM_RELAY, the upstream's
// scheme and whether an upstream transport is injected.
func streamPath(cfg *config.Config, injected bool) (useRelay bool, why string) {
	switch {
	case cfg.StreamRelay == "off":
		return false, "GATEWAY_STREAM_RELAY=off"
	case cfg.StreamRelay == "on":
		return true, "GATEWAY_STREAM_RELAY=on"
	case cfg.Upstream.Scheme != "http":
		return false, "the upstream is not http:// (the relay speaks plain HTTP/1.1)"
	case injected:
		return false, "an upstream transport is injected (GATEWAY_STREAM_RELAY=on relays streams beside it)"
	}
	return true, "an http:// upstream with the default transport (GATEWAY_STREAM_RELAY=auto)"
}

// chooseStreamPath decides, and logs once, which path long-lived event streams take.
func (g *Gateway) chooseStreamPath(injected bool) bool {
	useRelay, why := streamPath(g.cfg, injected)
	if useRelay {
		g.log.Info("long-lived event streams take the relay", "why", why)
	} else {
		g.log.Info("long-lived event streams take the reverse proxy", "why", why)
	}
	return useRelay
}

// newRelay builds an event-stream relay over rewrite and the gateway's error writer, session binding and metrics,
// and registers it for EndStreams and Shutdown.
func (g *Gateway) newRelay(rewrite func(*httputil.ProxyRequest)) *relay.Relay {
	rl, err := relay.New(relay.Options{
		UpstreamAddr: g.upstreamAddr,
		Dial:         g.dialer.DialContext, // the bare connection, which an idle stream waits on without a buffer
		HeadTimeout:  g.cfg.UpstreamTimeout,
		WriteTimeout: g.cfg.WriteTimeout,
		Now:          g.now,
		Rewrite:      rewrite,
		OnResponseHead: func(h http.Header, r *http.Request) {
			g.bindResponseSession(h, stateOf(r.Context()))
		},
		OnError:    g.upstreamError,
		OnStream:   g.onStream,
		BufferPool: g.buffers,
	})
	if err != nil {
		panic(err) // unreachable: every option is set, and the configuration is validated
	}
	g.relays = append(g.relays, rl)
	return rl
}

// onStream counts an open event stream carried by the relay. One it took over records its request when it ends, as
// the access log and metrics would have recorded it through the reverse proxy.
func (g *Gateway) onStream(r *http.Request, detached bool) func(int64) {
	g.metrics.OpenStreams.Inc()
	st := stateOf(r.Context())
	if !detached || st == nil {
		return func(int64) { g.metrics.OpenStreams.Dec() }
	}
	g.obs.label(st) // now: routing's record of the route does not outlive the handler
	st.relayed = true
	// The stream keeps what its access line needs, not the request body or routing's context: through them the
	// server's state for the connection it no longer serves (its buffers, the request) would live as long as the
	// stream, about 12 KiB more per idle POST stream.
	kept := *st
	kept.body, kept.rctx, kept.mcp = nil, nil, nil
	st.streamEnd = nil // the stream gives its slot back when it ends
	method, path := r.Method, r.URL.Path
	return func(sent int64) {
		kept.endStream()
		g.metrics.OpenStreams.Dec()
		g.obs.record(context.Background(), &kept, method, path, http.StatusOK, sent, g.now().Sub(kept.start))
	}
}

// relayedStreams returns the number of open streams the relays took over.
func (g *Gateway) relayedStreams() int {
	n := 0
	for _, rl := range g.relays {
		n += rl.Streams()
	}
	return n
}

// EndStreams ends every open long-lived event stream, relayed or proxied, and refuses new relayed ones: the start of
// a shutdown. Each stream's request is recorded as it ends. Register it with http.Server.RegisterOnShutdown, so that
// open streams do not hold the server's Shutdown for its whole timeout; clients reconnect (to another replica).
func (g *Gateway) EndStreams() {
	g.endStreams()
	for _, rl := range g.relays {
		rl.EndStreams()
	}
}

// Shutdown ends the event streams (EndStreams) and waits until every request the gateway is answering has ended and
// been recorded, then writes the audit events waiting, or returns when ctx ends. Call it after the server's Shutdown, or its Close once that timed out: the handlers of
// the connections Close cut still write their access lines, which Shutdown waits for.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.EndStreams()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for g.obs.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	for _, rl := range g.relays {
		if err := rl.Wait(ctx); err != nil {
			return err
		}
	}
	g.closeAudit()
	if g.redis != nil {
		g.redis.Close()
	}
	return nil
}
