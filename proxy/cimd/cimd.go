// Package cimd resolves OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, MCP
// 2025-11-25): a client whose client_id is an https URL publishes its metadata at that URL, and the authorization
// server fetches it instead of asking the client to register.
//
// Anyone can make the server fetch: a client id is whatever an anonymous browser puts in an authorization request. So
// every fetch is bounded: https only, no redirects, no proxy, a dial that refuses loopback, private, link-local and
// other special-use addresses (checked on the address actually dialled, after name resolution, so that DNS rebinding
// cannot reach them), a total time, a body size and a header size; at most Options.Concurrency fetches at once, one per
// URL (others wait for it), and a caller-supplied admission check (rate limits) before each. Documents are cached per
// their HTTP caching headers, within Options.MaxAge; failures briefly (Options.FailureAge), so that a broken or hostile
// URL costs one fetch per interval whoever asks. The cache is bounded; filling it only costs refetches.
//
// Limits are there against strangers, and strangers can spend them: a refetch refused by a limit (the admission check,
// or every slot taken) is answered with the document last fetched from that URL, marked Stale, for up to
// Options.StaleAge past its expiry. A failed refetch or an invalid document is not: it replaces the document.
package cimd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of Options.
const (
	DefaultTimeout    = 5 * time.Second
	DefaultMaxBytes   = 5 << 10 // the draft's recommendation
	DefaultMaxAge     = time.Hour
	DefaultAge        = 5 * time.Minute // a document without caching headers
	DefaultFailureAge = 10 * time.Second
	DefaultStaleAge   = time.Hour
	DefaultCacheSize  = 1000
	// DefaultConcurrency is cheap to hold (a goroutine and a connection each, 5 KiB of body, 5 s at most), and high
	// so that a caller bounding fetches per client address (and per host) needs that many addresses to be refused.
	DefaultConcurrency = 256
	maxURLLen          = 2000
	maxNameLen         = 200
	maxRedirectURIs    = 10
)

// Errors Resolve wraps. A caller branches on them with errors.Is: ErrInvalidURL and ErrBusy are about the request or
// the gateway; the others are about the document and its server.
var (
	// ErrInvalidURL: the client id is not a URL a metadata document may have.
	ErrInvalidURL = errors.New("client id is not a valid metadata document URL")
	// ErrRefusedAddress: the URL's host resolves to an address the gateway does not fetch from.
	ErrRefusedAddress = errors.New("metadata document URL resolves to a loopback, private or special-use address")
	// ErrFetch: the document could not be fetched (connection, TLS, time, status, redirect or size).
	ErrFetch = errors.New("metadata document could not be fetched")
	// ErrInvalidDocument: the document is not valid metadata for its URL.
	ErrInvalidDocument = errors.New("metadata document is invalid")
	// ErrBusy: the gateway is fetching as many documents as it allows, or the admission check refused; try again.
	ErrBusy = errors.New("too many metadata document fetches; try again shortly")
)

// Document is what the gateway uses of a client's metadata document.
type Document struct {
	// ClientID is the document's URL, equal to its client_id.
	ClientID string
	// Host is the URL's host (with its port, if any): what a person is shown as the client's identity.
	Host string
	// ClientName is client_name, trimmed and shortened to 200 characters; empty when absent.
	ClientName string
	// RedirectURIs are redirect_uris, each accepted by Options.CheckRedirectURI.
	RedirectURIs []string
	// Stale is nil for a document fresh in the cache or just fetched. Otherwise the document's cache entry has expired
	// and a refetch was refused by a limit (Stale wraps ErrBusy and says which): this is the document last fetched
	// from the URL, at most Options.StaleAge past its expiry.
	Stale error
}

// Options configure New. Zero values take the defaults above.
type Options struct {
	// InsecureAllowPrivate lets fetches reach loopback, private and other special-use addresses: for tests only. It
	// lets anyone who can reach the authorization endpoint make the gateway send requests into its own network.
	InsecureAllowPrivate bool
	// RootCAs are the authorities trusted for the documents' servers. nil: the system's.
	RootCAs *x509.CertPool
	// Timeout bounds one fetch, from dial to the last byte.
	Timeout time.Duration
	// MaxBytes bounds a document's body.
	MaxBytes int64
	// MaxAge bounds how long a document is cached, whatever its headers say.
	MaxAge time.Duration
	// FailureAge is how long a failure is remembered (and answered without a fetch).
	FailureAge time.Duration
	// StaleAge is how long past its expiry a cached document is still used when its refetch is refused by a limit
	// (never when the refetch fails or finds the document invalid). Negative: never.
	StaleAge time.Duration
	// CacheSize bounds the cached documents and failures. When full, a new entry replaces first the entries that can
	// no longer be used (failures expired, documents past StaleAge), then expired documents, then any.
	CacheSize int
	// Concurrency bounds the fetches in flight; beyond it Resolve returns ErrBusy at once.
	Concurrency int
	// CheckRedirectURI accepts or refuses one of the document's redirect_uris. nil: any absolute URL.
	CheckRedirectURI func(string) error
	// Now is the clock. nil: time.Now.
	Now func() time.Time
}

