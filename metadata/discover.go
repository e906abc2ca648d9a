package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AuthServer is the part of an authorization server's metadata (RFC 8414 or OpenID Connect Discovery) the gateway
// uses. Discover fills it from a document it has checked; other fields of the document are kept in Raw.
type AuthServer struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
	// IntrospectionEndpoint is where opaque tokens are introspected (RFC 7662), when the server offers it.
	IntrospectionEndpoint             string   `json:"introspection_endpoint,omitempty"`
	RegistrationEndpoint              string   `json:"registration_endpoint,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported,omitempty"`
	ClientIDMetadataDocumentSupported bool     `json:"client_id_metadata_document_supported,omitempty"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported,omitempty"`
	// AuthorizationResponseIssParameterSupported: the server sends iss with every authorization response (RFC 9207).
	AuthorizationResponseIssParameterSupported bool `json:"authorization_response_iss_parameter_supported,omitempty"`
	// URL is where the document was fetched from; Raw is the document as served.
	URL string `json:"-"`
	Raw []byte `json:"-"`
}

// Errors for one failed fetch, found in an Attempt with errors.Is. A status other than 200 is a *StatusError.
var (
	// ErrTooLarge: the document exceeds 1 MiB.
	ErrTooLarge = errors.New("document larger than 1 MiB")
	// ErrNotJSON: the body is not a JSON object.
	ErrNotJSON = errors.New("document is not a JSON object")
	// ErrIssuerMismatch: the document's issuer differs from the issuer it was discovered for (RFC 8414 §3.3).
	ErrIssuerMismatch = errors.New("issuer mismatch")
	// ErrJWKSURI: jwks_uri is missing, not absolute, or neither https nor http on a loopback host.
	ErrJWKSURI = errors.New("unusable jwks_uri")
)

// StatusError reports a fetch answered with a status other than 200 OK.
type StatusError struct {
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("status %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// Attempt is one URL Discover tried and why it was not used.
type Attempt struct {
	URL string
	Err error
}

// DiscoveryError is returned by Discover when no URL gave a valid document. It names every URL tried and why each
// failed; it never contains a response body.
type DiscoveryError struct {
	Issuer   string
	Attempts []Attempt
}

func (e *DiscoveryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no valid authorization server metadata for issuer %q", e.Issuer)
	for i, a := range e.Attempts {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", a.URL, a.Err)
	}
	return b.String()
}

// Unwrap returns the error of every attempt, so errors.Is(err, ErrIssuerMismatch) or
// errors.Is(err, context.DeadlineExceeded) reports whether any attempt failed that way.
func (e *DiscoveryError) Unwrap() []error {
	errs := make([]error, len(e.Attempts))
	for i, a := range e.Attempts {
		errs[i] = a.Err
	}
	return errs
}

// Discover fetches the issuer's metadata from DiscoveryURLs(issuer), in order, and returns the first valid document:
// status 200, a JSON object of at most 1 MiB, whose issuer equals issuer exactly (RFC 8414 §3.3: no normalisation, a
// trailing slash counts) and whose jwks_uri is an absolute https URL, or http on a loopback host (localhost,
// 127.0.0.0/8, ::1) for local development. A document that fails a check is skipped like a 404 and the next URL is
// tried, so a wrong document at one well-known path cannot hide a right one at another.
//
// The error is a *DiscoveryError listing every URL tried, or an error wrapping ErrInvalidURL for an unusable issuer.
// Discover stops early when ctx ends. A nil client means one with a 10 second timeout; the client's redirect policy
// applies, and the issuer check holds whatever the final URL.
func Discover(ctx context.Context, client *http.Client, issuer string) (*AuthServer, error) {
	urls, err := DiscoveryURLs(issuer)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	derr := &DiscoveryError{Issuer: issuer}
	for _, u := range urls {
		as, err := fetchAuthServer(ctx, client, u, issuer)
		if err == nil {
			return as, nil
		}
		derr.Attempts = append(derr.Attempts, Attempt{URL: u, Err: err})
		if ctx.Err() != nil {
			break
		}
	}
	return nil, derr
}

// fetchAuthServer fetches and checks one candidate metadata URL.
func fetchAuthServer(ctx context.Context, client *http.Client, rawURL, issuer string) (*AuthServer, error) {
	body, err := fetchJSON(ctx, client, rawURL)
	if err != nil {
		return nil, err
	}
	as := &AuthServer{URL: rawURL, Raw: body}
	if err := json.Unmarshal(body, as); err != nil {
		return nil, fmt.Errorf("decode metadata: %w", err)
	}
	if as.Issuer != issuer {
		return nil, fmt.Errorf("%w: document has %q, want %q", ErrIssuerMismatch, truncate(as.Issuer), issuer)
	}
	if err := checkJWKSURI(as.JWKSURI); err != nil {
		return nil, err
	}
	return as, nil
}

// checkJWKSURI accepts an absolute https URL, or an http URL whose host is loopback.
func checkJWKSURI(s string) error {
	if s == "" {
		return fmt.Errorf("%w: missing", ErrJWKSURI)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%w: %q is not an absolute URL", ErrJWKSURI, truncate(s))
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%w: %q uses http on a host that is not loopback", ErrJWKSURI, truncate(s))
	default:
		return fmt.Errorf("%w: %q has scheme %q", ErrJWKSURI, truncate(s), u.Scheme)
	}
}

// isLoopback reports whether host names this machine: localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// truncate shortens a value taken from a remote document before it goes into an error message.
func truncate(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// fetchJSON GETs rawURL and returns its body if the status is 200 and the body is a JSON object of at most
// maxDocumentSize bytes. Errors never contain the body.
func fetchJSON(ctx context.Context, client *http.Client, rawURL string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the caller names the URL
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.CopyN(io.Discard, resp.Body, 4<<10) // let a short error body go so the connection can be reused
		return nil, &StatusError{StatusCode: resp.StatusCode}
	}
	if resp.ContentLength > maxDocumentSize {
		return nil, ErrTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > maxDocumentSize {
		return nil, ErrTooLarge
	}
	if !isJSONObject(body) {
		return nil, ErrNotJSON
	}
	return body, nil
}

// isJSONObject reports whether b is exactly one JSON object, surrounded by optional white space.
func isJSONObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}
