package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStripEverySpelling(t *testing.T) {
	t.Parallel()
	strip := []string{
		"X-Auth-User-Id", "x-auth-user-id", "X_Auth_User_Id", "x_auth_email", "X-AUTH-ROLES", "X-Auth-Anything-New",
		"X-Auth-Request-User", "X-Auth-Request-Email", "x_auth_request_groups", "X-Auth-Request-Access-Token",
		"X-Forwarded-User", "x-forwarded-email", "X_Forwarded_Groups", "X-Forwarded-Preferred-Username",
		"X-Forwarded-Access-Token", "x_forwarded_preferred_username", "X-Auth-Signature",
	}
	keep := []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Authorization-Hint", "X-Auth", "Authorization", "Mcp-Session-Id", "X-Request-Id"}
	h := http.Header{}
	for _, n := range append(strip, keep...) {
		h[n] = []string{"forged"} // raw keys: the server keeps non-canonical spellings as sent
	}
	Strip(h)
	for _, n := range strip {
		if _, ok := h[n]; ok {
			t.Errorf("%s survived Strip", n)
		}
	}
	for _, n := range keep {
		if _, ok := h[n]; !ok {
			t.Errorf("%s was removed, want kept", n)
		}
	}
}

func FuzzIsIdentityHeader(f *testing.F) {
	for _, s := range []string{"X-Auth-User-Id", "x_auth_x", "X-Forwarded-User", "X-Forwarded-For", "", "X-Auth"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
		must := strings.HasPrefix(n, "x-auth-") || n == "x-forwarded-user" || n == "x-forwarded-email" ||
			n == "x-forwarded-groups" || n == "x-forwarded-preferred-username" || n == "x-forwarded-access-token"
		if must && !IsIdentityHeader(name) {
			t.Fatalf("%q is an identity header but IsIdentityHeader says no", name)
		}
		h := http.Header{name: {"v"}, "Content-Type": {"x"}}
		Strip(h)
		if _, ok := h[name]; ok == must {
			t.Fatalf("Strip(%q): kept=%v, want kept=%v", name, ok, !must)
		}
		if h.Get("Content-Type") != "x" && !IsIdentityHeader("Content-Type") {
			t.Fatal("Strip removed Content-Type")
		}
	})
}

func TestSetAndFromHeader(t *testing.T) {
	t.Parallel()
	id := Identity{UserID: "user_1", Email: "a@example.com", Name: "Ada\r\nX-Evil: 1", Roles: []string{"admin", "member"},
		Permissions: []string{"p:r"}, Scopes: []string{"openid", "email"}, Claims: []byte(`{"sub":"user_1"}`)}
	h := http.Header{}
	id.Set(h)
	if got := h.Get(HeaderName); got != "Ada  X-Evil: 1" {
		t.Errorf("control characters: got %q", got)
	}
	if _, ok := h[HeaderOrgID]; ok {
		t.Error("absent claim produced a header")
	}
	got, err := FromHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != "user_1" || strings.Join(got.Roles, "|") != "admin|member" || strings.Join(got.Scopes, "|") != "openid|email" || string(got.Claims) != `{"sub":"user_1"}` {
		t.Errorf("round trip: got %+v", got)
	}
	if h.Get(HeaderForwardedUser) != "user_1" || h.Get(HeaderForwardedEmail) != "a@example.com" {
		t.Error("oauth2-proxy names not set")
	}
	if _, err := FromHeader(http.Header{}); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("empty header: got %v, want ErrNoIdentity", err)
	}
}

