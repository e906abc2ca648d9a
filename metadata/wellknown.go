package metadata

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrInvalidURL is wrapped by every error WellKnownURL and DiscoveryURLs return for an identifier they refuse.
var ErrInvalidURL = errors.New("invalid URL")

// Well-known names used by MCP clients.
const (
	NameProtectedResource   = "oauth-protected-resource"   // RFC 9728
	NameAuthorizationServer = "oauth-authorization-server" // RFC 8414
	NameOpenIDConfiguration = "openid-configuration"       // OpenID Connect Discovery 1.0
)

// WellKnownURL inserts "/.well-known/<name>" between the host and the path of id, as RFC 9728 §3.1 and
// RFC 8414 §3.1 do: ("https://h/mcp", "oauth-protected-resource") gives
// "https://h/.well-known/oauth-protected-resource/mcp". An id without a path, or with the path "/", gives no suffix.
// Any other path is kept as it is, trailing slash included, so that distinct identifiers get distinct URLs.
//
// id must be an absolute http or https URL with a host and without user information, query or fragment;
// anything else is an error wrapping ErrInvalidURL. Scheme, host and path are kept as written: the result is
// derived from configuration and must match what clients derive from the same identifier.
func WellKnownURL(id, name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/?#") {
		return "", fmt.Errorf("%w: well-known name %q", ErrInvalidURL, name)
	}
	u, err := parseIdentifier(id)
	if err != nil {
		return "", err
	}
	path := u.EscapedPath()
	if path == "/" {
		path = ""
	}
	return u.Scheme + "://" + u.Host + "/.well-known/" + name + path, nil
}

// DiscoveryURLs lists, in the order MCP clients try them, the metadata URLs of an issuer. Without a path:
//
//	<origin>/.well-known/oauth-authorization-server
//	<origin>/.well-known/openid-configuration
//
// With the path /t:
//
//	<origin>/.well-known/oauth-authorization-server/t
//	<origin>/.well-known/openid-configuration/t
//	<origin>/t/.well-known/openid-configuration
//
// A trailing slash on the path is dropped first, as OpenID Connect Discovery §4 and the TypeScript MCP SDK do, so
// "https://h/t/" gives the same URLs as "https://h/t". The issuer must satisfy the rules of WellKnownURL.
func DiscoveryURLs(issuer string) ([]string, error) {
	u, err := parseIdentifier(issuer)
	if err != nil {
		return nil, err
	}
	origin := u.Scheme + "://" + u.Host
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	if path == "" {
		return []string{
			origin + "/.well-known/" + NameAuthorizationServer,
			origin + "/.well-known/" + NameOpenIDConfiguration,
		}, nil
	}
	return []string{
		origin + "/.well-known/" + NameAuthorizationServer + path,
		origin + "/.well-known/" + NameOpenIDConfiguration + path,
		origin + path + "/.well-known/" + NameOpenIDConfiguration,
	}, nil
}

// parseIdentifier parses a resource identifier or an issuer: an absolute http(s) URL with a host and without user
// information, query or fragment.
func parseIdentifier(id string) (*url.URL, error) {
	// Checked on the raw string: url.Parse drops an empty fragment ("https://h/#") without a trace.
	if i := strings.IndexAny(id, "?#"); i >= 0 {
		part := "query"
		if id[i] == '#' {
			part = "fragment"
		}
		return nil, fmt.Errorf("%w %q: has a %s", ErrInvalidURL, id, part)
	}
	u, err := url.Parse(id)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL
		}
		return nil, fmt.Errorf("%w %q: %w", ErrInvalidURL, id, err)
	}
	switch {
	case u.Scheme == "" || u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("%w %q: not an absolute URL with a host", ErrInvalidURL, id)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%w %q: scheme must be https or http", ErrInvalidURL, id)
	case u.User != nil:
		return nil, fmt.Errorf("%w %q: has user information", ErrInvalidURL, u.Redacted())
	}
	return u, nil
}
