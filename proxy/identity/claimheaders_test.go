package identity

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseClaimHeaders(t *testing.T) {
	t.Parallel()
	m, err := ParseClaimHeaders(" x-user-email=email, X-Tenant = org_id ,X-Groups=groups,X-Plan=billing.plan,")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Names(), []string{"X-User-Email", "X-Tenant", "X-Groups", "X-Plan"}; !slices.Equal(got, want) {
		t.Errorf("names: got %q, want %q", got, want)
	}
	if got, want := m.Claims(), []string{"email", "org_id", "groups", "billing.plan"}; !slices.Equal(got, want) {
		t.Errorf("claims: got %q, want %q", got, want)
	}
	if empty, err := ParseClaimHeaders("  "); err != nil || len(empty.Names()) != 0 {
		t.Errorf("empty spec: got %v, %v", empty.Names(), err)
	}
	refused := []struct{ spec, why string }{
		{"X-Tenant", "want Header-Name=claim"},
		{"X-Tenant=", "want Header-Name=claim"},
		{"X Tenant=org_id", "not a header name"},
		{"X-Tenant:=org_id", "not a header name"},
		{"1-Tenant=org_id", "not a header name"},
		{"X-Tenant=a..b", "empty part"},
		{"X-Tenant=.a", "empty part"},
		{"Connection=sub", "hop-by-hop"},
		{"Transfer-Encoding=sub", "hop-by-hop"},
		{"TE=sub", "hop-by-hop"},
		{"Upgrade=sub", "hop-by-hop"},
		{"Host=sub", "identifies the upstream"},
		{"Authorization=sub", "credential"},
		{"Proxy-Authorization=sub", "credential"},
		{"Cookie=sub", "credential"},
		{"Content-Type=sub", "content-*"},
		{"Content-Length=sub", "content-*"},
		{"traceparent=sub", "trace context"},
		{"X-Request-Id=sub", "set by the gateway"},
		{"X-Forwarded-For=sub", "x-forwarded-*"},
		{"X-Forwarded-Tenant=org_id", "x-forwarded-*"},
		{"X-Auth-Tenant=org_id", "x-auth-*"},
		{"X-Auth-User-Id=sub", "x-auth-*"},
		{"Mcp-Session-Id=sid", "mcp-*"},
		{"Origin=sub", "DNS rebinding"},
		{"X-Tenant=org_id,x_tenant=tid", "not a header name"},
		{"X-Tenant=org_id,X-TENANT=tid", "named twice"},
	}
	for _, tt := range refused {
		_, err := ParseClaimHeaders(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("%q: got %v, want an error saying %q", tt.spec, err, tt.why)
		}
	}
	// Every problem is reported at once.
	_, err = ParseClaimHeaders("Host=sub,Cookie=sub,X-Ok=sub")
	if err == nil || !strings.Contains(err.Error(), "Host") || !strings.Contains(err.Error(), "Cookie") {
		t.Errorf("two problems: got %v", err)
	}
	var many []string
	for i := range MaxClaimHeaders + 1 {
		many = append(many, "X-C"+strings.Repeat("a", i+1)+"=sub")
	}
	if _, err := ParseClaimHeaders(strings.Join(many, ",")); err == nil {
		t.Errorf("%d headers: accepted", len(many))
	}
}

