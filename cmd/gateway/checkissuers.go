package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/mcp-gateway/gateway/metadata"
	"github.com/mcp-gateway/gateway/proxy/token"
)

// otherIssuers checks every issuer after the first as the gateway uses it at start: its metadata, and its key set.
// Each gets one line, named after its place in GATEWAY_ISSUER_URL ("issuer #2").
func (c *checker) otherIssuers() {
	for i, is := range c.cfg.Issuers[1:] {
		name := fmt.Sprintf("issuer #%d", i+2)
		doc, err := metadata.Discover(c.ctx, c.client, is.URL)
		if err != nil {
			c.fail(name, err.Error(), "check this entry of GATEWAY_ISSUER_URL: <issuer>/.well-known/oauth-authorization-server or "+
				"/.well-known/openid-configuration must serve its metadata, with this exact issuer, and this machine must reach it")
			continue
		}
		c.docs[is.URL] = doc
		keys, err := checkJWKS(c.ctx, c.client, c.cfg, doc.JWKSURI)
		if err != nil {
			c.fail(name, err.Error(), "the issuer's jwks_uri must answer with a JSON Web Key Set holding public signing keys in GATEWAY_SIGNING_ALGS")
			continue
		}
		if !slices.Contains(is.Audiences, c.cfg.Resource) {
			c.fail(name, fmt.Sprintf("%s: its accepted audiences %q lack the resource identifier %s: tokens that MCP clients request for this resource are refused", is.URL, is.Audiences, c.cfg.Resource),
				fmt.Sprintf("add %s=%s to GATEWAY_ISSUER_AUDIENCES (or %s to GATEWAY_AUDIENCES)", is.URL, c.cfg.Resource, c.cfg.Resource))
			continue
		}
		c.pass(name, "%s: metadata at %s; %s; audiences %q", is.URL, doc.URL, keys, is.Audiences)
	}
}

// introspection checks, when opaque tokens are introspected, that the endpoint answers and accepts the gateway's
// credentials: it introspects a made-up token with the gateway's own code and expects it to be inactive.
func (c *checker) introspection() {
	in := c.cfg.Introspection
	if in == nil {
		return
	}
	const name = "introspection"
	endpoint := in.URL
	if endpoint == "" {
		doc := c.docs[in.Issuer]
		switch {
		case doc == nil:
			c.skip("the metadata of "+in.Issuer+" could not be read", name)
			return
		case doc.IntrospectionEndpoint == "":
			c.fail(name, fmt.Sprintf("the metadata of %s has no introspection_endpoint", in.Issuer),
				"enable token introspection at the authorization server, or set GATEWAY_INTROSPECTION_URL to its endpoint")
			return
		}
		endpoint = doc.IntrospectionEndpoint
	}
	v := token.NewIntrospector(token.IntrospectorOptions{
		Endpoint: func() (string, error) { return endpoint, nil }, Client: c.client, ClientID: in.ClientID,
		ClientSecret: in.ClientSecret, PostAuth: in.PostAuth, Issuer: in.Issuer, Timeout: checkTimeout, Now: c.now,
	})
	method := "client_secret_basic"
	if in.PostAuth {
		method = "client_secret_post"
	}
	_, err := v.Verify(c.ctx, "gateway-check-"+rand.Text())
	var ae *token.AuthError
	switch {
	case errors.As(err, &ae) && ae.Reason == token.ReasonInactive:
		c.pass(name, "%s answers and accepts client %s (%s): a made-up token is inactive; opaque tokens of %s are introspected, answers cached up to %s",
			endpoint, in.ClientID, method, in.Issuer, in.CacheTTL)
	case errors.Is(err, token.ErrIntrospection):
		c.fail(name, err.Error(), fmt.Sprintf("check GATEWAY_INTROSPECTION_CLIENT_ID and _SECRET against a client registered at the authorization server "+
			"that may introspect tokens, sending them as %s (GATEWAY_INTROSPECTION_AUTH_METHOD), and that this machine reaches %s", method, endpoint))
	default:
		c.fail(name, fmt.Sprintf("%s said a made-up token is active (%v)", endpoint, err), "point GATEWAY_INTROSPECTION_URL at a real RFC 7662 introspection endpoint")
	}
}
