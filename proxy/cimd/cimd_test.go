package cimd

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// docServer is an https server on loopback that serves metadata documents: handler decides per path; hits counts
// the requests it received.
type docServer struct {
	*httptest.Server
	hits  atomic.Int64
	roots *x509.CertPool
}

func newDocServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, self string)) *docServer {
	t.Helper()
	d := &docServer{}
	d.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.hits.Add(1)
		handler(w, r, d.URL+r.URL.Path)
	}))
	t.Cleanup(d.Close)
	d.roots = x509.NewCertPool()
	d.roots.AddCert(d.Certificate())
	return d
}

// validDoc writes a valid document for the URL self.
func validDoc(w http.ResponseWriter, self string) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"client_id":%q,"client_name":"Example Client","redirect_uris":["http://127.0.0.1:33418/callback"],"token_endpoint_auth_method":"none"}`, self)
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestResolveValid(t *testing.T) {
	t.Parallel()
	srv := newDocServer(t, func(w http.ResponseWriter, r *http.Request, self string) { validDoc(w, self) })
	r := New(Options{InsecureAllowPrivate: true, RootCAs: srv.roots})
	doc, err := r.Resolve(t.Context(), srv.URL+"/client.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	if doc.ClientID != srv.URL+"/client.json" || doc.ClientName != "Example Client" || doc.Host != strings.TrimPrefix(srv.URL, "https://") ||
		len(doc.RedirectURIs) != 1 || doc.RedirectURIs[0] != "http://127.0.0.1:33418/callback" {
		t.Errorf("document: got %+v", doc)
	}
}

func TestResolveRefuses(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", DefaultMaxBytes)
	var redirected atomic.Int64
	srv := newDocServer(t, func(w http.ResponseWriter, r *http.Request, self string) {
		switch r.URL.Path {
		case "/other-id":
			fmt.Fprintf(w, `{"client_id":"https://evil.example/client.json","redirect_uris":["https://evil.example/cb"]}`)
		case "/id-with-slash":
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"]}`, self+"/")
		case "/redirect":
			http.Redirect(w, r, "/target", http.StatusFound)
		case "/permanent":
			http.Redirect(w, r, "/target", http.StatusPermanentRedirect)
		case "/target":
			redirected.Add(1)
			validDoc(w, self)
		case "/big":
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"],"pad":%q}`, self, big)
		case "/big-chunked":
			w.Write([]byte(fmt.Sprintf(`{"client_id":%q,"redirect_uris":["https://a.example/cb"],"pad":"`, self)))
			w.(http.Flusher).Flush()
			w.Write([]byte(big + `"}`))
		case "/404":
			http.NotFound(w, r)
		case "/secret":
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"],"client_secret":"s"}`, self)
		case "/basic":
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}`, self)
		case "/no-redirect-uris":
			fmt.Fprintf(w, `{"client_id":%q}`, self)
		case "/javascript":
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["javascript:alert(1)"]}`, self)
		case "/not-json":
			fmt.Fprint(w, `<html>`)
		case "/name-not-string":
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"],"client_name":7}`, self)
		}
	})
	check := func(s string) error {
		if strings.HasPrefix(s, "javascript:") {
			return errors.New("refused scheme")
		}
		return nil
	}
	r := New(Options{InsecureAllowPrivate: true, RootCAs: srv.roots, CheckRedirectURI: check})
	for _, tt := range []struct {
		path string
		want error
	}{
		{"/other-id", ErrInvalidDocument},
		{"/id-with-slash", ErrInvalidDocument},
		{"/redirect", ErrFetch},
		{"/permanent", ErrFetch},
		{"/big", ErrFetch},
		{"/big-chunked", ErrFetch},
		{"/404", ErrFetch},
		{"/secret", ErrInvalidDocument},
		{"/basic", ErrInvalidDocument},
		{"/no-redirect-uris", ErrInvalidDocument},
		{"/javascript", ErrInvalidDocument},
		{"/not-json", ErrInvalidDocument},
		{"/name-not-string", ErrInvalidDocument},
	} {
		doc, err := r.Resolve(t.Context(), srv.URL+tt.path, nil)
		if !errors.Is(err, tt.want) || doc != nil {
			t.Errorf("%s: got %v, %v; want %v", tt.path, doc, err, tt.want)
		}
	}
	if n := redirected.Load(); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
	// A server that does not trust the test authority is refused: the CA option is what made the rest work.
	plain := New(Options{InsecureAllowPrivate: true})
	if _, err := plain.Resolve(t.Context(), srv.URL+"/other-id", nil); !errors.Is(err, ErrFetch) {
		t.Errorf("untrusted certificate: got %v, want ErrFetch", err)
	}
}