func TestClaimHeadersSet(t *testing.T) {
	t.Parallel()
	m, err := ParseClaimHeaders("X-User-Email=email,X-Tenant=org_id,X-Groups=groups,X-Plan=billing.plan,X-Ns=https://example.com/role," +
		"X-Level=level,X-Admin=admin,X-Address=address,X-Matrix=matrix,X-Missing=nothing,X-Null=nul,X-Big=big")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		claims string
		want   map[string]string // header → value; absent from the map: absent
		err    bool
	}{
		{"values", `{"email":"ada@example.com","org_id":" org_1 ","groups":["eng","ops",null,""],"billing":{"plan":"pro"},` +
			`"https://example.com/role":"admin","level":3,"admin":true,"big":12345678901234567890,"nul":null}`,
			map[string]string{"X-User-Email": "ada@example.com", "X-Tenant": "org_1", "X-Groups": "eng,ops", "X-Plan": "pro",
				"X-Ns": "admin", "X-Level": "3", "X-Admin": "true", "X-Big": "12345678901234567890"}, false},
		{"numbers in an array", `{"groups":[1,2.5,true]}`, map[string]string{"X-Groups": "1,2.5,true"}, false},
		{"object", `{"address":{"country": "NL", "locality":"Delft"}}`, map[string]string{"X-Address": `{"country":"NL","locality":"Delft"}`}, false},
		{"array of arrays", `{"matrix":[[1,2],[3]]}`, map[string]string{"X-Matrix": `[[1,2],[3]]`}, false},
		{"unverified e-mail", `{"email":"ada@example.com","email_verified":false}`, map[string]string{}, false},
		{"e-mail verified as a string", `{"email":"ada@example.com","email_verified":"true"}`, map[string]string{"X-User-Email": "ada@example.com"}, false},
		{"nested path through a string", `{"billing":"pro"}`, map[string]string{}, false},
		{"CR LF in a value", `{"org_id":"org_1\r\nX-Evil: 1"}`, nil, true},
		{"NUL in a value", `{"org_id":"org\u0000"}`, nil, true},
		{"comma in an item", `{"groups":["eng,admin"]}`, nil, true},
		{"LF in an item", `{"groups":["eng\nadmin"]}`, nil, true},
		{"white space at an item's end", `{"groups":["eng "]}`, nil, true},
		{"not JSON", `{`, nil, true},
	}
	for _, tt := range tests {
		h := http.Header{"X-Tenant": {"stale"}}
		err := m.Set(h, []byte(tt.claims))
		if tt.err {
			if !errors.Is(err, ErrClaimValue) && (err == nil || tt.name != "not JSON") {
				t.Errorf("%s: got %v, want ErrClaimValue", tt.name, err)
			}
			if err != nil && strings.Contains(err.Error(), "Evil") {
				t.Errorf("%s: the error quotes the value: %v", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		for _, name := range m.Names() {
			want, set := tt.want[name]
			got, present := h[name]
			switch {
			case set && (!present || len(got) != 1 || got[0] != want):
				t.Errorf("%s: %s: got %q, want %q", tt.name, name, got, want)
			case !set && present:
				t.Errorf("%s: %s: got %q, want absent", tt.name, name, got)
			}
		}
	}
	var none *ClaimHeaders
	if err := none.Set(http.Header{}, []byte(`not json`)); err != nil || none.Owns("X-Tenant") || none.Names() != nil {
		t.Error("a nil mapping maps something")
	}
}

func TestClaimHeadersOwnsEverySpelling(t *testing.T) {
	t.Parallel()
	m, err := ParseClaimHeaders("X-Tenant=org_id,X-User-Email=email")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"X-Tenant", "x-tenant", "X_TENANT", "x_Tenant", "X-User_Email", "x_user_email"} {
		if !m.Owns(name) {
			t.Errorf("Owns(%q) = false", name)
		}
	}
	for _, name := range []string{"X-Tenants", "X-Tenan", "Tenant", "X-User-Emails"} {
		if m.Owns(name) {
			t.Errorf("Owns(%q) = true", name)
		}
	}
}

// mappedRequest signs a request as the gateway does with a mapping: the built-in identity, the mapped headers, v3.
func mappedRequest(t *testing.T, m *ClaimHeaders, claims string, secret []byte, now time.Time) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://tools.internal:3001/mcp", nil)
	(&Identity{UserID: "user_1", Claims: []byte(claims)}).Set(r.Header)
	if err := m.Set(r.Header, []byte(claims)); err != nil {
		t.Fatal(err)
	}
	Sign(r, secret, now, m.Names()...)
	return r
}

func TestSignVerifyVersion3(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	m, err := ParseClaimHeaders("X-Tenant=org_id,X-Groups=groups")
	if err != nil {
		t.Fatal(err)
	}
	const claims = `{"sub":"user_1","org_id":"org_1"}` // no groups: X-Groups absent, but listed
	signed := func() *http.Request { return mappedRequest(t, m, claims, secret, now) }
	r := signed()
	if got := r.Header.Get(HeaderSignature); !strings.HasPrefix(got, "t=1800000000,h=X-Tenant;X-Groups,v3=") {
		t.Fatalf("signature: got %s", got)
	}
	if err := Verify(r, secret, now, time.Minute); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	if !Covers(r, "X-Tenant") || !Covers(r, "x_groups") || Covers(r, "X-Other") {
		t.Error("Covers: wrong answer for a listed or unlisted name")
	}
	tests := []struct {
		name string
		mod  func(r *http.Request)
	}{
		{"changed mapped value", func(r *http.Request) { r.Header.Set("X-Tenant", "org_2") }},
		{"removed mapped header", func(r *http.Request) { r.Header.Del("X-Tenant") }},
		{"added the absent mapped header", func(r *http.Request) { r.Header.Set("X-Groups", "admin") }},
		{"mapped header twice", func(r *http.Request) { r.Header.Add("X-Tenant", "org_2") }},
		{"mapped header in another spelling", func(r *http.Request) { r.Header["X_Tenant"] = []string{"org_2"} }},
		{"mapped header in lower case", func(r *http.Request) { r.Header["x-groups"] = []string{"admin"} }},
		{"name dropped from the list", func(r *http.Request) {
			r.Header.Set(HeaderSignature, strings.Replace(r.Header.Get(HeaderSignature), ";X-Groups", "", 1))
		}},
		{"version 3 relabelled 2", func(r *http.Request) {
			v := r.Header.Get(HeaderSignature)
			r.Header.Set(HeaderSignature, v[:strings.Index(v, ",h=")]+",v2="+v[strings.Index(v, "v3=")+3:])
		}},
		{"built-in header listed", func(r *http.Request) {
			r.Header.Set(HeaderSignature, strings.Replace(r.Header.Get(HeaderSignature), "h=X-Tenant", "h=X-Auth-Email;X-Tenant", 1))
		}},
		{"non-canonical listed name", func(r *http.Request) {
			r.Header.Set(HeaderSignature, strings.Replace(r.Header.Get(HeaderSignature), "h=X-Tenant", "h=x-tenant", 1))
		}},
		{"empty list", func(r *http.Request) {
			r.Header.Set(HeaderSignature, strings.Replace(r.Header.Get(HeaderSignature), "h=X-Tenant;X-Groups", "h=", 1))
		}},
		{"other path", func(r *http.Request) { r.URL.Path = "/admin" }},
	}
	for _, tt := range tests {
		r := signed()
		tt.mod(r)
		if err := Verify(r, secret, now, time.Minute); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: got %v, want ErrBadSignature", tt.name, err)
		}
	}
	// A version 2 signature covers no mapped header: Verify passes (the built-in headers are intact), and Covers is
	// how an upstream that reads X-Tenant tells that this one was not set by the gateway.
	v2 := signedRequest(Identity{UserID: "user_1"}, secret, now)
	v2.Header.Set("X-Tenant", "org_forged")
	if err := Verify(v2, secret, now, time.Minute); err != nil {
		t.Fatalf("version 2: %v", err)
	}
	if Covers(v2, "X-Tenant") {
		t.Error("Covers: a version 2 signature covers X-Tenant")
	}
}