// Resolver fetches, checks and caches metadata documents. It is safe for concurrent use.
type Resolver struct {
	o      Options
	client *http.Client
	slots  chan struct{}

	mu       sync.Mutex
	cache    map[string]cacheEntry
	inflight map[string]*call
}

type cacheEntry struct {
	doc   *Document
	err   error
	until time.Time
}

type call struct {
	done chan struct{}
	doc  *Document
	err  error
}

// New returns a Resolver. It does no I/O.
func New(o Options) *Resolver {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.FailureAge <= 0 {
		o.FailureAge = DefaultFailureAge
	}
	switch {
	case o.StaleAge == 0:
		o.StaleAge = DefaultStaleAge
	case o.StaleAge < 0:
		o.StaleAge = 0
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CheckRedirectURI == nil {
		o.CheckRedirectURI = func(s string) error {
			if u, err := url.Parse(s); err != nil || !u.IsAbs() {
				return errors.New("not an absolute URL")
			}
			return nil
		}
	}
	return &Resolver{o: o, client: newClient(o), slots: make(chan struct{}, o.Concurrency),
		cache: map[string]cacheEntry{}, inflight: map[string]*call{}}
}

// newClient returns the HTTP client of every fetch: no proxy, no redirects, the dial guard, bounded in time and size.
func newClient(o Options) *http.Client {
	d := &net.Dialer{Timeout: o.Timeout}
	if !o.InsecureAllowPrivate {
		d.ControlContext = dialGuard
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    o.Timeout,
		ResponseHeaderTimeout:  o.Timeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
		DisableCompression:     true, // the size bound is on the bytes received
	}
	return &http.Client{Transport: tr, Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// dialGuard refuses a connection to an address Allowed refuses: it runs after name resolution, for every address the
// dialer tries, so a name that resolves (or re-resolves) to an internal address is refused too.
func dialGuard(_ context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || (network != "tcp4" && network != "tcp6") {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, address)
	}
	if !Allowed(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, ap.Addr())
	}
	return nil
}

// special are the special-use prefixes (RFC 6890 and its updates) a document is never fetched from, beside what
// netip's predicates cover (loopback, private, link-local, multicast, unspecified).
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the limited broadcast address
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated): embeds any IPv4 address
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT): embeds any IPv4 address
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: embeds any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo among them)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds any IPv4 address
	netip.MustParsePrefix("fc00::/7"),        // unique local
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// Allowed reports whether a document may be fetched from addr: a global unicast address outside every special-use
// range. An IPv4-mapped IPv6 address is judged as the IPv4 address it maps.
func Allowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || !addr.IsGlobalUnicast() || addr.IsPrivate() || addr.IsLoopback() || addr.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range special {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// IsURL reports whether a client id is meant as a metadata document URL (it starts with https://), so that Resolve,
// not registration, decides it.
func IsURL(clientID string) bool {
	return len(clientID) > len("https://") && strings.EqualFold(clientID[:len("https://")], "https://")
}

// CheckURL accepts a metadata document URL: https, a host in ASCII, a path other than "/" without "." or ".." segments, no
// user information, query or fragment, and at most 2000 bytes. It returns the URL's host.
func CheckURL(clientID string) (host string, err error) {
	bad := func(why string) (string, error) { return "", fmt.Errorf("%w: %s", ErrInvalidURL, why) }
	if len(clientID) > maxURLLen {
		return bad("longer than 2000 bytes")
	}
	u, err := url.Parse(clientID)
	switch {
	case err != nil:
		return bad("not a URL")
	case u.Scheme != "https":
		return bad("the scheme must be https")
	case u.Host == "" || u.Hostname() == "":
		return bad("no host")
	case !ascii(u.Host):
		// A person is shown the host as the client's identity: in Unicode it could be a look-alike of another's.
		return bad("the host must be in ASCII (an internationalized name in its xn-- form)")
	case u.User != nil:
		return bad("user information is not allowed")
	case u.RawQuery != "" || u.ForceQuery:
		return bad("a query is not allowed")
	case u.Fragment != "" || strings.Contains(clientID, "#"):
		return bad("a fragment is not allowed")
	case u.Path == "" || u.Path == "/":
		return bad("the path must name the document")
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") {
			return bad(`"." and ".." path segments are not allowed`)
		}
	}
	return u.Host, nil
}

