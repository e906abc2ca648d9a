package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/token"
	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
)

// BenchmarkSanitiseAndInject is the header work of one forwarded request, as the reverse proxy runs it: Rewrite strips
// credentials and inbound identity headers and sets the verified identity.
func BenchmarkSanitiseAndInject(b *testing.B) {
	cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "http://127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	g, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	p := benchPrincipal(b)
	in := httptest.NewRequest("POST", "/mcp", nil)
	in.Header = http.Header{
		"Authorization": {"Bearer x"}, "Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"},
		"Mcp-Protocol-Version": {"2025-06-18"}, "User-Agent": {"bench"}, "X-Auth-User-Id": {"evil"},
	}
	in = in.WithContext(context.WithValue(in.Context(), stateKey{}, &reqState{reqID: "r1", route: "mcp", principal: p}))
	b.ReportAllocs()
	for b.Loop() {
		out := in.Clone(in.Context())
		g.rewrite(&httputil.ProxyRequest{In: in, Out: out}, true)
	}
}

// benchPrincipal returns the principal of a token with the usual claims, as the token package verifies it.
func benchPrincipal(b testing.TB) *token.Principal {
	k := tokentest.NewKey(b, "k1", 0)
	is := tokentest.NewIssuer(b, k)
	c := tokentest.NewClock()
	ks := token.NewKeySet(token.KeySetOptions{URL: is.JWKSURL(), Client: is.Client(), Now: c.Now, Algs: []string{"RS256"}})
	if err := ks.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	const aud = "https://mcp.example.com/mcp"
	v := token.NewVerifier(token.VerifierOptions{Keys: ks, Issuer: is.URL, Audiences: []string{aud}, Now: c.Now})
	p, err := v.Verify(context.Background(), k.Sign(b, map[string]any{"iss": is.URL, "aud": aud,
		"exp": c.Now().Add(time.Hour).Unix(), "sub": "user_1", "email": "a@example.com", "org_id": "org_1", "sid": "s",
		"client_id": "c", "scope": "openid email"}))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkChain is the whole gateway in front of a no-op upstream: router, observe, origin, body limit, authenticate
// (warm cache), session binding, reverse proxy to a loopback upstream.
func BenchmarkChain(b *testing.B) { benchChain(b, Options{}, nil) }

// benchChain runs BenchmarkChain's request through a gateway built with o (the clock, client and discarding JSON log
// set here), with hdr added to each request.
func benchChain(b *testing.B, o Options, hdr map[string]string) {
	k := tokentest.NewKey(b, "k1", 0)
	is := tokentest.NewIssuer(b, k)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp"})
	if err != nil {
		b.Fatal(err)
	}
	c := tokentest.NewClock()
	// Access logging on, as in production (JSON, info), into a discarding writer.
	o.Now, o.ASClient, o.Logger = c.Now, is.Client(), slog.New(slog.NewJSONHandler(io.Discard, nil))
	g, err := New(cfg, o)
	if err != nil {
		b.Fatal(err)
	}
	if err := g.discover(context.Background()); err != nil {
		b.Fatal(err)
	}
	tok := k.Sign(b, is.Claims(cfg.Resource, "user_1", c.Now()))
	h := g.Handler()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-user-info"}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/mcp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkBareProxy is the reference for BenchmarkChain: a bare httputil.ReverseProxy to the same kind of upstream,
// adding fixed identity headers, with the same transport.
func BenchmarkBareProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	rp := &httputil.ReverseProxy{Transport: newUpstreamTransport(upstreamDialer().DialContext, 0), Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Header.Set("X-Auth-User-Id", "user_1")
	}}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-user-info"}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/mcp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer x")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// BenchmarkChainLoopback is BenchmarkChain through real connections: a client keeps one connection to the gateway,
// which keeps its connections to the upstream, so that the per-connection work (deadlines) is measured as served.
func BenchmarkChainLoopback(b *testing.B) {
	k := tokentest.NewKey(b, "k1", 0)
	is := tokentest.NewIssuer(b, k)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer up.Close()
	cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": is.URL, "GATEWAY_UPSTREAM_URL": up.URL + "/mcp"})
	if err != nil {
		b.Fatal(err)
	}
	c := tokentest.NewClock()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	g, err := New(cfg, Options{Now: c.Now, ASClient: is.Client(), Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.discover(context.Background()); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	tok := k.Sign(b, is.Claims(cfg.Resource, "user_1", c.Now()))
	client := srv.Client()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-user-info"}}`
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("POST", srv.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