// signedRequest returns a request as the upstream receives it: POST http://tools.internal:3001/mcp with the identity
// headers of id, signed with secret at now.
func signedRequest(id Identity, secret []byte, now time.Time) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://tools.internal:3001/mcp", nil)
	id.Set(r.Header)
	Sign(r, secret, now)
	return r
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	signed := func() *http.Request {
		return signedRequest(Identity{UserID: "user_1", Email: "a@example.com", Roles: []string{"member"}}, secret, now)
	}
	if err := Verify(signed(), secret, now.Add(30*time.Second), time.Minute); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	tests := []struct {
		name string
		mod  func(r *http.Request)
		at   time.Time
		want error // nil: accepted
	}{
		{"missing", func(r *http.Request) { r.Header.Del(HeaderSignature) }, now, ErrNoSignature},
		{"changed user", func(r *http.Request) { r.Header.Set(HeaderUserID, "user_2") }, now, ErrBadSignature},
		{"added org", func(r *http.Request) { r.Header.Set(HeaderOrgID, "org_x") }, now, ErrBadSignature},
		{"removed e-mail", func(r *http.Request) { r.Header.Del(HeaderEmail) }, now, ErrBadSignature},
		{"changed time", func(r *http.Request) {
			r.Header.Set(HeaderSignature, strings.Replace(r.Header.Get(HeaderSignature), "t=18", "t=19", 1))
		}, now, ErrBadSignature},
		{"time with a leading zero", func(r *http.Request) {
			r.Header.Set(HeaderSignature, strings.Replace(r.Header.Get(HeaderSignature), "t=", "t=0", 1))
		}, now, ErrBadSignature},
		{"garbage", func(r *http.Request) { r.Header.Set(HeaderSignature, "v2=abc") }, now, ErrBadSignature},
		{"stale", func(*http.Request) {}, now.Add(2 * time.Minute), ErrStale},
		{"from the future", func(*http.Request) {}, now.Add(-2 * time.Minute), ErrStale},
		// Version 2 binds the identity to the request it was signed for.
		{"other method", func(r *http.Request) { r.Method = http.MethodDelete }, now, ErrBadSignature},
		{"other path", func(r *http.Request) { r.URL.Path = "/admin" }, now, ErrBadSignature},
		{"other path encoding", func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/mcp", "/%6Dcp" }, now, ErrBadSignature},
		{"other host", func(r *http.Request) { r.Host = "other.internal:3001" }, now, ErrBadSignature},
		{"other port", func(r *http.Request) { r.Host = "tools.internal:3002" }, now, ErrBadSignature},
		{"host in another letter case", func(r *http.Request) { r.Host = "TOOLS.Internal:3001" }, now, nil},
		{"query (not covered)", func(r *http.Request) { r.URL.RawQuery = "x=1" }, now, nil},
		// Headers an attacker could add next to a replayed, signed set.
		{"signed header twice", func(r *http.Request) { r.Header.Add(HeaderRoles, "admin") }, now, ErrBadSignature},
		{"signature twice", func(r *http.Request) { r.Header.Add(HeaderSignature, "t=1,v2=x") }, now, ErrBadSignature},
		{"identity header in another spelling", func(r *http.Request) { r.Header["X_auth_roles"] = []string{"admin"} }, now, ErrBadSignature},
		{"identity header the gateway never sends", func(r *http.Request) { r.Header.Set("X-Auth-Request-Groups", "admin") }, now, ErrBadSignature},
	}
	for _, tt := range tests {
		r := signed()
		tt.mod(r)
		err := Verify(r, secret, tt.at, time.Minute)
		if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := Verify(signed(), nil, now, time.Minute); !errors.Is(err, ErrNoSecret) {
		t.Errorf("empty secret: got %v, want ErrNoSecret", err)
	}
	if err := Verify(signed(), []byte("another secret of thirty-two bytes!"), now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong secret: got %v", err)
	}
}

// signV1 is version 1 of the signature, which covered the identity headers only.
func signV1(h http.Header, secret []byte, now time.Time) {
	t := strconv.FormatInt(now.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("mcp-gateway-identity-v1\n" + t + "\n"))
	for _, name := range signed {
		m.Write([]byte(name + ":" + h.Get(name) + "\n"))
	}
	h.Set(HeaderSignature, "t="+t+",v1="+base64.RawURLEncoding.EncodeToString(m.Sum(nil)))
}

// TestVerifyRefusesVersion1: a correct version 1 signature is refused, with an error that says which version it is.
func TestVerifyRefusesVersion1(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	r := httptest.NewRequest(http.MethodPost, "http://tools.internal:3001/mcp", nil)
	(&Identity{UserID: "user_1"}).Set(r.Header)
	signV1(r.Header, secret, now)
	err := Verify(r, secret, now, time.Minute)
	if !errors.Is(err, ErrUnsupportedVersion) || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("version 1 signature: got %v, want ErrUnsupportedVersion and ErrBadSignature", err)
	}
}

// TestSignatureVector pins one signature, byte for byte, so that an upstream in another language can check its
// implementation against it. The README quotes it.
func TestSignatureVector(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:3001/mcp", nil)
	(&Identity{UserID: "user_1", Email: "ada@example.com", Roles: []string{"admin", "member"},
		Scopes: []string{"openid", "email"}, Claims: []byte(`{"sub":"user_1"}`)}).Set(r.Header)
	Sign(r, []byte("0123456789abcdef0123456789abcdef"), time.Unix(1_800_000_000, 0))
	const want = "t=1800000000,v2=WKLNGpw7VN_syq2tCw7eo5N2KqI1gfI-tPQPjmQ5Wb0"
	if got := r.Header.Get(HeaderSignature); got != want {
		t.Errorf("signature: got %s, want %s", got, want)
	}
}

// TestSignVerifyOverHTTP signs an outgoing request as the gateway does (before the client adds Host) and verifies it
// as the upstream receives it from a real server: both sides compute the same method, host and path, escapes included.
func TestSignVerifyOverHTTP(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	got := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- Verify(r, secret, now, time.Minute)
	}))
	t.Cleanup(srv.Close)
	for _, tt := range []struct{ name, path, host string }{
		{"plain", "/mcp", ""},
		{"escaped path", "/a%2Fb/c%20d/%7Euser", ""},
		{"empty path", "", ""},
		{"Host override in capitals", "/mcp", "Tools.Example:8080"},
	} {
		req, err := http.NewRequest(http.MethodPost, srv.URL+tt.path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tt.host
		(&Identity{UserID: "user_1", Name: "Ada"}).Set(req.Header)
		Sign(req, secret, now)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if err := <-got; err != nil {
			t.Errorf("%s: Verify at the server: %v", tt.name, err)
		}
	}
}

// BenchmarkSign is the signing the gateway does on every forwarded request when a secret is set.
func BenchmarkSign(b *testing.B) {
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:3001/mcp", nil)
	(&Identity{UserID: "user_01HXYZ", Email: "ada@example.com", OrgID: "org_01HXYZ", SessionID: "session_01HXYZ",
		ClientID: "client_01HXYZ", Scopes: []string{"openid", "email"}, Claims: []byte(strings.Repeat("c", 400))}).Set(r.Header)
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	for b.Loop() {
		Sign(r, secret, now)
	}
}