func TestResolveSlowServer(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := newDocServer(t, func(w http.ResponseWriter, r *http.Request, self string) {
		if r.URL.Path == "/slow-body" {
			w.Write([]byte(`{"client_id":`))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	r := New(Options{InsecureAllowPrivate: true, RootCAs: srv.roots, Timeout: 300 * time.Millisecond})
	for _, path := range []string{"/slow-headers", "/slow-body"} {
		start := time.Now()
		_, err := r.Resolve(t.Context(), srv.URL+path, nil)
		if !errors.Is(err, ErrFetch) {
			t.Errorf("%s: got %v, want ErrFetch", path, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: took %s, want about the 300ms timeout", path, d)
		}
	}
}

// TestResolveRefusesPrivateAddresses: without InsecureAllowPrivate nothing on loopback is contacted, whether the URL
// names the address or a name that resolves to it (the check is on the address dialled, which DNS rebinding cannot
// change).
func TestResolveRefusesPrivateAddresses(t *testing.T) {
	t.Parallel()
	srv := newDocServer(t, func(w http.ResponseWriter, r *http.Request, self string) { validDoc(w, self) })
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	r := New(Options{RootCAs: srv.roots})
	for _, u := range []string{
		srv.URL + "/client.json",
		"https://localhost:" + port + "/client.json",
		"https://[::1]:" + port + "/client.json",
		"https://[::ffff:127.0.0.1]:" + port + "/client.json",
		"https://0.0.0.0:" + port + "/client.json",
		"https://10.0.0.1:" + port + "/client.json",
		"https://169.254.169.254/latest/meta-data",
	} {
		_, err := r.Resolve(t.Context(), u, nil)
		if !errors.Is(err, ErrRefusedAddress) {
			t.Errorf("%s: got %v, want ErrRefusedAddress", u, err)
		}
	}
	if n := srv.hits.Load(); n != 0 {
		t.Errorf("the loopback server received %d requests", n)
	}
}

func TestAllowed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true}, {"1.1.1.1", true}, {"2606:4700:4700::1111", true}, {"::ffff:8.8.8.8", true},
		{"127.0.0.1", false}, {"127.1.2.3", false}, {"::1", false}, {"::ffff:127.0.0.1", false}, {"0.0.0.0", false},
		{"0.1.2.3", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false}, {"100.64.0.1", false},
		{"169.254.169.254", false}, {"fe80::1", false}, {"fc00::1", false}, {"fd12:3456::1", false}, {"::", false},
		{"224.0.0.1", false}, {"ff02::1", false}, {"255.255.255.255", false}, {"240.0.0.1", false}, {"198.18.0.1", false},
		{"192.0.2.1", false}, {"64:ff9b::7f00:1", false}, {"2002:7f00:1::", false}, {"2001::1", false}, {"2001:db8::1", false},
		{"fec0::1", false}, {"100::1", false}, {"192.0.0.8", false},
		// IPv4-compatible (::a.b.c.d, deprecated) and IPv4-translated (::ffff:0:a.b.c.d, SIIT) addresses embed an IPv4
		// address, as NAT64's do: a translator or tunnel on the path may deliver them to it.
		{"::7f00:1", false}, {"::a00:1", false}, {"::ffff:0:7f00:1", false}, {"::ffff:0:808:808", false},
	} {
		if got := Allowed(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Allowed(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"https://app.example.com/oauth/client.json", "https://app.example.com:8443/c", "https://app.example.com/a/b/",
		"https://xn--mple-43da4b.com/c.json"} {
		if _, err := CheckURL(ok); err != nil {
			t.Errorf("CheckURL(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{
		"http://app.example.com/c.json", "https://app.example.com", "https://app.example.com/", "https:///c.json",
		"https://user:pw@app.example.com/c.json", "https://app.example.com/c.json?x=1", "https://app.example.com/c.json?",
		"https://app.example.com/c.json#f", "https://app.example.com/a/../c.json", "https://app.example.com/./c.json",
		"https://app.example.com/a/%2e%2e/c.json", "https://app.example.com/" + strings.Repeat("a", 2000), "https://app example/c",
		// The consent page shows the host to a person as the client's identity: a host in Unicode could be another's
		// look-alike (Cyrillic е, х, а in "ехаmple.com"). An internationalized name is written in its xn-- form.
		"https://ехаmple.com/c.json", "https://app.example.com。evil.test/c.json",
	} {
		if _, err := CheckURL(bad); !errors.Is(err, ErrInvalidURL) {
			t.Errorf("CheckURL(%q): got %v, want ErrInvalidURL", bad, err)
		}
	}
	if !IsURL("HTTPS://x.example/c") || IsURL("mcpgw_abc") || IsURL("https://") {
		t.Error("IsURL: wrong answer")
	}
}

func TestResolveCaches(t *testing.T) {
	t.Parallel()
	var cacheControl atomic.Value
	cacheControl.Store("max-age=60")
	srv := newDocServer(t, func(w http.ResponseWriter, r *http.Request, self string) {
		if r.URL.Path == "/broken" {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Cache-Control", cacheControl.Load().(string))
		validDoc(w, self)
	})
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	r := New(Options{InsecureAllowPrivate: true, RootCAs: srv.roots, Now: clk.now})
	resolve := func(path string) error {
		_, err := r.Resolve(t.Context(), srv.URL+path, nil)
		return err
	}
	for range 3 {
		if err := resolve("/a"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("max-age=60, three resolves: got %d fetches, want 1", n)
	}
	clk.add(61 * time.Second)
	resolve("/a")
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("after max-age: got %d fetches, want 2", n)
	}
	cacheControl.Store("no-store")
	resolve("/b")
	resolve("/b")
	if n := srv.hits.Load(); n != 4 {
		t.Errorf("no-store: got %d fetches, want 4", n)
	}
	// A failure is remembered for FailureAge, then tried again.
	for range 3 {
		if err := resolve("/broken"); !errors.Is(err, ErrFetch) {
			t.Fatalf("broken: got %v", err)
		}
	}
	if n := srv.hits.Load(); n != 5 {
		t.Errorf("failure, three resolves: got %d fetches, want 5", n)
	}
	clk.add(DefaultFailureAge)
	resolve("/broken")
	if n := srv.hits.Load(); n != 6 {
		t.Errorf("failure after FailureAge: got %d fetches, want 6", n)
	}
}

func TestResolveBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	srv := newDocServer(t, func(w http.ResponseWriter, r *http.Request, self string) {
		started <- struct{}{}
		<-release
		validDoc(w, self)
	})
	r := New(Options{InsecureAllowPrivate: true, RootCAs: srv.roots, Concurrency: 1})
	// Ten callers of one URL share one fetch.
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := r.Resolve(context.Background(), srv.URL+"/same", nil)
			errs <- err
		})
	}
	<-started
	// The one slot is taken: another URL is refused at once, without a fetch.
	if _, err := r.Resolve(t.Context(), srv.URL+"/other", nil); !errors.Is(err, ErrBusy) {
		t.Errorf("concurrency full: got %v, want ErrBusy", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("shared fetch: %v", err)
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("ten callers of one URL: got %d fetches, want 1", n)
	}
	// The admission check runs before a fetch, with the URL's host; a refusal fetches nothing and is not cached.
	var hosts []string
	refuse := func(host string, _ bool) (func(), error) {
		hosts = append(hosts, host)
		return nil, errors.New("limited")
	}
	if _, err := r.Resolve(t.Context(), srv.URL+"/admitted", refuse); !errors.Is(err, ErrBusy) {
		t.Errorf("admission refused: got %v, want ErrBusy", err)
	}
	released := make(chan struct{})
	admit := func(string, bool) (func(), error) { return func() { close(released) }, nil }
	if _, err := r.Resolve(t.Context(), srv.URL+"/admitted", admit); err != nil {
		t.Errorf("admitted after a refusal: %v", err)
	}
	<-released // done is called when the fetch ends (a test that never gets it times out)
	if _, err := r.Resolve(t.Context(), srv.URL+"/same", refuse); err != nil {
		t.Errorf("cached: the admission check ran (%v)", err)
	}
	if len(hosts) != 1 || hosts[0] != "127.0.0.1" {
		t.Errorf("admission hosts: got %q", hosts)
	}
}

func TestResolveCacheIsBounded(t *testing.T) {
	t.Parallel()
	srv := newDocServer(t, func(w http.ResponseWriter, r *http.Request, self string) { validDoc(w, self) })
	r := New(Options{InsecureAllowPrivate: true, RootCAs: srv.roots, CacheSize: 5})
	for i := range 20 {
		if _, err := r.Resolve(t.Context(), fmt.Sprintf("%s/c%d", srv.URL, i), nil); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	n := len(r.cache)
	r.mu.Unlock()
	if n > 5 {
		t.Errorf("cache holds %d entries, want at most 5", n)
	}
}

func TestFreshness(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	date := now.UTC().Format(http.TimeFormat)
	for _, tt := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, DefaultAge},
		{http.Header{"Cache-Control": {"public, max-age=120"}}, 2 * time.Minute},
		{http.Header{"Cache-Control": {"max-age=999999"}}, time.Hour},
		{http.Header{"Cache-Control": {"max-age=60, no-store"}}, 0},
		{http.Header{"Cache-Control": {"no-cache"}}, 0},
		{http.Header{"Cache-Control": {"max-age=-1"}}, 0},
		{http.Header{"Cache-Control": {"max-age=x"}}, 0},
		{http.Header{"Date": {date}, "Expires": {now.Add(10 * time.Minute).UTC().Format(http.TimeFormat)}}, 10 * time.Minute},
		{http.Header{"Expires": {"0"}}, 0},
		{http.Header{"Cache-Control": {"max-age=30"}, "Expires": {now.Add(time.Hour).UTC().Format(http.TimeFormat)}}, 30 * time.Second},
	} {
		if got := freshness(tt.h, now, time.Hour); got != tt.want {
			t.Errorf("freshness(%v) = %s, want %s", tt.h, got, tt.want)
		}
	}
}

// TestDialGuard pins the check on the address being dialled (after name resolution, so that a name re-resolved to an
// internal address is caught where it is used).
func TestDialGuard(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		network, address string
		ok               bool
	}{
		{"tcp4", "93.184.215.14:443", true},
		{"tcp6", "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443", true},
		{"tcp4", "127.0.0.1:443", false},
		{"tcp6", "[::ffff:10.0.0.1]:443", false},
		{"tcp6", "[fe80::1%eth0]:443", false},
		{"udp4", "93.184.215.14:443", false},
		{"tcp4", "not-an-address:443", false},
	} {
		err := dialGuard(t.Context(), tt.network, tt.address, nil)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrRefusedAddress)) {
			t.Errorf("dialGuard(%s, %s) = %v, want ok %v", tt.network, tt.address, err, tt.ok)
		}
	}
}