// ascii reports whether s holds ASCII bytes only.
func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Admit decides whether a fetch from host (the URL's host name, without the port, in lower case and without a trailing
// dot, so that neither ports nor spellings multiply a per-host limit) may start: rate and concurrency limits of the
// caller's. known is true when the fetch is a refetch of a URL whose last fetch gave a valid document (its cache entry
// expired less than Options.StaleAge ago): only the URL's server can make a URL known, so a caller may count such
// refetches apart from fetches of URLs anyone can make up. On success it may return done, which is called once when
// the fetch ends.
type Admit func(host string, known bool) (done func(), err error)

// Resolve returns the metadata document of clientID, from the cache or fetched. admit, when not nil, is called before
// a fetch (never for a cached answer, nor when the caller joins a fetch of the same URL under way); an error from it
// is returned wrapped in ErrBusy, nothing is fetched and nothing is cached. When a fetch is refused (by admit, or
// because Options.Concurrency fetches are under way) and the URL's last document expired less than Options.StaleAge
// ago, that document is returned, with Stale set, and no error. ctx bounds the wait; a fetch under way goes on for
// the callers that wait for it.
func (r *Resolver) Resolve(ctx context.Context, clientID string, admit Admit) (*Document, error) {
	host, err := CheckURL(clientID)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	now := r.o.Now()
	e, cached := r.cache[clientID]
	if cached && now.Before(e.until) {
		r.mu.Unlock()
		return e.doc, e.err
	}
	known := cached && e.doc != nil && now.Before(e.until.Add(r.o.StaleAge))
	c, waiting := r.inflight[clientID]
	if !waiting {
		if c, err = r.start(clientID, host, known, admit); err != nil {
			r.mu.Unlock()
			if known {
				stale := *e.doc
				stale.Stale = err
				return &stale, nil
			}
			return nil, err
		}
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		return c.doc, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrFetch, ctx.Err())
	}
}

// start admits a fetch of clientID and starts it, or returns why not (wrapping ErrBusy). r.mu is held.
func (r *Resolver) start(clientID, host string, known bool, admit Admit) (*call, error) {
	done := func() {}
	if admit != nil {
		d, err := admit(hostname(host), known)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBusy, err)
		}
		if d != nil {
			done = d
		}
	}
	select {
	case r.slots <- struct{}{}:
	default:
		done()
		return nil, ErrBusy
	}
	c := &call{done: make(chan struct{})}
	r.inflight[clientID] = c
	go r.run(clientID, host, c, done)
	return c, nil
}

// hostname is host without its port, if it has one, in lower case and without a trailing dot: one name per host,
// however the URL spells it, so that a per-host limit counts the host once.
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// run fetches clientID for everyone waiting on c, and caches the outcome.
func (r *Resolver) run(clientID, host string, c *call, done func()) {
	doc, ttl, err := r.fetch(clientID, host)
	<-r.slots // before the waiters are told, so that a slot is free for whichever of them asks next
	done()
	if err != nil {
		ttl = r.o.FailureAge
	}
	r.mu.Lock()
	delete(r.inflight, clientID)
	if ttl > 0 {
		r.put(clientID, cacheEntry{doc: doc, err: err, until: r.o.Now().Add(ttl)})
	} else {
		delete(r.cache, clientID) // not to be cached (no-store): nor its previous document used stale
	}
	r.mu.Unlock()
	c.doc, c.err = doc, err
	close(c.done)
}

// put caches e, making room first when the cache is full. r.mu is held.
func (r *Resolver) put(key string, e cacheEntry) {
	if _, ok := r.cache[key]; !ok && len(r.cache) >= r.o.CacheSize {
		r.makeRoom(r.o.Now())
	}
	r.cache[key] = e
}

// makeRoom removes the entries that can no longer be used (failures expired, documents past StaleAge), then, while
// the cache is still full, expired documents, then arbitrary entries. r.mu is held.
func (r *Resolver) makeRoom(now time.Time) {
	for k, old := range r.cache {
		if old.doc == nil && !now.Before(old.until) || !now.Before(old.until.Add(r.o.StaleAge)) {
			delete(r.cache, k)
		}
	}
	for _, evict := range []func(cacheEntry) bool{
		func(old cacheEntry) bool { return !now.Before(old.until) },
		func(cacheEntry) bool { return true },
	} {
		for k, old := range r.cache {
			if len(r.cache) < r.o.CacheSize {
				return
			}
			if evict(old) {
				delete(r.cache, k)
			}
		}
	}
}

