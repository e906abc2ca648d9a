package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// issuerSources checks and copies the issuers, their audiences and how their tokens are verified.
func (e *Env) issuerSources(c *Config) error {
	var issuersErr, introspectionErr error
	c.Issuers, issuersErr = e.issuers(c.Issuer, c.AudienceList)
	c.TokenValidation = e.TokenValidation
	c.Introspection, introspectionErr = e.introspection(c.Issuers)
	return errors.Join(issuersErr, introspectionErr)
}

// issuers returns the issuers tokens are accepted from: first (the issuer, "" when it is invalid, which issuer
// reports), then the rest of GATEWAY_ISSUER_URL, each with its audiences (GATEWAY_ISSUER_AUDIENCES, else
// audiences). It refuses a repeated issuer, and several issuers in Option B.
func (e *Env) issuers(first string, audiences []string) ([]Issuer, error) {
	urls := []string{first}
	var errs []error
	if list := fields(e.IssuerURL); len(list) > 1 {
		for _, u := range list[1:] {
			if err := checkBaseURL(u, true); err != nil {
				errs = append(errs, &varError{name: "GATEWAY_ISSUER_URL", err: err})
				continue
			}
			if slices.Contains(urls, u) {
				errs = append(errs, bad("GATEWAY_ISSUER_URL", "lists %s twice", u))
				continue
			}
			urls = append(urls, u)
		}
		if e.ClientID != "" {
			errs = append(errs, bad("GATEWAY_ISSUER_URL", "lists %d issuers, but with MCP_USE_OAUTH_WORKOS_CLIENT_ID set (Option B) the gateway "+
				"signs MCP clients in at one authorization server, with one pre-registered client: list one issuer, or unset the client id", len(list)))
		}
	}
	if first == "" {
		return nil, errors.Join(errs...)
	}
	own := map[string][]string{}
	for _, entry := range e.IssuerAudiences {
		iss, aud := issuerOf(entry, urls)
		switch {
		case iss == "":
			errs = append(errs, bad("GATEWAY_ISSUER_AUDIENCES", "%q is not <issuer>=<audience> with an issuer of GATEWAY_ISSUER_URL", entry))
		case aud == "":
			errs = append(errs, bad("GATEWAY_ISSUER_AUDIENCES", "%q names no audience after =", entry))
		default:
			own[iss] = append(own[iss], aud)
		}
	}
	out := make([]Issuer, 0, len(urls))
	for _, u := range urls {
		out = append(out, Issuer{URL: u, Audiences: cmpList(own[u], audiences)})
	}
	return out, errors.Join(errs...)
}

// IssuerList returns the URLs of Issuers, in order.
func (c *Config) IssuerList() []string {
	out := make([]string, len(c.Issuers))
	for i, is := range c.Issuers {
		out[i] = is.URL
	}
	return out
}

// issuerOf splits an entry "<issuer>=<audience>" on the "=" that follows one of urls (an issuer may hold "=" in its
// path, so the entry is matched against the issuers rather than cut at the first "="): the longest one that fits.
func issuerOf(entry string, urls []string) (iss, aud string) {
	for _, u := range urls {
		if rest, ok := strings.CutPrefix(entry, u+"="); ok && len(u) > len(iss) {
			iss, aud = u, rest
		}
	}
	return iss, aud
}

func cmpList(l, def []string) []string {
	if len(l) > 0 {
		return l
	}
	return def
}

