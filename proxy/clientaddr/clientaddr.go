// Package clientaddr names the client a request comes from, for limits counted per client address: the TCP peer, or,
// behind trusted reverse proxies, the nearest address in X-Forwarded-For that is not one of them.
package clientaddr

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// Key returns the key under which a request's client address is counted: the TCP peer, or, when the peer is one
// of the trusted proxies, the right-most X-Forwarded-For entry that is not one of them. IPv6 addresses count by their
// /64 network, the smallest one usually given to a single customer.
func Key(r *http.Request, trusted []netip.Prefix) string {
	addr, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	a := addr.Addr().Unmap()
	isTrusted := func(a netip.Addr) bool {
		return slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	if isTrusted(a) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			a = h.Unmap()
			if !isTrusted(a) {
				break
			}
		}
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
