package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// bodyMarker is in every body the test servers send; no error may contain it.
const bodyMarker = "BODY-MARKER-7f3a"

// asDoc returns authorization server metadata for issuer, changed by edit.
func asDoc(issuer string, edit func(m map[string]any)) string {
	m := map[string]any{
		"issuer":                                issuer,
		"authorization_endpoint":                issuer + "/oauth2/authorize",
		"token_endpoint":                        issuer + "/oauth2/token",
		"jwks_uri":                              issuer + "/oauth2/jwks",
		"registration_endpoint":                 issuer + "/oauth2/register",
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      []string{"email", "offline_access", "openid", "profile"},
		"client_id_metadata_document_supported": true,
		"x_marker":                              bodyMarker,
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// route answers one path of the test issuer; issuer is the URL the test discovers.
type route func(issuer string) (status int, body string)

func ok(edit func(m map[string]any)) route {
	return func(issuer string) (int, string) { return http.StatusOK, asDoc(issuer, edit) }
}

func raw(status int, body string) route {
	return func(string) (int, string) { return status, body }
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	const (
		asMeta   = "/.well-known/oauth-authorization-server"
		oidcConf = "/.well-known/openid-configuration"
	)
	huge := `{"x":"` + strings.Repeat("a", maxDocumentSize) + `"}`
	tests := []struct {
		name         string
		path         string // issuer path
		routes       map[string]route
		chunked      bool   // send bodies without Content-Length
		wantFrom     string // path the document comes from; "" means an error
		wantErrs     []error
		wantAttempts int
	}{
		{
			name:     "RFC 8414 at the root",
			routes:   map[string]route{asMeta: ok(nil), oidcConf: raw(500, bodyMarker)},
			wantFrom: asMeta,
		},
		{
			name:     "OIDC after a 404",
			routes:   map[string]route{oidcConf: ok(nil)},
			wantFrom: oidcConf,
		},
		{
			name: "issuer mismatch skipped, OIDC used",
			routes: map[string]route{
				asMeta:   ok(func(m map[string]any) { m["issuer"] = m["issuer"].(string) + "/" }),
				oidcConf: ok(nil),
			},
			wantFrom: oidcConf,
		},
		{
			name: "issuer mismatch everywhere",
			routes: map[string]route{
				asMeta:   ok(func(m map[string]any) { m["issuer"] = "https://evil.example" }),
				oidcConf: ok(func(m map[string]any) { m["issuer"] = strings.ToUpper(m["issuer"].(string)) }),
			},
			wantErrs:     []error{ErrIssuerMismatch},
			wantAttempts: 2,
		},
		{
			name:         "missing jwks_uri",
			routes:       map[string]route{asMeta: ok(func(m map[string]any) { delete(m, "jwks_uri") })},
			wantErrs:     []error{ErrJWKSURI},
			wantAttempts: 2,
		},
		{
			name:         "relative jwks_uri",
			routes:       map[string]route{asMeta: ok(func(m map[string]any) { m["jwks_uri"] = "/oauth2/jwks" })},
			wantErrs:     []error{ErrJWKSURI},
			wantAttempts: 2,
		},
		{
			name:         "http jwks_uri on a host that is not loopback",
			routes:       map[string]route{asMeta: ok(func(m map[string]any) { m["jwks_uri"] = "http://auth.example.com/jwks" })},
			wantErrs:     []error{ErrJWKSURI},
			wantAttempts: 2,
		},
		{
			name:     "http jwks_uri on localhost",
			routes:   map[string]route{asMeta: ok(func(m map[string]any) { m["jwks_uri"] = "http://localhost:1/jwks" })},
			wantFrom: asMeta,
		},
		{
			name:     "https jwks_uri on another host",
			routes:   map[string]route{asMeta: ok(func(m map[string]any) { m["jwks_uri"] = "https://keys.example.com/jwks" })},
			wantFrom: asMeta,
		},
		{
			name:         "HTML",
			routes:       map[string]route{asMeta: raw(200, "<html>"+bodyMarker+"</html>"), oidcConf: raw(200, "[]")},
			wantErrs:     []error{ErrNotJSON},
			wantAttempts: 2,
		},
		{
			name:         "truncated JSON",
			routes:       map[string]route{asMeta: raw(200, `{"issuer":"`+bodyMarker)},
			wantErrs:     []error{ErrNotJSON},
			wantAttempts: 2,
		},
		{
			name:         "wrong field type",
			routes:       map[string]route{asMeta: raw(200, `{"issuer":["`+bodyMarker+`"]}`)},
			wantAttempts: 2,
		},
		{
			name:         "oversized with Content-Length",
			routes:       map[string]route{asMeta: raw(200, huge)},
			wantErrs:     []error{ErrTooLarge},
			wantAttempts: 2,
		},
		{
			name:         "oversized chunked",
			routes:       map[string]route{asMeta: raw(200, huge)},
			chunked:      true,
			wantErrs:     []error{ErrTooLarge},
			wantAttempts: 2,
		},
		{
			name:         "server error",
			routes:       map[string]route{asMeta: raw(503, bodyMarker)},
			wantErrs:     []error{&StatusError{}},
			wantAttempts: 2,
		},
		{
			name:     "path issuer, path appended",
			path:     "/t",
			routes:   map[string]route{"/t" + oidcConf: ok(nil)},
			wantFrom: "/t" + oidcConf,
		},
		{
			name:     "path issuer, path inserted",
			path:     "/t",
			routes:   map[string]route{asMeta + "/t": ok(nil), "/t" + oidcConf: ok(nil)},
			wantFrom: asMeta + "/t",
		},
		{
			name:         "path issuer, nothing found",
			path:         "/t",
			routes:       map[string]route{asMeta: ok(nil), oidcConf: ok(nil)},
			wantErrs:     []error{&StatusError{}},
			wantAttempts: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rt, found := tt.routes[r.URL.Path]
				if !found {
					http.NotFound(w, r)
					return
				}
				status, body := rt("http://" + r.Host + tt.path)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				if tt.chunked {
					w.(http.Flusher).Flush()
				}
				w.Write([]byte(body))
			}))
			t.Cleanup(srv.Close)
			issuer := srv.URL + tt.path
			urls, err := DiscoveryURLs(issuer)
			if err != nil {
				t.Fatal(err)
			}

			as, err := Discover(t.Context(), srv.Client(), issuer)
			if tt.wantFrom != "" {
				if err != nil {
					t.Fatalf("got error %v, want a document from %s", err, tt.wantFrom)
				}
				if as.URL != srv.URL+tt.wantFrom {
					t.Errorf("URL: got %s, want %s", as.URL, srv.URL+tt.wantFrom)
				}
				if as.Issuer != issuer {
					t.Errorf("Issuer: got %q, want %q", as.Issuer, issuer)
				}
				if !json.Valid(as.Raw) || !strings.Contains(string(as.Raw), bodyMarker) {
					t.Errorf("Raw: got %q, want the document as served", as.Raw)
				}
				if as.TokenEndpoint != issuer+"/oauth2/token" || !as.ClientIDMetadataDocumentSupported ||
					len(as.CodeChallengeMethodsSupported) != 1 {
					t.Errorf("fields not decoded: %+v", as)
				}
				return
			}

			var derr *DiscoveryError
			if !errors.As(err, &derr) {
				t.Fatalf("got %v, %v; want a *DiscoveryError", as, err)
			}
			if derr.Issuer != issuer {
				t.Errorf("Issuer: got %q, want %q", derr.Issuer, issuer)
			}
			if len(derr.Attempts) != tt.wantAttempts {
				t.Errorf("attempts: got %d, want %d: %v", len(derr.Attempts), tt.wantAttempts, err)
			}
			for i, a := range derr.Attempts {
				if a.URL != urls[i] {
					t.Errorf("attempt %d: got URL %s, want %s", i, a.URL, urls[i])
				}
				if !strings.Contains(err.Error(), a.URL) {
					t.Errorf("error %q does not name %s", err, a.URL)
				}
			}
			for _, want := range tt.wantErrs {
				if se, isStatus := want.(*StatusError); isStatus {
					if !errors.As(err, &se) {
						t.Errorf("error %v: no *StatusError", err)
					}
					continue
				}
				if !errors.Is(err, want) {
					t.Errorf("error %v: want errors.Is %v", err, want)
				}
			}
			if strings.Contains(err.Error(), bodyMarker) {
				t.Errorf("error %q contains the response body", err)
			}
		})
	}
}