// TestAdmitHostIsFolded: a per-host fetch limit keyed by the host as written would count EXAMPLE.com, example.COM
// and example.com. (trailing dot) as three hosts, so one host could be fetched from many times its limit by spelling
// its name differently. Admit gets the host name folded: lower case, without a trailing dot, without the port.
func TestAdmitHostIsFolded(t *testing.T) {
	t.Parallel()
	r := New(Options{})
	refuse := errors.New("refused")
	for _, id := range []string{"https://EXAMPLE.com/c.json", "https://example.COM./c.json", "https://Example.Com:8443/c.json"} {
		var got string
		_, err := r.Resolve(context.Background(), id, func(host string, _ bool) (func(), error) { got = host; return nil, refuse })
		if !errors.Is(err, ErrBusy) || got != "example.com" {
			t.Errorf("%s: admit got host %q (err %v), want %q", id, got, err, "example.com")
		}
	}
}

// TestResolveStale: a refetch refused by a limit (the admission check, or every slot taken) answers with the URL's
// last document, marked Stale, for up to StaleAge past its expiry; a refetch that fails replaces it; a URL without a
// document is refused. Admit is told whether the URL is known (its last fetch gave a valid document).
func TestResolveStale(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	release, slowStarted := make(chan struct{}), make(chan struct{})
	srv := newDocServer(t, func(w http.ResponseWriter, r *http.Request, self string) {
		switch {
		case r.URL.Path == "/slow":
			close(slowStarted)
			<-release
		case broken.Load() && r.URL.Path == "/client.json":
			http.NotFound(w, r)
			return
		}
		validDoc(w, self)
	})
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	r := New(Options{InsecureAllowPrivate: true, RootCAs: srv.roots, Now: clk.now, Concurrency: 1})
	var known []bool
	limited := errors.New("limited")
	refuse := func(_ string, k bool) (func(), error) { known = append(known, k); return nil, limited }
	admit := func(_ string, k bool) (func(), error) { known = append(known, k); return nil, nil }
	id := srv.URL + "/client.json"
	if doc, err := r.Resolve(t.Context(), id, admit); err != nil || doc.Stale != nil {
		t.Fatalf("first fetch: %+v, %v", doc, err)
	}
	clk.add(DefaultAge)
	doc, err := r.Resolve(t.Context(), id, refuse)
	if err != nil || doc.ClientID != id || !errors.Is(doc.Stale, ErrBusy) || !errors.Is(doc.Stale, limited) {
		t.Fatalf("expired, refetch refused: got %+v, %v; want the last document, Stale wrapping the refusal", doc, err)
	}
	if _, err := r.Resolve(t.Context(), srv.URL+"/made-up.json", refuse); !errors.Is(err, ErrBusy) {
		t.Errorf("never fetched, refused: got %v, want ErrBusy", err)
	}
	if want := []bool{false, true, false}; fmt.Sprint(known) != fmt.Sprint(want) {
		t.Errorf("admit told known %v, want %v", known, want)
	}
	// Every slot taken: the same.
	slow := make(chan struct{})
	go func() { r.Resolve(context.Background(), srv.URL+"/slow", nil); close(slow) }()
	<-slowStarted
	if doc, err := r.Resolve(t.Context(), id, nil); err != nil || !errors.Is(doc.Stale, ErrBusy) {
		t.Errorf("expired, every slot taken: got %+v, %v; want the last document, Stale", doc, err)
	}
	close(release)
	<-slow
	// Up to StaleAge past its expiry, not beyond.
	clk.add(DefaultStaleAge - time.Second)
	if doc, err := r.Resolve(t.Context(), id, refuse); err != nil || doc.Stale == nil {
		t.Errorf("just within StaleAge: got %+v, %v", doc, err)
	}
	clk.add(time.Second)
	if _, err := r.Resolve(t.Context(), id, refuse); !errors.Is(err, ErrBusy) {
		t.Errorf("StaleAge past its expiry: got %v, want ErrBusy", err)
	}
	// A refetch that fails replaces the document: it is not used stale.
	if _, err := r.Resolve(t.Context(), id, nil); err != nil {
		t.Fatal(err)
	}
	clk.add(DefaultAge)
	broken.Store(true)
	if _, err := r.Resolve(t.Context(), id, nil); !errors.Is(err, ErrFetch) {
		t.Fatalf("refetch of a document now gone: got %v, want ErrFetch", err)
	}
	clk.add(DefaultFailureAge)
	if _, err := r.Resolve(t.Context(), id, refuse); !errors.Is(err, ErrBusy) {
		t.Errorf("refused after a failed refetch: got %v, want ErrBusy (no stale document)", err)
	}
}

// TestResolveConcurrency: the default bound on fetches under way is 256 (a goroutine and a connection each), so that
// a caller allowing two per client address needs 128 addresses to take them all.
func TestResolveConcurrency(t *testing.T) {
	t.Parallel()
	const n = 256
	release := make(chan struct{})
	started := make(chan struct{}, n)
	srv := newDocServer(t, func(w http.ResponseWriter, r *http.Request, self string) {
		started <- struct{}{}
		<-release
		validDoc(w, self)
	})
	// A generous Timeout: 256 handshakes at once on a loaded machine under -race can take seconds.
	r := New(Options{InsecureAllowPrivate: true, RootCAs: srv.roots, Timeout: time.Minute})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	early := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := r.Resolve(context.Background(), fmt.Sprintf("%s/c%d", srv.URL, i), nil)
			early <- err
		})
	}
	for range n {
		select {
		case <-started:
		case err := <-early:
			t.Fatalf("a fetch ended before any was answered (fewer than %d at once): %v", n, err)
		}
	}
	if _, err := r.Resolve(t.Context(), srv.URL+"/one-more", nil); !errors.Is(err, ErrBusy) {
		t.Errorf("257th fetch at once: got %v, want ErrBusy", err)
	}
}
