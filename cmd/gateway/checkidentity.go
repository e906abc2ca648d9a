package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mcp-gateway/gateway/proxy"
	"github.com/mcp-gateway/gateway/proxy/authserver"
	"github.com/mcp-gateway/gateway/proxy/cimd"
	"github.com/mcp-gateway/gateway/proxy/config"
)

// claimHeaders says, when GATEWAY_CLAIM_HEADERS is set, which headers it adds and how they are protected. The names
// were checked when the configuration loaded (a refused one fails "configuration" with the reason), so it passes.
func (c *checker) claimHeaders() {
	m := c.cfg.ClaimHeaderMap
	if m == nil {
		return
	}
	pairs := make([]string, 0, len(m.Names()))
	for i, name := range m.Names() {
		pairs = append(pairs, name+" ← "+m.Claims()[i])
	}
	sig := "signed with GATEWAY_IDENTITY_SECRET (signature version 3, which lists them; an upstream checks identity.Covers)"
	if c.cfg.IdentitySecret == "" {
		sig = "unsigned (no GATEWAY_IDENTITY_SECRET): the upstream must be reachable from the gateway alone"
	}
	c.pass("claim headers", "%s; each stripped from inbound requests in every spelling; %s", strings.Join(pairs, ", "), sig)
}

// clientMetadata checks, in Option B (it prints nothing in Option A), the rules Client ID Metadata Documents are fetched under: the certificate
// authorities load, and the dial guard refuses a loopback address (tried on 127.0.0.1, which sends nothing anywhere)
// unless GATEWAY_CIMD_ALLOW_PRIVATE says otherwise, which fails on a public URL that is not on a loopback host.
func (c *checker) clientMetadata() {
	cfg := c.cfg
	const name = "client metadata documents"
	switch {
	case !cfg.OptionB():
		return
	case !cfg.CIMD:
		c.pass(name, "off (GATEWAY_CIMD=off): clients must register (DCR); https client ids are refused")
		return
	}
	roots, err := proxy.CIMDRoots(cfg.CIMDCAFile)
	if err != nil {
		c.fail(name, err.Error(), "point GATEWAY_CIMD_CA_FILE at a readable PEM file of certificate authorities, or unset it")
		return
	}
	cas := "the system's certificate authorities"
	if cfg.CIMDCAFile != "" {
		cas += " and those of " + cfg.CIMDCAFile
	}
	if cfg.InsecureCIMDAllowPrivate {
		if !config.IsLoopbackHost(cfg.Public.Hostname()) {
			c.fail(name, "GATEWAY_CIMD_ALLOW_PRIVATE=true on a public URL that is not on a loopback host: anyone who can open the authorization page can make the gateway fetch from its own network",
				"unset GATEWAY_CIMD_ALLOW_PRIVATE (it is meant for tests on one machine)")
			return
		}
		c.pass(name, "on, WITH loopback and private addresses allowed (GATEWAY_CIMD_ALLOW_PRIVATE, tests only); trusting %s", cas)
		return
	}
	r := cimd.New(cimd.Options{RootCAs: roots, CheckRedirectURI: authserver.CheckRedirectURI})
	_, err = r.Resolve(c.ctx, "https://127.0.0.1:9/check.json", nil)
	if !errors.Is(err, cimd.ErrRefusedAddress) {
		c.fail(name, fmt.Sprintf("a fetch from 127.0.0.1 was not refused by the address guard (%v)", err),
			"report this: the gateway's fetch rules are not in force")
		return
	}
	c.pass(name, "on: https client ids are fetched over https only, trusting %s; no redirects; within %s and %d bytes; never from loopback, private or special-use addresses (checked on the address dialled); cached at most %s, failures %s",
		cas, cimd.DefaultTimeout, cimd.DefaultMaxBytes, cimd.DefaultMaxAge, cimd.DefaultFailureAge)
}
