package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/cimd"
)

// docHost serves client metadata documents over https on loopback, with a certificate only the resolver trusts.
type docHost struct {
	srv   *httptest.Server
	hits  atomic.Int64
	roots *x509.CertPool
}

func newDocHost(t *testing.T) *docHost {
	t.Helper()
	d := &docHost{}
	d.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.hits.Add(1)
		self := d.srv.URL + r.URL.Path
		id := self
		if r.URL.Path == "/wrong-id.json" {
			id = "https://other.example/client.json"
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"client_id": id, "client_name": "Doc <Client>",
			"redirect_uris": []string{clientRedirect}, "token_endpoint_auth_method": "none"})
	}))
	t.Cleanup(d.srv.Close)
	d.roots = x509.NewCertPool()
	d.roots.AddCert(d.srv.Certificate())
	return d
}

// cimdHarness is a harness whose server resolves metadata documents with resolver options o.
func cimdHarness(t *testing.T, o cimd.Options) *harness {
	t.Helper()
	return newHarnessOpts(t, nil, nil, func(opts *Options) {
		o.Now = opts.Now
		o.CheckRedirectURI = CheckRedirectURI
		opts.ClientMetadata = cimd.New(o)
	})
}

func TestClientMetadataMetadataFlag(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		h := newHarness(t, nil)
		if on {
			h = cimdHarness(t, cimd.Options{})
		}
		var doc map[string]any
		json.Unmarshal([]byte(readBody(t, h.send(t, "GET", "/.well-known/oauth-authorization-server", nil, ""))), &doc)
		if got, _ := doc["client_id_metadata_document_supported"].(bool); got != on {
			t.Errorf("resolver %v: client_id_metadata_document_supported = %v", on, doc["client_id_metadata_document_supported"])
		}
		if doc["registration_endpoint"] != h.srv.URL+"/register" {
			t.Errorf("resolver %v: registration_endpoint %v, want it kept (DCR keeps working)", on, doc["registration_endpoint"])
		}
	}
}

// TestClientMetadataFlow: a client identified by its document's URL signs in without registering; the consent page
// shows the document's client_name and the URL's host; the code is bound to the URL at /token.
func TestClientMetadataFlow(t *testing.T) {
	t.Parallel()
	d := newDocHost(t)
	h := cimdHarness(t, cimd.Options{InsecureAllowPrivate: true, RootCAs: d.roots})
	clientID := d.srv.URL + "/client.json"
	q := authorizeQuery(clientID)
	resp := h.send(t, "GET", "/authorize?"+q.Encode(), nil, "")
	page := readBody(t, resp)
	host := strings.TrimPrefix(d.srv.URL, "https://")
	if resp.StatusCode != 200 || !strings.Contains(page, "Doc &lt;Client&gt;") || !strings.Contains(page, `<strong id="client-host">`+host+`</strong>`) ||
		!strings.Contains(page, clientRedirect) {
		t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	form, cookies := h.consentForm(t, q, "")
	resp = h.decide(t, form, "allow", cookies)
	if resp.StatusCode != 302 {
		t.Fatalf("allow: %d %s", resp.StatusCode, readBody(t, resp))
	}
	cookies = withCookies(cookies, resp)
	up, _ := url.Parse(resp.Header.Get("Location"))
	resp = h.send(t, "GET", "/callback?"+url.Values{"code": {"UPCODE"}, "state": {up.Query().Get("state")}, "iss": {h.is.URL}}.Encode(),
		http.Header{"Cookie": {cookies}}, "")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	if resp.StatusCode != 302 || code == "" {
		t.Fatalf("callback: %d %s", resp.StatusCode, loc)
	}
	if n := d.hits.Load(); n != 1 {
		t.Errorf("document fetched %d times in one sign-in, want 1 (cached)", n)
	}
	tok := func(client string) *http.Response {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {clientRedirect},
			"client_id": {client}, "code_verifier": {"v"}}
		return h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form.Encode())
	}
	if resp := tok(d.srv.URL + "/other.json"); resp.StatusCode != 400 || !strings.Contains(readBody(t, resp), "another client") {
		t.Errorf("code presented by another metadata URL: %d", resp.StatusCode)
	}
	if resp := tok(clientID); resp.StatusCode != 200 {
		t.Errorf("token: %d %s", resp.StatusCode, readBody(t, resp))
	}
	if got := h.tok.last(t); got.form.Get("code") != "UPCODE" || got.user != upstreamClientID {
		t.Errorf("upstream token request: %+v", got)
	}
	// DCR keeps working beside it.
	if _, _, back := h.signIn(t, publicClient); back.Get("code") == "" {
		t.Errorf("DCR sign-in: %v", back)
	}
}

