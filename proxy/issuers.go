package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mcp-gateway/gateway/metadata"
	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// issuer is one authorization server whose tokens the gateway accepts (config.Config.Issuers): its key set, the
// verifier that checks its tokens with those keys and its audiences only, and its metadata once discovered. Each
// issuer is discovered, keyed and retried on its own: one that is down does not keep the others from working.
type issuer struct {
	url      string
	keys     *token.KeySet
	verifier *token.Verifier
	as       atomic.Pointer[metadata.AuthServer]
}

// newIssuers builds an issuer per configured issuer, the introspector when opaque tokens are introspected, and the
// verification that routes each token to them (g.tokens).
func (g *Gateway) newIssuers() {
	cfg := g.cfg
	var verifiers []*token.Verifier
	for _, ic := range cfg.Issuers {
		is := &issuer{url: ic.URL}
		is.keys = token.NewKeySet(token.KeySetOptions{
			Client: g.asClient, Cooldown: cfg.JWKSRefetchCooldown, Now: g.now, Algs: cfg.AlgList,
			OnFetch: func(err error) { g.onKeyFetch(is.url, err) },
		})
		is.verifier = token.NewVerifier(token.VerifierOptions{
			Keys: is.keys, Issuer: ic.URL, Audiences: ic.Audiences, Skew: cfg.ClockSkew, Now: g.now,
			ClaimHeaders: cfg.ClaimHeaderMap,
		})
		g.issuers = append(g.issuers, is)
		verifiers = append(verifiers, is.verifier)
	}
	in, mode := g.newIntrospector(), token.ValidateJWT
	switch {
	case in != nil && cfg.TokenValidation == "introspection":
		mode = token.ValidateIntrospection
	case in != nil:
		mode = token.ValidateAuto
	}
	g.tokens = token.NewIssuers(verifiers, in, mode)
}

// newIntrospector returns the introspector of GATEWAY_INTROSPECTION_*, or nil when tokens are not introspected.
func (g *Gateway) newIntrospector() *token.Introspector {
	c := g.cfg.Introspection
	if c == nil {
		return nil
	}
	var is *issuer
	var audiences []string
	for i, ic := range g.cfg.Issuers {
		if ic.URL == c.Issuer {
			is, audiences = g.issuers[i], ic.Audiences
		}
	}
	endpoint := func() (string, error) {
		if c.URL != "" {
			return c.URL, nil
		}
		as := is.as.Load()
		switch {
		case as == nil:
			return "", fmt.Errorf("the metadata of %s, which names the introspection endpoint, is not loaded yet", is.url)
		case as.IntrospectionEndpoint == "":
			return "", fmt.Errorf("the metadata of %s has no introspection_endpoint: set GATEWAY_INTROSPECTION_URL", is.url)
		}
		return as.IntrospectionEndpoint, checkIntrospectionEndpoint(as.IntrospectionEndpoint)
	}
	g.log.Info("opaque tokens are introspected", "issuer", c.Issuer, "endpoint", cmpOr(c.URL, "introspection_endpoint of the issuer's metadata"),
		"client_id", c.ClientID, "post_auth", c.PostAuth, "cache_ttl", c.CacheTTL.String(), "validation", g.cfg.TokenValidation)
	return token.NewIntrospector(token.IntrospectorOptions{
		Endpoint: endpoint, Client: g.asClient, ClientID: c.ClientID, ClientSecret: c.ClientSecret, PostAuth: c.PostAuth,
		Issuer: c.Issuer, Audiences: audiences, Skew: g.cfg.ClockSkew, CacheTTL: c.CacheTTL, Now: g.now,
		ClaimHeaders: g.cfg.ClaimHeaderMap,
		OnCall:       func(outcome string) { g.metrics.Introspections.WithLabelValues(outcome).Inc() },
	})
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkIntrospectionEndpoint refuses a discovered introspection endpoint that the gateway must not send tokens and
// credentials to: anything but https, or http on a loopback host.
func checkIntrospectionEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && config.IsLoopbackHost(u.Hostname())) {
		return errors.New("the issuer's introspection_endpoint is not an https URL (http only on a loopback host)")
	}
	return nil
}

// admitIntrospection counts a request whose token would be introspected (not cached) against its client address's
// GATEWAY_RATE_LIMIT_ANONYMOUS before the call, and refuses it past the limit: random tokens cost at most that rate
// of calls per address. A valid token is counted once per cache TTL; cached ones are never counted.
func (g *Gateway) admitIntrospection(r *http.Request, raw string) (bool, *Error) {
	if !g.tokens.Introspects(raw) {
		return false, nil
	}
	return true, g.limits.anonymousRefusal(r)
}

// runIssuer discovers is and loads its keys, retrying with backoff until it succeeds (its tokens are answered with
// 503 meanwhile), then refreshes its keys every JWKSRefreshInterval. It returns when ctx ends.
func (g *Gateway) runIssuer(ctx context.Context, is *issuer) {
	backoff := time.Second
	for {
		err := g.discoverIssuer(ctx, is)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		g.log.Error("authorization server not usable yet; its tokens are answered with 503 until it is", "issuer", is.url, "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	t := time.NewTicker(g.cfg.JWKSRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = is.keys.Refresh(ctx) // failures are logged and counted by onKeyFetch
		}
	}
}

// discover discovers every issuer once, as Run does without its retries, and joins their errors.
func (g *Gateway) discover(ctx context.Context) error {
	var errs []error
	for _, is := range g.issuers {
		errs = append(errs, g.discoverIssuer(ctx, is))
	}
	return errors.Join(errs...)
}

// discoverIssuer fetches is's metadata and its key set once. The first issuer's metadata is also what the gateway
// serves and, in Option B, signs clients in with.
func (g *Gateway) discoverIssuer(ctx context.Context, is *issuer) error {
	as, err := metadata.Discover(ctx, g.asClient, is.url)
	if err != nil {
		return err
	}
	is.keys.SetURL(as.JWKSURI)
	if err := is.keys.Refresh(ctx); err != nil {
		return err
	}
	is.as.Store(as)
	if is == g.issuers[0] {
		g.upstreamAS.Store(as)
		oidcURL := strings.TrimSuffix(is.url, "/") + "/.well-known/openid-configuration"
		if strings.Contains(as.URL, "/.well-known/openid-configuration") {
			oidcURL = as.URL
		}
		asd := metadata.NewDocument(metadata.DocumentOptions{URL: as.URL, Client: g.asClient, Now: g.now, Logger: g.log})
		asd.Seed(as.Raw)
		g.asDoc.Store(asd)
		od := asd
		if oidcURL != as.URL {
			od = metadata.NewDocument(metadata.DocumentOptions{URL: oidcURL, Client: g.asClient, Now: g.now, Logger: g.log})
		}
		g.oidcDoc.Store(od)
	}
	g.log.Info("authorization server ready", "issuer", as.Issuer, "metadata", as.URL, "jwks_uri", as.JWKSURI)
	return nil
}

// issuersNotReady returns the issuers whose keys are not loaded.
func (g *Gateway) issuersNotReady() []string {
	var out []string
	for _, is := range g.issuers {
		if !is.keys.Loaded() {
			out = append(out, is.url)
		}
	}
	return out
}