// TestSignatureVectorVersion3 pins a version 3 signature for upstreams in other languages; docs/identity.md quotes it.
func TestSignatureVectorVersion3(t *testing.T) {
	t.Parallel()
	m, err := ParseClaimHeaders("X-Tenant=org_id,X-Groups=groups")
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:3001/mcp", nil)
	(&Identity{UserID: "user_1", Claims: []byte(`{"sub":"user_1"}`)}).Set(r.Header)
	if err := m.Set(r.Header, []byte(`{"sub":"user_1","org_id":"org_1"}`)); err != nil {
		t.Fatal(err)
	}
	Sign(r, []byte("0123456789abcdef0123456789abcdef"), time.Unix(1_800_000_000, 0), m.Names()...)
	const want = "t=1800000000,h=X-Tenant;X-Groups,v3=GxVxUewkYkImjF0KuHRHPnMbDPaidbCDLPOZMSI-7Ss"
	if got := r.Header.Get(HeaderSignature); got != want {
		t.Errorf("signature: got %s, want %s", got, want)
	}
}

func FuzzParseClaimHeaders(f *testing.F) {
	for _, s := range []string{"X-Tenant=org_id", "x_a=b.c,X-A=d", "Host=sub", "X-Auth-X=a", "=", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		m, err := ParseClaimHeaders(spec)
		if err != nil {
			return
		}
		for _, name := range m.Names() {
			if refusedHeaderReason(name) != "" || IsIdentityHeader(name) || !validHeaderName(name) {
				t.Fatalf("%q accepted %q", spec, name)
			}
			if !m.Owns(strings.ToLower(strings.ReplaceAll(name, "-", "_"))) {
				t.Fatalf("%q: Owns misses another spelling of %q", spec, name)
			}
		}
	})
}

// TestClaimHeaderValuesAreSendable: every value Set accepts must go out on a real request. A DEL (0x7f) may stand
// unescaped inside a JSON string, and an object's compact JSON keeps it as it is: Set accepted it, and then the
// transport refused the request ("invalid header field value"), so the token's holder got a 502 on every call instead
// of a refusal at verification.
func TestClaimHeaderValuesAreSendable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	m, err := ParseClaimHeaders("X-Address=address,X-Groups=groups,X-Tenant=org_id")
	if err != nil {
		t.Fatal(err)
	}
	for _, claims := range []string{
		"{\"address\":{\"street\":\"a\x7fb\"}}",
		"{\"groups\":[{\"name\":\"a\x7fb\"}]}",
		"{\"groups\":[\"a\x7fb\"]}",
		"{\"org_id\":\"a\x7fb\"}",
		"{\"address\":{\"street\":\"\xc2\x85 next line, \u2028 line separator, \xff invalid\"}}",
	} {
		h := http.Header{}
		if err := m.Set(h, []byte(claims)); err != nil {
			if !errors.Is(err, ErrClaimValue) {
				t.Errorf("%q: got %v, want nil or ErrClaimValue", claims, err)
			}
			continue
		}
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header = h
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Errorf("%q: Set accepted a value the transport refuses: %v", claims, err)
			continue
		}
		resp.Body.Close()
	}
}