func TestClientMetadataRefusals(t *testing.T) {
	t.Parallel()
	d := newDocHost(t)
	h := cimdHarness(t, cimd.Options{InsecureAllowPrivate: true, RootCAs: d.roots})
	guarded := cimdHarness(t, cimd.Options{RootCAs: d.roots})
	off := newHarness(t, nil)
	for _, tt := range []struct {
		name     string
		h        *harness
		clientID string
		redirect string
		status   int
		text     string
	}{
		{"client_id differs from the URL", h, d.srv.URL + "/wrong-id.json", clientRedirect, 400, "not valid for its address"},
		{"private address", guarded, d.srv.URL + "/client.json", clientRedirect, 400, "private or local network"},
		{"link-local address", guarded, "https://169.254.169.254/latest/meta-data", clientRedirect, 400, "private or local network"},
		{"http URL", h, strings.Replace(d.srv.URL, "https", "http", 1) + "/client.json", clientRedirect, 400, "Unknown application"},
		{"URL with a query", h, d.srv.URL + "/client.json?x=1", clientRedirect, 400, "cannot use as its description"},
		{"redirect URI not in the document", h, d.srv.URL + "/client.json", "http://127.0.0.1:1/elsewhere", 400, "did not register"},
		{"metadata documents off", off, d.srv.URL + "/client.json", clientRedirect, 400, "not one this gateway issued"},
	} {
		q := authorizeQuery(tt.clientID)
		q.Set("redirect_uri", tt.redirect)
		resp := tt.h.send(t, "GET", "/authorize?"+q.Encode(), nil, "")
		page := readBody(t, resp)
		if resp.StatusCode != tt.status || !strings.Contains(page, tt.text) || resp.Header.Get("Location") != "" {
			t.Errorf("%s: got %d %s, want %d with %q and no redirect", tt.name, resp.StatusCode, page, tt.status, tt.text)
		}
	}
	before := d.hits.Load()
	guarded.send(t, "GET", "/authorize?"+authorizeQuery(d.srv.URL+"/again.json").Encode(), nil, "")
	if d.hits.Load() != before {
		t.Error("the guarded server fetched from loopback")
	}
	if n := guarded.notes.last(t); n.attrs["cause"] != "client_metadata_document" || !strings.Contains(n.attrs["err"], "loopback, private") {
		t.Errorf("access line: %v", n.attrs)
	}
	// At /token, a URL client id is a public client: a secret-bearing or malformed one is refused.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"RT"}, "client_id": {"https://x.example/?q"}}
	if resp := h.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form.Encode()); resp.StatusCode != 401 {
		t.Errorf("token with a malformed metadata URL: %d", resp.StatusCode)
	}
	if resp := off.send(t, "POST", "/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"RT"}, "client_id": {d.srv.URL + "/client.json"}}.Encode()); resp.StatusCode != 401 {
		t.Errorf("token with a metadata URL while they are off: %d", resp.StatusCode)
	}
}

