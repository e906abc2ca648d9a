package clientaddr

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestKey(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"peer", "203.0.113.7:5555", nil, nil, "203.0.113.7"},
		{"forwarded-for ignored without trusted proxies", "203.0.113.7:5555", []string{"198.51.100.1"}, nil, "203.0.113.7"},
		{"forwarded-for ignored from an untrusted peer", "203.0.113.7:5555", []string{"198.51.100.1"}, trusted, "203.0.113.7"},
		{"right-most untrusted hop", "10.1.2.3:5555", []string{"198.51.100.9, 198.51.100.1, 10.9.9.9"}, trusted, "198.51.100.1"},
		{"several headers", "10.1.2.3:5555", []string{"198.51.100.9", "198.51.100.2"}, trusted, "198.51.100.2"},
		{"garbage stops the walk", "10.1.2.3:5555", []string{"198.51.100.9, junk"}, trusted, "10.1.2.3"},
		{"IPv6 by /64", "[2001:db8:1:2:3:4:5:6]:443", nil, nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped", "[::ffff:203.0.113.7]:1", nil, nil, "203.0.113.7"},
		{"trusted IPv6 peer", "[::1]:1", []string{"203.0.113.8"}, trusted, "203.0.113.8"},
	} {
		r := httptest.NewRequest("GET", "/authorize", nil)
		r.RemoteAddr = tc.remote
		r.Header["X-Forwarded-For"] = tc.xff
		if got := Key(r, tc.trusted); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
