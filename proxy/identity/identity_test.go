package identity

import (
	"errors"
	"net/http"
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

func TestSignVerify(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	signed := func() http.Header {
		h := http.Header{}
		(&Identity{UserID: "user_1", Email: "a@example.com"}).Set(h)
		Sign(h, secret, now)
		return h
	}
	if err := Verify(signed(), secret, now.Add(30*time.Second), time.Minute); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	tests := []struct {
		name string
		mod  func(h http.Header)
		at   time.Time
		want error
	}{
		{"missing", func(h http.Header) { h.Del(HeaderSignature) }, now, ErrNoSignature},
		{"changed user", func(h http.Header) { h.Set(HeaderUserID, "user_2") }, now, ErrBadSignature},
		{"added email", func(h http.Header) { h.Set(HeaderOrgID, "org_x") }, now, ErrBadSignature},
		{"changed time", func(h http.Header) {
			h.Set(HeaderSignature, strings.Replace(h.Get(HeaderSignature), "t=18", "t=19", 1))
		}, now, ErrBadSignature},
		{"garbage", func(h http.Header) { h.Set(HeaderSignature, "v1=abc") }, now, ErrBadSignature},
		{"stale", func(http.Header) {}, now.Add(2 * time.Minute), ErrStale},
		{"from the future", func(http.Header) {}, now.Add(-2 * time.Minute), ErrStale},
	}
	for _, tt := range tests {
		h := signed()
		tt.mod(h)
		if err := Verify(h, secret, tt.at, time.Minute); !errors.Is(err, tt.want) {
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
