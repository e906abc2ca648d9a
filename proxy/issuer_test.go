package proxy

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// testKey is an RSA signing key with its kid.
type testKey struct {
	kid  string
	priv *rsa.PrivateKey
}

var (
	keyOnce sync.Once
	keyPool []*rsa.PrivateKey
)

// newKey returns a real RSA key. Keys are generated once per test binary (2048-bit generation is slow) and handed out
// by index.
func newKey(t testing.TB, kid string, i int) testKey {
	t.Helper()
	keyOnce.Do(func() {
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keyPool = append(keyPool, k)
		}
	})
	return testKey{kid: kid, priv: keyPool[i]}
}

// sign makes a compact JWS of claims with k and alg RS256.
func (k testKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return signWith(t, jose.SigningKey{Algorithm: jose.RS256, Key: k.priv}, k.kid, claims)
}

func signWith(t testing.TB, key jose.SigningKey, kid string, claims map[string]any) string {
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

// testIssuer is an authorization server on httptest: RFC 8414 metadata and a JWKS whose keys the test controls.
type testIssuer struct {
	*httptest.Server
	mu        sync.Mutex
	keys      []testKey
	down      atomic.Bool  // JWKS answers 503
	metaDown  atomic.Bool  // metadata answers 503
	jwksHits  atomic.Int64 // fetches of the JWKS
	metaHits  atomic.Int64
	extraMeta map[string]any
	// gate, when set (hold), keeps each JWKS request waiting until it is closed; entered receives one value per JWKS
	// request that starts waiting, and jwksCanceled counts those whose request ended while they waited.
	gate         chan struct{}
	entered      chan struct{}
	jwksCanceled atomic.Int64
}

func newTestIssuer(t testing.TB, keys ...testKey) *testIssuer {
	t.Helper()
	is := &testIssuer{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		is.metaHits.Add(1)
		if is.metaDown.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		doc := map[string]any{
			"issuer":                           is.URL,
			"authorization_endpoint":           is.URL + "/oauth2/authorize",
			"token_endpoint":                   is.URL + "/oauth2/token",
			"registration_endpoint":            is.URL + "/oauth2/register",
			"jwks_uri":                         is.URL + "/oauth2/jwks",
			"code_challenge_methods_supported": []string{"S256"},
			"response_types_supported":         []string{"code"},
		}
		for k, v := range is.extraMeta {
			doc[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("GET /oauth2/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.jwksHits.Add(1)
		is.mu.Lock()
		gate, entered := is.gate, is.entered
		is.mu.Unlock()
		if gate != nil {
			entered <- struct{}{}
			select {
			case <-gate:
			case <-r.Context().Done():
				is.jwksCanceled.Add(1)
				return
			}
		}
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range is.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "RS256", Use: "sig"})
		}
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	})
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Close)
	return is
}

// hold makes JWKS requests wait until release is called; entered receives one value as each starts waiting.
func (is *testIssuer) hold(t testing.TB) (entered <-chan struct{}, release func()) {
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

func (is *testIssuer) setKeys(keys ...testKey) {
	is.mu.Lock()
	is.keys = keys
	is.mu.Unlock()
}

// claims returns valid claims for resource, issued by is, for sub.
func (is *testIssuer) claims(resource, sub string, now time.Time) map[string]any {
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

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