// fetch gets and checks one document, and says how long it may be cached.
func (r *Resolver) fetch(clientID, host string) (*Document, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientID, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrRefusedAddress) {
			return nil, 0, fmt.Errorf("%w (%s)", ErrRefusedAddress, host)
		}
		return nil, 0, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, 0, fmt.Errorf("%w: the server answered %d (a redirect), and redirects are not followed", ErrFetch, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, 0, fmt.Errorf("%w: the server answered %d", ErrFetch, resp.StatusCode)
	case resp.ContentLength > r.o.MaxBytes:
		return nil, 0, fmt.Errorf("%w: the document is larger than %d bytes", ErrFetch, r.o.MaxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.o.MaxBytes+1))
	if err == nil {
		err = ctx.Err() // a body cut short by the deadline can end without a read error
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	if int64(len(body)) > r.o.MaxBytes {
		return nil, 0, fmt.Errorf("%w: the document is larger than %d bytes", ErrFetch, r.o.MaxBytes)
	}
	doc, err := parse(body, clientID, host, r.o.CheckRedirectURI)
	if err != nil {
		return nil, 0, err
	}
	return doc, freshness(resp.Header, r.o.Now(), r.o.MaxAge), nil
}

// parse checks a document against its URL: a JSON object whose client_id is the URL, byte for byte; redirect_uris a
// non-empty array, at most 10, each accepted by check; no client secret and no shared-secret authentication method
// (the document is public, so its client cannot hold one).
func parse(body []byte, clientID, host string, check func(string) error) (*Document, error) {
	var m struct {
		ClientID     *string         `json:"client_id"`
		ClientName   json.RawMessage `json:"client_name"`
		RedirectURIs []string        `json:"redirect_uris"`
		AuthMethod   *string         `json:"token_endpoint_auth_method"`
		Secret       json.RawMessage `json:"client_secret"`
	}
	bad := func(format string, args ...any) (*Document, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidDocument, fmt.Sprintf(format, args...))
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return bad("not a JSON object with the expected member types")
	}
	switch {
	case m.ClientID == nil:
		return bad("no client_id")
	case *m.ClientID != clientID:
		return bad("its client_id is not its URL")
	case len(m.RedirectURIs) == 0:
		return bad("no redirect_uris")
	case len(m.RedirectURIs) > maxRedirectURIs:
		return bad("more than %d redirect_uris", maxRedirectURIs)
	case m.Secret != nil:
		return bad("it carries a client_secret")
	case m.AuthMethod != nil && *m.AuthMethod != "none":
		return bad("token_endpoint_auth_method must be none")
	}
	for i, u := range m.RedirectURIs {
		if err := check(u); err != nil {
			return bad("redirect_uris[%d]: %v", i, err)
		}
	}
	doc := &Document{ClientID: clientID, Host: host, RedirectURIs: m.RedirectURIs}
	if m.ClientName != nil && string(m.ClientName) != "null" {
		var name string
		if json.Unmarshal(m.ClientName, &name) != nil {
			return bad("client_name must be a string")
		}
		doc.ClientName = shorten(strings.TrimSpace(name), maxNameLen)
	}
	return doc, nil
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}

// freshness is how long a response may be cached (RFC 9111 §4.2.1, as a private cache): 0 with no-store or no-cache,
// else max-age, else Expires, else DefaultAge, never more than maxAge.
func freshness(h http.Header, now time.Time, maxAge time.Duration) time.Duration {
	age := DefaultAge
	maxAgeSeen := false
	for _, line := range h.Values("Cache-Control") {
		for _, d := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err != nil || n < 0 {
					return 0
				}
				age, maxAgeSeen = time.Duration(min(n, int64(maxAge/time.Second)+1))*time.Second, true
			}
		}
	}
	if !maxAgeSeen {
		if e := h.Get("Expires"); e != "" {
			t, err := http.ParseTime(e)
			if err != nil {
				return 0 // an invalid Expires means already expired
			}
			age = t.Sub(now)
			if d, err := http.ParseTime(h.Get("Date")); err == nil {
				age = t.Sub(d)
			}
		}
	}
	return max(0, min(age, maxAge))
}