func TestDiscoverServerDown(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	issuer := srv.URL
	srv.Close()

	_, err := Discover(t.Context(), nil, issuer)
	var derr *DiscoveryError
	if !errors.As(err, &derr) {
		t.Fatalf("got %v, want a *DiscoveryError", err)
	}
	urls, _ := DiscoveryURLs(issuer)
	if len(derr.Attempts) != len(urls) {
		t.Fatalf("attempts: got %d, want %d", len(derr.Attempts), len(urls))
	}
	for _, u := range urls {
		if strings.Count(err.Error(), u) != 1 {
			t.Errorf("error %q: want %s named once", err, u)
		}
	}
}

func TestDiscoverStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := Discover(ctx, srv.Client(), srv.URL)
	var derr *DiscoveryError
	if !errors.As(err, &derr) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want a *DiscoveryError wrapping context.Canceled", err)
	}
	if len(derr.Attempts) != 1 {
		t.Errorf("attempts: got %d, want 1", len(derr.Attempts))
	}
}

func TestDiscoverInvalidIssuer(t *testing.T) {
	t.Parallel()
	for _, issuer := range []string{"", "sub.authkit.app", "https://h/?x", "https://h#f"} {
		if _, err := Discover(t.Context(), nil, issuer); !errors.Is(err, ErrInvalidURL) {
			t.Errorf("Discover(%q): got %v, want an error wrapping ErrInvalidURL", issuer, err)
		}
	}
}

func TestCheckJWKSURI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri  string
		want bool
	}{
		{"https://h/jwks", true},
		{"https://127.0.0.1/jwks", true},
		{"http://localhost/jwks", true},
		{"http://LOCALHOST:8080/jwks", true},
		{"http://127.0.0.1:1/jwks", true},
		{"http://127.9.9.9/jwks", true},
		{"http://[::1]:1/jwks", true},
		{"http://h/jwks", false},
		{"http://10.0.0.1/jwks", false},
		{"http://localhost.evil.example/jwks", false},
		{"http://[::ffff:10.0.0.1]/jwks", false},
		{"ftp://h/jwks", false},
		{"file:///etc/jwks", false},
		{"/jwks", false},
		{"https:jwks", false},
		{"", false},
	}
	for _, tt := range tests {
		err := checkJWKSURI(tt.uri)
		if got := err == nil; got != tt.want {
			t.Errorf("checkJWKSURI(%q): got %v, want accepted %v", tt.uri, err, tt.want)
		}
		if err != nil && !errors.Is(err, ErrJWKSURI) {
			t.Errorf("checkJWKSURI(%q): error %v does not wrap ErrJWKSURI", tt.uri, err)
		}
	}
}
