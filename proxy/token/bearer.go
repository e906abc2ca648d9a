package token

import (
	"errors"
	"net/http"
	"strings"
)

// Bearer-header errors.
var (
	// ErrNoBearer reports a request without bearer credentials: no Authorization header, or another scheme.
	ErrNoBearer = errors.New("no bearer token")
	// ErrMalformedBearer reports a Bearer header whose token is empty or not a b64token.
	ErrMalformedBearer = errors.New("malformed bearer token")
	// ErrMultipleAuthorization reports more than one Authorization header.
	ErrMultipleAuthorization = errors.New("more than one Authorization header")
)

// BearerToken returns the token of a request's Authorization header (RFC 6750 §2.1; scheme case-insensitive).
// Tokens are taken from the header only, never from the query string, a form body or a cookie.
func BearerToken(h http.Header) (string, error) {
	v := h.Values("Authorization")
	switch len(v) {
	case 0:
		return "", ErrNoBearer
	case 1:
		return ParseBearer(v[0])
	default:
		return "", ErrMultipleAuthorization
	}
}

// ParseBearer parses the value of an Authorization header: "Bearer" (any case), one or more spaces, and a b64token.
func ParseBearer(v string) (string, error) {
	scheme, rest, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoBearer
	}
	tok := strings.TrimLeft(rest, " ")
	if tok == "" || len(tok) > 16<<10 {
		return "", ErrMalformedBearer
	}
	i := 0
	for i < len(tok) && b64token[tok[i]] {
		i++
	}
	if i == 0 {
		return "", ErrMalformedBearer
	}
	for j := i; j < len(tok); j++ {
		if tok[j] != '=' {
			return "", ErrMalformedBearer
		}
	}
	return tok, nil
}

// b64token marks the characters of an RFC 6750 b64token, before its trailing '='s.
var b64token = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()