// TestClientMetadataFetchLimit: one address makes the gateway fetch at most cimdPerAddr documents a minute; beyond,
// a page with Retry-After, and the document server sees nothing more. Cached documents are not counted.
func TestClientMetadataFetchLimit(t *testing.T) {
	t.Parallel()
	d := newDocHost(t)
	h := cimdHarness(t, cimd.Options{InsecureAllowPrivate: true, RootCAs: d.roots})
	for i := range cimdPerAddr {
		resp := h.send(t, "GET", "/authorize?"+authorizeQuery(fmt.Sprintf("%s/c%d.json", d.srv.URL, i)).Encode(), nil, "")
		if resp.StatusCode != 200 {
			t.Fatalf("fetch %d: %d", i, resp.StatusCode)
		}
	}
	resp := h.send(t, "GET", "/authorize?"+authorizeQuery(d.srv.URL+"/one-more.json").Encode(), nil, "")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("over the limit: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := d.hits.Load(); n != cimdPerAddr {
		t.Errorf("document server: %d requests, want %d", n, cimdPerAddr)
	}
	if resp := h.send(t, "GET", "/authorize?"+authorizeQuery(d.srv.URL+"/c0.json").Encode(), nil, ""); resp.StatusCode != 200 {
		t.Errorf("a cached document over the limit: %d, want 200", resp.StatusCode)
	}
}

// TestClientMetadataFetchesUnderWayPerAddress: one address holds at most cimdInflight fetches at once, so that a few
// addresses naming slow documents cannot take every fetch slot; another address is not held up.
func TestClientMetadataFetchesUnderWayPerAddress(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fast.json" {
			started <- struct{}{}
			<-release
		}
		json.NewEncoder(w).Encode(map[string]any{"client_id": srv.URL + r.URL.Path, "redirect_uris": []string{clientRedirect}})
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	h := newHarnessOpts(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }, nil,
		func(opts *Options) {
			opts.ClientMetadata = cimd.New(cimd.Options{InsecureAllowPrivate: true, RootCAs: roots, CheckRedirectURI: CheckRedirectURI})
		})
	h.fwd = "203.0.113.7"
	for i := range cimdInflight {
		go func() {
			req, _ := http.NewRequest("GET", h.srv.URL+"/authorize?"+authorizeQuery(fmt.Sprintf("%s/slow%d.json", srv.URL, i)).Encode(), nil)
			req.Header.Set("X-Forwarded-For", h.fwd)
			if resp, err := h.client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		<-started
	}
	resp := h.send(t, "GET", "/authorize?"+authorizeQuery(srv.URL+"/fast.json").Encode(), nil, "")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a third fetch from the same address: %d, want 503 with Retry-After", resp.StatusCode)
	}
	resp = h.send(t, "GET", "/authorize?"+authorizeQuery(srv.URL+"/fast.json").Encode(), http.Header{"X-Forwarded-For": {"198.51.100.9"}}, "")
	if resp.StatusCode != 200 {
		t.Errorf("another address meanwhile: %d, want 200", resp.StatusCode)
	}
}

// loopbackDocHosts serves client metadata documents over https from n loopback addresses, 127.0.0.2 and up, each a
// host of its own for per-host limits, with one certificate for all that roots trusts. slow documents (every path but
// /fast.json) are answered once release is closed; started receives one value per slow request.
func loopbackDocHosts(t *testing.T, n int, release <-chan struct{}, started chan<- struct{}) (urls []string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loopback documents"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for i := range n {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, byte(2+i)))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fast.json" {
			started <- struct{}{}
			<-release
		}
		json.NewEncoder(w).Encode(map[string]any{"client_id": "https://" + r.Host + r.URL.Path, "redirect_uris": []string{clientRedirect}})
	})
	for i := range n {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", 2+i))
		if err != nil {
			t.Skipf("cannot listen on another loopback address: %v", err)
		}
		srv := httptest.NewUnstartedServer(handler)
		srv.Listener.Close()
		srv.Listener = l
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	return urls, roots
}

