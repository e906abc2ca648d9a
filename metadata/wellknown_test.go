package metadata

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestWellKnownURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id, name string
		want     string // "" means an error wrapping ErrInvalidURL
	}{
		{"https://h/mcp", NameProtectedResource, "https://h/.well-known/oauth-protected-resource/mcp"},
		{"https://h", NameProtectedResource, "https://h/.well-known/oauth-protected-resource"},
		{"https://h/", NameProtectedResource, "https://h/.well-known/oauth-protected-resource"},
		{"https://h/a/b", NameAuthorizationServer, "https://h/.well-known/oauth-authorization-server/a/b"},
		{"https://h/mcp/", NameProtectedResource, "https://h/.well-known/oauth-protected-resource/mcp/"},
		{"http://localhost:8080/mcp", NameProtectedResource, "http://localhost:8080/.well-known/oauth-protected-resource/mcp"},
		{"http://[::1]:8080", NameProtectedResource, "http://[::1]:8080/.well-known/oauth-protected-resource"},
		{"https://h/a%2Fb", NameProtectedResource, "https://h/.well-known/oauth-protected-resource/a%2Fb"},
		{"HTTPS://Mcp.Example.com/MCP", NameProtectedResource, "https://Mcp.Example.com/.well-known/oauth-protected-resource/MCP"},

		{"https://h/mcp?x=1", NameProtectedResource, ""},
		{"https://h/mcp?", NameProtectedResource, ""},
		{"https://h/mcp#top", NameProtectedResource, ""},
		{"https://h/#", NameProtectedResource, ""},
		{"/mcp", NameProtectedResource, ""},
		{"h/mcp", NameProtectedResource, ""},
		{"//h/mcp", NameProtectedResource, ""},
		{"https:///mcp", NameProtectedResource, ""},
		{"https:h", NameProtectedResource, ""},
		{"urn:example:mcp", NameProtectedResource, ""},
		{"ftp://h/mcp", NameProtectedResource, ""},
		{"https://user:pw@h/mcp", NameProtectedResource, ""},
		{"https://h:bad/mcp", NameProtectedResource, ""},
		{"", NameProtectedResource, ""},
		{"https://h/mcp", "", ""},
		{"https://h/mcp", "a/b", ""},
	}
	for _, tt := range tests {
		t.Run(tt.id+" "+tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := WellKnownURL(tt.id, tt.name)
			if tt.want == "" {
				if !errors.Is(err, ErrInvalidURL) {
					t.Fatalf("got %q, %v; want an error wrapping ErrInvalidURL", got, err)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestDiscoveryURLs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		issuer string
		want   []string // nil means an error wrapping ErrInvalidURL
	}{
		{"https://sub.authkit.app", []string{
			"https://sub.authkit.app/.well-known/oauth-authorization-server",
			"https://sub.authkit.app/.well-known/openid-configuration",
		}},
		{"https://sub.authkit.app/", []string{
			"https://sub.authkit.app/.well-known/oauth-authorization-server",
			"https://sub.authkit.app/.well-known/openid-configuration",
		}},
		{"https://h/t", []string{
			"https://h/.well-known/oauth-authorization-server/t",
			"https://h/.well-known/openid-configuration/t",
			"https://h/t/.well-known/openid-configuration",
		}},
		{"https://h/t/", []string{
			"https://h/.well-known/oauth-authorization-server/t",
			"https://h/.well-known/openid-configuration/t",
			"https://h/t/.well-known/openid-configuration",
		}},
		{"http://127.0.0.1:9000/realms/a", []string{
			"http://127.0.0.1:9000/.well-known/oauth-authorization-server/realms/a",
			"http://127.0.0.1:9000/.well-known/openid-configuration/realms/a",
			"http://127.0.0.1:9000/realms/a/.well-known/openid-configuration",
		}},
		{"https://h/t?x=1", nil},
		{"https://h/t#f", nil},
		{"h/t", nil},
		{"/t", nil},
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.issuer, func(t *testing.T) {
			t.Parallel()
			got, err := DiscoveryURLs(tt.issuer)
			if tt.want == nil {
				if !errors.Is(err, ErrInvalidURL) {
					t.Fatalf("got %q, %v; want an error wrapping ErrInvalidURL", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// FuzzWellKnownURL checks that every URL WellKnownURL accepts gives an absolute URL on the same origin whose path
// starts with the well-known prefix and which has no query or fragment.
func FuzzWellKnownURL(f *testing.F) {
	for _, s := range []string{"https://h/mcp", "https://h", "http://[::1]:1/a%2F/", "https://h/mcp?x", "https://h/#", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		got, err := WellKnownURL(id, NameProtectedResource)
		if err != nil {
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("error %v does not wrap ErrInvalidURL", err)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("WellKnownURL(%q) = %q, which does not parse: %v", id, got, err)
		}
		in, _ := url.Parse(id)
		if u.Scheme != in.Scheme || u.Host != in.Host {
			t.Errorf("WellKnownURL(%q) = %q: origin changed", id, got)
		}
		if !strings.HasPrefix(u.EscapedPath(), "/.well-known/oauth-protected-resource") {
			t.Errorf("WellKnownURL(%q) = %q: path lacks the well-known prefix", id, got)
		}
		if strings.ContainsAny(got, "?#") {
			t.Errorf("WellKnownURL(%q) = %q: has a query or fragment", id, got)
		}
	})
}

func ExampleWellKnownURL() {
	prm, _ := WellKnownURL("https://mcp.example.com/mcp", NameProtectedResource)
	fmt.Println(prm)
	as, _ := DiscoveryURLs("https://example.authkit.app")
	fmt.Println(strings.Join(as, "\n"))
	// Output:
	// https://mcp.example.com/.well-known/oauth-protected-resource/mcp
	// https://example.authkit.app/.well-known/oauth-authorization-server
	// https://example.authkit.app/.well-known/openid-configuration
}
