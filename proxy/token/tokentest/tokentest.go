// Package tokentest provides an authorization server for tests of code that verifies access tokens: an httptest
// server with RFC 8414 metadata, a JSON Web Key Set the test controls and a token introspection endpoint (RFC 7662) for
// opaque tokens, real RSA keys, signing helpers and an injectable clock. It is for tests only, like net/http/httptest.
package tokentest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Key is an RSA signing key with its kid.
type Key struct {
	ID      string
	Private *rsa.PrivateKey
}

// keyPool holds the RSA keys NewKey hands out, generated once per test binary: 2048-bit generation is slow.
var keyPool = sync.OnceValue(func() []*rsa.PrivateKey {
	var pool []*rsa.PrivateKey
	for range 3 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		pool = append(pool, k)
	}
	return pool
})

// NewKey returns a real RSA-2048 key with kid. i (0, 1 or 2) picks one of three keys shared by the whole test binary:
// the same i gives the same private key.
func NewKey(t testing.TB, kid string, i int) Key {
	t.Helper()
	return Key{ID: kid, Private: keyPool()[i]}
}

// Sign returns a compact JWS (alg RS256, typ at+jwt) of claims, signed with k.
func (k Key) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return SignWith(t, jose.SigningKey{Algorithm: jose.RS256, Key: k.Private}, k.ID, claims)
}

// SignWith returns a compact JWS (typ at+jwt) of claims, signed with key; kid "" leaves the kid header out.
func SignWith(t testing.TB, key jose.SigningKey, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Issuer is an authorization server on httptest: RFC 8414 metadata at /.well-known/oauth-authorization-server and a
// JSON Web Key Set at JWKSPath holding the public halves of its keys. Its issuer is its URL.
type Issuer struct {
	*httptest.Server
	// JWKSDown and MetadataDown make their endpoint answer 503.
	JWKSDown, MetadataDown atomic.Bool
	// JWKSHits and MetadataHits count the requests to each endpoint.
	JWKSHits, MetadataHits atomic.Int64
	// JWKSCanceled counts the key set requests held by Hold that ended before they were released.
	JWKSCanceled atomic.Int64
	// ExtraMetadata is added to (or replaces members of) the metadata document. Set it before the first request.
	ExtraMetadata map[string]any
	// IntrospectionDown makes the introspection endpoint answer 503; IntrospectionHits counts its requests.
	IntrospectionDown atomic.Bool
	IntrospectionHits atomic.Int64

	mu      sync.Mutex
	keys    []Key                     // guarded by mu
	gate    chan struct{}             // guarded by mu; see Hold
	entered chan struct{}             // guarded by mu
	opaque  map[string]map[string]any // guarded by mu; see Opaque
}

// JWKSPath is the path of an Issuer's key set.
const JWKSPath = "/oauth2/jwks"

// NewIssuer starts an Issuer publishing keys; it is closed when the test ends.
func NewIssuer(t testing.TB, keys ...Key) *Issuer {
	t.Helper()
	is := &Issuer{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", is.serveMetadata)
	mux.HandleFunc("GET "+JWKSPath, is.serveJWKS)
	mux.HandleFunc("POST "+IntrospectionPath, is.serveIntrospection)
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Close)
	return is
}

// JWKSURL is the URL of the key set.
func (is *Issuer) JWKSURL() string { return is.URL + JWKSPath }

func (is *Issuer) serveMetadata(w http.ResponseWriter, r *http.Request) {
	is.MetadataHits.Add(1)
	if is.MetadataDown.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	doc := map[string]any{
		"issuer":                           is.URL,
		"authorization_endpoint":           is.URL + "/oauth2/authorize",
		"token_endpoint":                   is.URL + "/oauth2/token",
		"registration_endpoint":            is.URL + "/oauth2/register",
		"jwks_uri":                         is.JWKSURL(),
		"introspection_endpoint":           is.URL + IntrospectionPath,
		"code_challenge_methods_supported": []string{"S256"},
		"response_types_supported":         []string{"code"},
	}
	for k, v := range is.ExtraMetadata {
		doc[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(doc)
}

func (is *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	is.JWKSHits.Add(1)
	is.mu.Lock()
	gate, entered := is.gate, is.entered
	is.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
			is.JWKSCanceled.Add(1)
			return
		}
	}
	if is.JWKSDown.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	is.mu.Lock()
	var set jose.JSONWebKeySet
	for _, k := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.Private.PublicKey, KeyID: k.ID, Algorithm: "RS256", Use: "sig"})
	}
	is.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(set)
}