// TestClientMetadataSlotsAreNotAFewAddressesToHold: eight addresses, each with the two fetches it may have under way,
// naming documents whose servers answer as slowly as they may (5 s, then again), on four hosts (four under way each),
// do not hold every fetch slot: another client's document is fetched. Taking them all needs 128 addresses and 64
// hosts. A fifth fetch under way from one host is refused, whoever asks.
func TestClientMetadataSlotsAreNotAFewAddressesToHold(t *testing.T) {
	t.Parallel()
	const holders = 8
	release := make(chan struct{})
	started := make(chan struct{}, holders*cimdInflight+1)
	hosts, roots := loopbackDocHosts(t, holders*cimdInflight/cimdHostInflight+1, release, started)
	t.Cleanup(func() { close(release) })
	h := newHarnessOpts(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }, nil,
		func(opts *Options) {
			opts.ClientMetadata = cimd.New(cimd.Options{InsecureAllowPrivate: true, RootCAs: roots, CheckRedirectURI: CheckRedirectURI})
		})
	for a := range holders {
		for i := range cimdInflight {
			host := hosts[(a*cimdInflight+i)/cimdHostInflight]
			go func() {
				req, _ := http.NewRequest("GET", h.srv.URL+"/authorize?"+authorizeQuery(fmt.Sprintf("%s/slow%d-%d.json", host, a, i)).Encode(), nil)
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", a+1))
				if resp, err := h.client.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			<-started
		}
	}
	fast := hosts[len(hosts)-1] + "/fast.json"
	resp := h.send(t, "GET", "/authorize?"+authorizeQuery(fast).Encode(), http.Header{"X-Forwarded-For": {"198.51.100.9"}}, "")
	if resp.StatusCode != 200 {
		t.Errorf("another address while eight hold two fetches each: %d, want 200", resp.StatusCode)
	}
	resp = h.send(t, "GET", "/authorize?"+authorizeQuery(hosts[0]+"/one-more.json").Encode(), http.Header{"X-Forwarded-For": {"198.51.100.10"}}, "")
	if resp.StatusCode != 503 {
		t.Errorf("a fifth fetch under way from one host: %d, want 503", resp.StatusCode)
	}
}

// TestClientMetadataHostLimitIsNotStrangersToSpend: the per-host limit (60 fetches a minute) is spent by whoever names
// URLs on that host. Two addresses naming 60 made-up paths on a client's host each minute do not keep that client's
// own document, once its cache entry expires, from being fetched again: a refetch of a URL whose last fetch gave a
// valid document is counted apart. A refetch refused by a limit (here the asking address's own) is answered with the
// last document, noted as stale.
func TestClientMetadataHostLimitIsNotStrangersToSpend(t *testing.T) {
	t.Parallel()
	d := newDocHost(t)
	h := newHarnessOpts(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} }, nil,
		func(opts *Options) {
			opts.ClientMetadata = cimd.New(cimd.Options{InsecureAllowPrivate: true, RootCAs: d.roots, CheckRedirectURI: CheckRedirectURI, Now: opts.Now})
		})
	legit := func(addr string) int {
		resp := h.send(t, "GET", "/authorize?"+authorizeQuery(d.srv.URL+"/client.json").Encode(), http.Header{"X-Forwarded-For": {addr}}, "")
		return resp.StatusCode
	}
	if got := legit("198.51.100.9"); got != 200 {
		t.Fatalf("the host's own client: %d", got)
	}
	h.clock.Add(cimd.DefaultAge + time.Minute)
	for i := range cimdPerHost {
		fwd := http.Header{"X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", 1+i/cimdPerAddr)}}
		if resp := h.send(t, "GET", "/authorize?"+authorizeQuery(fmt.Sprintf("%s/made-up-%d.json", d.srv.URL, i)).Encode(), fwd, ""); resp.StatusCode != 200 {
			t.Fatalf("fetch %d: %d", i, resp.StatusCode)
		}
	}
	hits := d.hits.Load()
	if got := legit("203.0.113.1"); got != 200 {
		t.Errorf("the host's own client, its document expired, from an address over its limit: %d, want 200 (stale)", got)
	}
	if n := h.notes.last(t); n.attrs["client_metadata"] != "stale" || !strings.Contains(n.attrs["client_metadata_refetch"], "for this address") {
		t.Errorf("access line of a stale document: %v", n.attrs)
	}
	if d.hits.Load() != hits {
		t.Error("a refetch refused by the address's limit reached the document's host")
	}
	if got := legit("198.51.100.9"); got != 200 {
		t.Errorf("the host's own client, its document expired, from another address: %d, want 200", got)
	}
	if d.hits.Load() != hits+1 {
		t.Errorf("document host: %d requests, want %d (the document refetched)", d.hits.Load(), hits+1)
	}
}