// introspection checks GATEWAY_TOKEN_VALIDATION and the GATEWAY_INTROSPECTION_* variables, and returns how tokens
// are introspected: nil when they are not.
func (e *Env) introspection(issuers []Issuer) (*Introspection, error) {
	var errs []error
	on := e.IntrospectionClientID != ""
	switch e.TokenValidation {
	case "auto":
	case "jwt":
		if on {
			errs = append(errs, bad("GATEWAY_INTROSPECTION_CLIENT_ID", "is set, but GATEWAY_TOKEN_VALIDATION=jwt never introspects: unset one of them"))
		}
		on = false
	case "introspection":
		if !on {
			errs = append(errs, bad("GATEWAY_TOKEN_VALIDATION", "introspection needs the gateway's client credentials: set GATEWAY_INTROSPECTION_CLIENT_ID and GATEWAY_INTROSPECTION_CLIENT_SECRET"))
		}
		if len(issuers) > 1 {
			errs = append(errs, bad("GATEWAY_TOKEN_VALIDATION", "introspection sends every token to one issuer's endpoint, so the tokens of the other "+
				"issuers in GATEWAY_ISSUER_URL would be sent to it: use auto (JWTs by their own issuer's keys, opaque tokens introspected)"))
		}
	default:
		errs = append(errs, bad("GATEWAY_TOKEN_VALIDATION", "must be auto, jwt or introspection (got %q)", e.TokenValidation))
	}
	if e.IntrospectionAuthMethod != "client_secret_basic" && e.IntrospectionAuthMethod != "client_secret_post" {
		errs = append(errs, bad("GATEWAY_INTROSPECTION_AUTH_METHOD", "must be client_secret_basic or client_secret_post (got %q)", e.IntrospectionAuthMethod))
	}
	if e.IntrospectionCacheTTL < time.Second || e.IntrospectionCacheTTL > time.Hour {
		errs = append(errs, bad("GATEWAY_INTROSPECTION_CACHE_TTL", "must be between 1s and 1h (got %s)", e.IntrospectionCacheTTL))
	}
	switch {
	case e.IntrospectionClientID == "":
		for _, v := range []struct{ name, value string }{
			{"GATEWAY_INTROSPECTION_CLIENT_SECRET", e.IntrospectionClientSecret},
			{"GATEWAY_INTROSPECTION_URL", e.IntrospectionURL},
			{"GATEWAY_INTROSPECTION_ISSUER", e.IntrospectionIssuer},
		} {
			if v.value != "" {
				errs = append(errs, bad(v.name, "is set without GATEWAY_INTROSPECTION_CLIENT_ID, which turns introspection on"))
			}
		}
	case e.IntrospectionClientSecret == "":
		errs = append(errs, bad("GATEWAY_INTROSPECTION_CLIENT_SECRET", "must be set with GATEWAY_INTROSPECTION_CLIENT_ID: an introspection endpoint requires the caller to authenticate (RFC 7662 §2.1)"))
	}
	if e.IntrospectionURL != "" {
		if err := checkEndpoint(e.IntrospectionURL); err != nil {
			errs = append(errs, &varError{name: "GATEWAY_INTROSPECTION_URL", err: err})
		}
	}
	in := &Introspection{Issuer: e.IntrospectionIssuer, URL: e.IntrospectionURL, ClientID: e.IntrospectionClientID,
		ClientSecret: e.IntrospectionClientSecret, PostAuth: e.IntrospectionAuthMethod == "client_secret_post",
		CacheTTL: e.IntrospectionCacheTTL}
	switch {
	case len(issuers) == 0:
	case in.Issuer == "":
		in.Issuer = issuers[0].URL
	case !slices.ContainsFunc(issuers, func(is Issuer) bool { return is.URL == in.Issuer }):
		errs = append(errs, bad("GATEWAY_INTROSPECTION_ISSUER", "%q is not one of GATEWAY_ISSUER_URL", in.Issuer))
	}
	if !on {
		in = nil
	}
	return in, errors.Join(errs...)
}

// checkEndpoint accepts an absolute https URL without credentials or fragment (http on a loopback host only).
func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("must be an absolute https:// URL without credentials or fragment (got %q)", s)
	}
	if u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) {
		return fmt.Errorf("must use https: http:// is accepted only for loopback hosts, and %q is not one", u.Hostname())
	}
	return nil
}