// Hold makes key set requests wait until release is called; entered receives one value as each starts waiting (64
// at most before they are taken). Release runs at the latest when the test ends.
func (is *Issuer) Hold(t testing.TB) (entered <-chan struct{}, release func()) {
	t.Helper()
	gate, ent := make(chan struct{}), make(chan struct{}, 64)
	is.mu.Lock()
	is.gate, is.entered = gate, ent
	is.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			is.mu.Lock()
			is.gate = nil
			is.mu.Unlock()
			close(gate)
		})
	}
	t.Cleanup(release) // before the server's Close, which waits for held requests
	return ent, release
}

// SetKeys replaces the keys the key set publishes.
func (is *Issuer) SetKeys(keys ...Key) {
	is.mu.Lock()
	is.keys = keys
	is.mu.Unlock()
}

// Claims returns valid access-token claims issued by is for resource and sub at now, expiring an hour later.
func (is *Issuer) Claims(resource, sub string, now time.Time) map[string]any {
	return map[string]any{
		"iss":       is.URL,
		"sub":       sub,
		"aud":       resource,
		"exp":       now.Add(time.Hour).Unix(),
		"iat":       now.Unix(),
		"client_id": "client_123",
		"org_id":    "org_1",
		"sid":       "session_1",
		"scope":     "openid email",
		"jti":       "jti-1",
	}
}

// Clock is an injectable clock that moves only when told to. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock set to a fixed instant (Unix time 1,800,000,000).
func NewClock() *Clock { return &Clock{t: time.Unix(1_800_000_000, 0)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// IntrospectionPath is the path of an Issuer's introspection endpoint, advertised as introspection_endpoint.
const IntrospectionPath = "/oauth2/introspect"

// The client credentials the introspection endpoint accepts, by client_secret_basic or client_secret_post.
const (
	IntrospectionClientID     = "gateway-rs"
	IntrospectionClientSecret = "introspection secret/+&=0123456789"
)

// Opaque returns a new random opaque access token (not a JWT) whose introspection answers active with claims, as
// long as it is not revoked.
func (is *Issuer) Opaque(claims map[string]any) string {
	tok := rand.Text() + rand.Text()
	is.mu.Lock()
	if is.opaque == nil {
		is.opaque = map[string]map[string]any{}
	}
	is.opaque[tok] = claims
	is.mu.Unlock()
	return tok
}

// Revoke makes the introspection of an opaque token answer inactive.
func (is *Issuer) Revoke(tok string) {
	is.mu.Lock()
	delete(is.opaque, tok)
	is.mu.Unlock()
}

// serveIntrospection answers RFC 7662 requests authenticated with the introspection client's credentials: 401
// without them, {"active":false} for a token it did not issue by Opaque.
func (is *Issuer) serveIntrospection(w http.ResponseWriter, r *http.Request) {
	is.IntrospectionHits.Add(1)
	if is.IntrospectionDown.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = unescape(u), unescape(p)
	}
	if subtle.ConstantTimeCompare([]byte(id), []byte(IntrospectionClientID)) != 1 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(IntrospectionClientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspection"`)
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	is.mu.Lock()
	claims, ok := is.opaque[r.PostForm.Get("token")]
	is.mu.Unlock()
	answer := map[string]any{"active": false}
	if ok {
		answer = map[string]any{"active": true, "token_type": "Bearer"}
		for k, v := range claims {
			answer[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

// unescape undoes the form encoding RFC 6749 §2.3.1 applies to Basic credentials.
func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}
