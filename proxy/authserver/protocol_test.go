package authserver

import (
	"encoding/base64"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testSealer() *sealer { return newSealer([]byte("0123456789abcdef0123456789abcdef")) }

func TestSealOpen(t *testing.T) {
	t.Parallel()
	s := testSealer()
	in := wrappedCode{Code: "up", ClientID: "c", RedirectURI: "http://127.0.0.1/cb", Exp: 42}
	sealed := s.seal("code", in)
	var out wrappedCode
	if err := s.open("code", sealed, &out); err != nil || out != in {
		t.Fatalf("open: got %+v, %v; want %+v", out, err, in)
	}
	if err := s.open("state", sealed, &out); err == nil {
		t.Error("a code opened as a state")
	}
	if err := testSealer().open("code", sealed, &out); err != nil {
		t.Errorf("the same secret must open it (replicas): %v", err)
	}
	if err := newSealer([]byte("another secret of thirty-two bytes!")).open("code", sealed, &out); err == nil {
		t.Error("another secret opened it")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(sealed)
	raw[len(raw)-1] ^= 1
	if err := s.open("code", base64.RawURLEncoding.EncodeToString(raw), &out); err == nil {
		t.Error("a tampered value opened")
	}
	for _, bad := range []string{"", "!!", "AAAA", strings.Repeat("A", 100)} {
		if err := s.open("code", bad, &out); err == nil {
			t.Errorf("open(%q) succeeded", bad)
		}
	}
}

func TestClientID(t *testing.T) {
	t.Parallel()
	s := testSealer()
	reg := registration{Name: "app", RedirectURIs: []string{"http://127.0.0.1:1/cb"}, AuthMethod: "none", IssuedAt: 1}
	id := s.clientID(reg)
	got, oe := s.openClientID(id)
	if oe != nil || !slices.Equal(got.RedirectURIs, reg.RedirectURIs) || got.Name != "app" {
		t.Fatalf("openClientID: got %+v, %v", got, oe)
	}
	for _, forged := range []string{"", "client_01ABC", clientIDPrefix + "AAAA", id + "x", strings.TrimPrefix(id, clientIDPrefix),
		clientIDPrefix + s.seal("state", reg), clientIDPrefix + s.seal("client", registration{Name: "empty"})} {
		if _, oe := s.openClientID(forged); oe == nil || oe.Code != "invalid_client" {
			t.Errorf("openClientID(%.40q): got %v, want invalid_client", forged, oe)
		}
	}
	if a, b := s.clientSecret(id), s.clientSecret(id+"x"); a == b || len(a) < 40 {
		t.Errorf("client secrets: %q %q", a, b)
	}
}

// TestClientIDsKeepOpening: a client id and secret issued before this package existed (by the gateway at 9d926a4,
// under the same key) still open and verify. Clients keep their registration: a change to the sealing or the key
// derivation would make every one of them register again.
func TestClientIDsKeepOpening(t *testing.T) {
	t.Parallel()
	const (
		id     = "mcpgw_FVB6PHJSjnD8O31PgXefRYSRzMKSjQDSjJzlEMrR23Q7rbQjZqOIfIZ1dVBkSMH5C-bqpViTBUv8_ROQJq3U_wY-OyZWp7C70ytO5AgDoFn2E4gOxFoZuhKfw4G9NdbuJtknnGbLfumZPPGP1w4"
		secret = "IVoyFu37y3pnSxRibplQDHj8kepaE9exLwBC_eDwvzQ"
	)
	s := testSealer()
	reg, oe := s.openClientID(id)
	want := registration{Name: "app", RedirectURIs: []string{"http://127.0.0.1:1/cb"}, AuthMethod: "client_secret_basic", IssuedAt: 1_800_000_000}
	if oe != nil || reg.Name != want.Name || !slices.Equal(reg.RedirectURIs, want.RedirectURIs) || reg.AuthMethod != want.AuthMethod || reg.IssuedAt != want.IssuedAt {
		t.Fatalf("openClientID: got %+v, %v; want %+v", reg, oe, want)
	}
	if got := s.clientSecret(id); got != secret {
		t.Errorf("client secret: got %q, want %q", got, secret)
	}
}

func TestParseRegistration(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name, body string
		wantErr    string
		method     string
	}{
		{"public", `{"client_name":"Claude","redirect_uris":["http://localhost:33418/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"scope":"openid"}`, "", "none"},
		{"default method is basic", `{"redirect_uris":["https://app.example.com/cb"]}`, "", "client_secret_basic"},
		{"post", `{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"],"token_endpoint_auth_method":"client_secret_post"}`, "", "client_secret_post"},
		{"not json", `redirect_uris=x`, "invalid_client_metadata", ""},
		{"null", `null`, "invalid_client_metadata", ""},
		{"no redirect uris", `{"client_name":"x"}`, "invalid_redirect_uri", ""},
		{"empty redirect uris", `{"redirect_uris":[]}`, "invalid_redirect_uri", ""},
		{"redirect uri not a string", `{"redirect_uris":[1]}`, "invalid_redirect_uri", ""},
		{"http not loopback", `{"redirect_uris":["http://evil.example.com/cb"]}`, "invalid_redirect_uri", ""},
		{"fragment", `{"redirect_uris":["https://app.example.com/cb#x"]}`, "invalid_redirect_uri", ""},
		{"javascript", `{"redirect_uris":["javascript:alert(1)"]}`, "invalid_redirect_uri", ""},
		{"relative", `{"redirect_uris":["/cb"]}`, "invalid_redirect_uri", ""},
		{"user info", `{"redirect_uris":["https://a@app.example.com/cb"]}`, "invalid_redirect_uri", ""},
		{"client_credentials", `{"redirect_uris":["https://app.example.com/cb"],"grant_types":["client_credentials"]}`, "invalid_client_metadata", ""},
		{"implicit", `{"redirect_uris":["https://app.example.com/cb"],"response_types":["token"]}`, "invalid_client_metadata", ""},
		{"private_key_jwt", `{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, "invalid_client_metadata", ""},
		{"name not a string", `{"redirect_uris":["https://app.example.com/cb"],"client_name":7}`, "invalid_client_metadata", ""},
		// Kinds of redirect URIs real clients register together.
		{"VS Code", `{"redirect_uris":["https://vscode.dev/redirect","https://insiders.vscode.dev/redirect","http://127.0.0.1/","http://127.0.0.1:33418/"],"token_endpoint_auth_method":"none"}`, "", "none"},
		{"Cursor", `{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"],"token_endpoint_auth_method":"none"}`, "", "none"},
		{"reverse DNS", `{"redirect_uris":["com.example.app:/cb","com.example.app:/oauth2redirect"],"token_endpoint_auth_method":"none"}`, "", "none"},
		{"http on ::1", `{"redirect_uris":["http://[::1]:8080/cb"],"token_endpoint_auth_method":"none"}`, "", "none"},
		// Schemes a browser or the operating system runs or shows: refused, in any case.
		{"data", `{"redirect_uris":["data:text/html,<script>alert(1)</script>"]}`, "invalid_redirect_uri", ""},
		{"vbscript", `{"redirect_uris":["vbscript:msgbox(1)"]}`, "invalid_redirect_uri", ""},
		{"JavaScript upper case", `{"redirect_uris":["JavaScript:alert(1)"]}`, "invalid_redirect_uri", ""},
		{"file", `{"redirect_uris":["file:///etc/passwd"]}`, "invalid_redirect_uri", ""},
		{"view-source", `{"redirect_uris":["view-source:https://a.example/"]}`, "invalid_redirect_uri", ""},
		{"ms-msdt", `{"redirect_uris":["ms-msdt:/id PCWDiagnostic"]}`, "invalid_redirect_uri", ""},
		{"ms-officecmd", `{"redirect_uris":["ms-officecmd:x"]}`, "invalid_redirect_uri", ""},
		{"search-ms", `{"redirect_uris":["search-ms:query=x&crumb=location:\\\\evil\\s"]}`, "invalid_redirect_uri", ""},
		{"intent", `{"redirect_uris":["intent://x#Intent;end"]}`, "invalid_redirect_uri", ""},
		{"blob", `{"redirect_uris":["blob:https://a.example/1"]}`, "invalid_redirect_uri", ""},
		{"mailto", `{"redirect_uris":["mailto:a@example.com"]}`, "invalid_redirect_uri", ""},
		{"one bad among good", `{"redirect_uris":["https://a.example/cb","ms-msdt:x"]}`, "invalid_redirect_uri", ""},
		{"http on a LAN address", `{"redirect_uris":["http://192.168.1.2/cb"]}`, "invalid_redirect_uri", ""},
		// The consent page shows the redirect URI for the person to check: a Unicode host could imitate another's
		// (Cyrillic е, х, а), or hide a dot (U+3002, which browsers read as one).
		{"look-alike host", `{"redirect_uris":["https://ехаmple.com/cb"]}`, "invalid_redirect_uri", ""},
		{"ideographic full stop", `{"redirect_uris":["https://app.example.com。evil.example/cb"]}`, "invalid_redirect_uri", ""},
		{"internationalized host in its ASCII form", `{"redirect_uris":["https://xn--mple-43da4b.com/cb"],"token_endpoint_auth_method":"none"}`, "", "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, meta, oe := parseRegistration([]byte(tc.body), now)
			if tc.wantErr != "" {
				if oe == nil || oe.Code != tc.wantErr || oe.Status != 400 {
					t.Fatalf("got %v, want %s", oe, tc.wantErr)
				}
				return
			}
			if oe != nil {
				t.Fatal(oe)
			}
			if reg.AuthMethod != tc.method || meta["token_endpoint_auth_method"] != tc.method {
				t.Errorf("method: got %q / %v, want %q", reg.AuthMethod, meta["token_endpoint_auth_method"], tc.method)
			}
			if reg.IssuedAt != now.Unix() {
				t.Errorf("issued at: got %d", reg.IssuedAt)
			}
			if uris, _ := jsonStrings(meta["redirect_uris"]); !slices.Equal(uris, reg.RedirectURIs) {
				t.Errorf("redirect_uris echo: got %v, want %v", meta["redirect_uris"], reg.RedirectURIs)
			}
		})
	}
	_, meta, _ := parseRegistration([]byte(`{"redirect_uris":["https://a.example/cb"],"client_id":"mine","client_secret":"s","registration_access_token":"t","logo_uri":"https://a.example/l.png"}`), now)
	for _, k := range []string{"client_id", "client_secret", "registration_access_token"} {
		if _, ok := meta[k]; ok {
			t.Errorf("the client chose %s", k)
		}
	}
	if meta["logo_uri"] != "https://a.example/l.png" {
		t.Errorf("other metadata is not echoed: %v", meta)
	}
}

func TestRedirectURIMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reg, got string
		want     bool
	}{
		{"https://app.example.com/cb", "https://app.example.com/cb", true},
		{"https://app.example.com/cb", "https://app.example.com/cb/", false},
		{"https://app.example.com/cb", "https://app.example.com:8443/cb", false},
		{"https://app.example.com/cb", "https://APP.example.com/cb", false},
		{"https://app.example.com/cb", "https://app.example.com/cb?x=1", false},
		{"http://127.0.0.1:1234/cb", "http://127.0.0.1:5678/cb", true},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5678/cb", true},
		{"http://localhost:1/cb", "http://localhost:2/cb", true},
		{"http://[::1]:1/cb", "http://[::1]:2/cb", true},
		{"http://127.0.0.1:1/cb", "http://localhost:1/cb", false},
		{"http://127.0.0.1:1/cb", "http://127.0.0.1:2/other", false},
		{"http://127.0.0.1:1/cb", "http://127.0.0.1:2/cb?x=1", false},
		{"http://127.0.0.1:1/cb", "http://127.0.0.1.evil.com:2/cb", false},
		{"http://127.0.0.1:1/cb", "https://127.0.0.1:2/cb", false},
		{"http://127.0.0.1:1/cb", "http://u@127.0.0.1:2/cb", false},
		{"cursor://x/cb", "cursor://x/cb", true},
		{"cursor://x/cb", "cursor://y/cb", false},
	} {
		if got := redirectURIMatches(tc.reg, tc.got); got != tc.want {
			t.Errorf("redirectURIMatches(%q, %q): got %t, want %t", tc.reg, tc.got, got, tc.want)
		}
	}
	two := registration{RedirectURIs: []string{"https://a.example/1", "https://a.example/2"}}
	if _, _, ok := resolveRedirectURI(two, ""); ok {
		t.Error("no redirect_uri with two registered must fail")
	}
	if _, got, ok := resolveRedirectURI(registration{RedirectURIs: []string{"https://a.example/1"}}, ""); !ok || got != "https://a.example/1" {
		t.Errorf("the only registered redirect URI: got %q, %t", got, ok)
	}
	// The registered entry a loopback URI matched, without the port the request chose: consent is remembered for it.
	vscode := registration{RedirectURIs: []string{"https://vscode.dev/redirect", "http://127.0.0.1/", "http://127.0.0.1:33418/"}}
	if reg, got, ok := resolveRedirectURI(vscode, "http://127.0.0.1:51000/"); !ok || reg != "http://127.0.0.1/" || got != "http://127.0.0.1:51000/" {
		t.Errorf("loopback on another port: got %q %q %t", reg, got, ok)
	}
}

func TestCheckAuthorizeParams(t *testing.T) {
	t.Parallel()
	good := url.Values{"response_type": {"code"}, "code_challenge": {"abc"}, "code_challenge_method": {"S256"}}
	if oe := checkAuthorizeParams(good); oe != nil {
		t.Fatal(oe)
	}
	for name, edit := range map[string]func(url.Values){
		"token":          func(q url.Values) { q.Set("response_type", "token") },
		"no pkce":        func(q url.Values) { q.Del("code_challenge") },
		"plain":          func(q url.Values) { q.Set("code_challenge_method", "plain") },
		"no method":      func(q url.Values) { q.Del("code_challenge_method") },
		"repeated state": func(q url.Values) { q["state"] = []string{"a", "b"} },
		"request object": func(q url.Values) { q.Set("request", "eyJ.x.y") },
		"request_uri":    func(q url.Values) { q.Set("request_uri", "https://evil.example/r") },
		"rich authorization": func(q url.Values) {
			q.Set("authorization_details", `[{"type":"payment"}]`)
		},
		"claims":        func(q url.Values) { q.Set("claims", "{}") },
		"audience":      func(q url.Values) { q.Set("audience", "https://graph.example.com/") },
		"fragment mode": func(q url.Values) { q.Set("response_mode", "fragment") },
	} {
		q := url.Values{}
		for k, v := range good {
			q[k] = slices.Clone(v)
		}
		edit(q)
		if oe := checkAuthorizeParams(q); oe == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestUpstreamAuthorizeURL(t *testing.T) {
	t.Parallel()
	in := url.Values{
		"response_type": {"code"}, "client_id": {"mcpgw_x"}, "redirect_uri": {"http://127.0.0.1:9/cb"}, "state": {"client-state"},
		"code_challenge": {"ch"}, "code_challenge_method": {"S256"}, "scope": {"openid offline_access"},
		"resource": {"https://mcp.example.com/mcp"}, "prompt": {"consent"}, "login_hint": {"a@example.com"}, "x-custom": {"1", "2"},
	}
	got, err := upstreamAuthorizeURL("https://as.example.com/oauth2/authorize?tenant=t1", in, "client_STATIC", "https://mcp.example.com/callback", "sealed")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(got)
	if u.Scheme+"://"+u.Host+u.Path != "https://as.example.com/oauth2/authorize" {
		t.Errorf("endpoint: %s", got)
	}
	q := u.Query()
	want := url.Values{
		"response_type": {"code"}, "client_id": {"client_STATIC"}, "redirect_uri": {"https://mcp.example.com/callback"}, "state": {"sealed"},
		"code_challenge": {"ch"}, "code_challenge_method": {"S256"}, "scope": {"openid offline_access"},
		"resource": {"https://mcp.example.com/mcp"}, "prompt": {"consent"}, "login_hint": {"a@example.com"}, "x-custom": {"1", "2"},
		"tenant": {"t1"},
	}
	if q.Encode() != want.Encode() {
		t.Errorf("query:\n got %s\nwant %s", q.Encode(), want.Encode())
	}
	if in.Get("client_id") != "mcpgw_x" {
		t.Error("the input was modified")
	}
	if _, err := upstreamAuthorizeURL("/relative", in, "c", "cb", "s"); err == nil {
		t.Error("a relative endpoint was accepted")
	}
}

func TestClientRedirectURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, uri, state string
		p                callbackParams
		want             url.Values
	}{
		{"code", "http://127.0.0.1:9/cb", "s1", callbackParams{Code: "wrapped"},
			url.Values{"code": {"wrapped"}, "state": {"s1"}, "iss": {"https://gw.example"}}},
		{"keeps the uri's query, replaces forged params", "https://app.example/cb?tenant=a&code=old&iss=x", "", callbackParams{Code: "c"},
			url.Values{"tenant": {"a"}, "code": {"c"}, "iss": {"https://gw.example"}}},
		{"error", "http://127.0.0.1:9/cb", "s2", callbackParams{Error: "access_denied", ErrorDescription: "no"},
			url.Values{"error": {"access_denied"}, "error_description": {"no"}, "state": {"s2"}, "iss": {"https://gw.example"}}},
		{"error description kept to RFC 6749 characters and length", "http://127.0.0.1:9/cb", "", callbackParams{Error: "x\"y", ErrorDescription: "a\nb\"c" + strings.Repeat("d", 300)},
			url.Values{"error": {"server_error"}, "error_description": {"a b c" + strings.Repeat("d", maxErrorDescription-5)}, "iss": {"https://gw.example"}}},
		{"no error_uri, even from the redirect URI", "https://app.example/cb?error_uri=https://evil.example", "", callbackParams{Error: "e"},
			url.Values{"error": {"e"}, "iss": {"https://gw.example"}}},
	} {
		got := clientRedirectURL(tc.uri, tc.state, "https://gw.example", tc.p)
		u, _ := url.Parse(got)
		if u.Query().Encode() != tc.want.Encode() || !strings.HasPrefix(got, strings.SplitN(tc.uri, "?", 2)[0]+"?") {
			t.Errorf("%s: got %s, want query %s", tc.name, got, tc.want.Encode())
		}
	}
	if got := oauthErrorCode("access_denied"); got != "access_denied" {
		t.Errorf("oauthErrorCode: %q", got)
	}
	for _, bad := range []string{"", "a\"b", "é", strings.Repeat("x", 101), "a\nb"} {
		if got := oauthErrorCode(bad); got != "server_error" {
			t.Errorf("oauthErrorCode(%q): %q", bad, got)
		}
	}
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func TestParseTokenRequest(t *testing.T) {
	t.Parallel()
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, ct, body, auth string
		wantErr              string
		wantID, wantMethod   string
		wantSecret           string
	}{
		{"public form", form, "grant_type=authorization_code&code=c&client_id=mcpgw_a&code_verifier=v", "", "", "mcpgw_a", "none", ""},
		{"post", form, "grant_type=refresh_token&refresh_token=r&client_id=mcpgw_a&client_secret=s3", "", "", "mcpgw_a", "client_secret_post", "s3"},
		{"basic", form, "grant_type=refresh_token&refresh_token=r", basic("mcpgw_a", "s:3 +"), "", "mcpgw_a", "client_secret_basic", "s:3 +"},
		{"basic with the same client_id in the body", form, "grant_type=refresh_token&client_id=mcpgw_a", basic("mcpgw_a", "s"), "", "mcpgw_a", "client_secret_basic", "s"},
		{"json", "application/json; charset=utf-8", `{"grant_type":"authorization_code","code":"c","client_id":"mcpgw_a","code_verifier":"v"}`, "", "", "mcpgw_a", "none", ""},
		{"no content type is a form", "", "grant_type=refresh_token&client_id=mcpgw_a", "", "", "mcpgw_a", "none", ""},
		{"json array", "application/json", `{"client_id":["a"]}`, "", "invalid_request", "", "", ""},
		{"json not an object", "application/json", `[1]`, "", "invalid_request", "", "", ""},
		{"xml", "application/xml", `<x/>`, "", "invalid_request", "", "", ""},
		{"repeated", form, "grant_type=a&grant_type=b&client_id=x", "", "invalid_request", "", "", ""},
		{"no client", form, "grant_type=refresh_token", "", "invalid_client", "", "", ""},
		{"bearer", form, "grant_type=refresh_token", "Bearer x", "invalid_client", "", "", ""},
		{"bad basic", form, "grant_type=refresh_token", "Basic !!!", "invalid_client", "", "", ""},
		{"basic without colon", form, "grant_type=refresh_token", "Basic " + base64.StdEncoding.EncodeToString([]byte("abc")), "invalid_client", "", "", ""},
		{"two ways", form, "grant_type=refresh_token&client_secret=s", basic("mcpgw_a", "s"), "invalid_request", "", "", ""},
		{"two client ids", form, "grant_type=refresh_token&client_id=mcpgw_b", basic("mcpgw_a", "s"), "invalid_request", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, oe := parseTokenRequest(tc.ct, []byte(tc.body), tc.auth)
			if tc.wantErr != "" {
				if oe == nil || oe.Code != tc.wantErr {
					t.Fatalf("got %v, want %s", oe, tc.wantErr)
				}
				return
			}
			if oe != nil {
				t.Fatal(oe)
			}
			if tr.ClientID != tc.wantID || tr.Method != tc.wantMethod || tr.Secret != tc.wantSecret {
				t.Errorf("got %q %q %q, want %q %q %q", tr.ClientID, tr.Method, tr.Secret, tc.wantID, tc.wantMethod, tc.wantSecret)
			}
			if tr.Params.Has("client_id") || tr.Params.Has("client_secret") {
				t.Errorf("credentials left in the parameters: %v", tr.Params)
			}
		})
	}
}

func TestUpstreamTokenRequest(t *testing.T) {
	t.Parallel()
	cb := "https://gw.example/callback"
	res := "https://gw.example/mcp"
	pub := upstreamClient{ID: "client_UP", Callback: cb}
	basicC := upstreamClient{ID: "client_UP", Secret: "sec ret", AuthMethod: "client_secret_basic", Callback: cb}
	postC := upstreamClient{ID: "client_UP", Secret: "sec", AuthMethod: "client_secret_post", Callback: cb}
	code := url.Values{"grant_type": {"authorization_code"}, "code": {"wrapped"}, "redirect_uri": {"http://127.0.0.1:9/cb"},
		"code_verifier": {"v"}, "resource": {res}, "client_assertion": {"x"}, "audience": {"https://graph.example.com/"},
		"authorization_details": {"[]"}}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"r"}, "scope": {"openid"}}
	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"x"}}
	for _, tc := range []struct {
		name     string
		in       url.Values
		c        upstreamClient
		want     url.Values
		wantUser string
		wantPass string
	}{
		{"code, public", code, pub, url.Values{"grant_type": {"authorization_code"}, "code": {"UPCODE"}, "redirect_uri": {cb},
			"code_verifier": {"v"}, "resource": {res}, "client_id": {"client_UP"}}, "", ""},
		{"code, basic", code, basicC, url.Values{"grant_type": {"authorization_code"}, "code": {"UPCODE"}, "redirect_uri": {cb},
			"code_verifier": {"v"}, "resource": {res}}, "client_UP", "sec+ret"},
		{"code, post", code, postC, url.Values{"grant_type": {"authorization_code"}, "code": {"UPCODE"}, "redirect_uri": {cb},
			"code_verifier": {"v"}, "resource": {res}, "client_id": {"client_UP"}, "client_secret": {"sec"}}, "", ""},
		{"refresh without resource gets the gateway's, post", refresh, postC, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"r"}, "scope": {"openid"},
			"resource": {res}, "client_id": {"client_UP"}, "client_secret": {"sec"}}, "", ""},
		{"refresh, basic", refresh, basicC, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"r"}, "scope": {"openid"},
			"resource": {res}}, "client_UP", "sec+ret"},
		{"client_credentials never gets the secret (post)", cc, postC, url.Values{"grant_type": {"client_credentials"}, "scope": {"x"}, "resource": {res}, "client_id": {"client_UP"}}, "", ""},
		{"client_credentials never gets the secret (basic)", cc, basicC, url.Values{"grant_type": {"client_credentials"}, "scope": {"x"}, "resource": {res}, "client_id": {"client_UP"}}, "", ""},
	} {
		form, user, pass := upstreamTokenRequest(tc.in, "UPCODE", res, tc.c)
		if form.Encode() != tc.want.Encode() || user != tc.wantUser || pass != tc.wantPass {
			t.Errorf("%s:\n got %s user=%q pass=%q\nwant %s user=%q pass=%q", tc.name, form.Encode(), user, pass, tc.want.Encode(), tc.wantUser, tc.wantPass)
		}
	}
	if code.Get("code") != "wrapped" {
		t.Error("the input was modified")
	}
}

func TestConsentSet(t *testing.T) {
	t.Parallel()
	var set []string
	for i := range maxRemembered + 5 {
		set = withConsent(set, consentDigest("client"+string(rune('a'+i)), "http://127.0.0.1/cb"))
	}
	last := consentDigest("client"+string(rune('a'+maxRemembered+4)), "http://127.0.0.1/cb")
	if len(set) != maxRemembered || set[len(set)-1] != last {
		t.Errorf("consent set: %d entries", len(set))
	}
	if again := withConsent(set, last); len(again) != maxRemembered {
		t.Errorf("a repeated consent grew the set to %d", len(again))
	}
	if consentDigest("c", "http://127.0.0.1/cb") == consentDigest("c", "https://attacker.example/steal") ||
		consentDigest("c", "https://a.example/cb") == consentDigest("c"+"\x00https://a.example", "/cb") {
		t.Error("consent for one redirect URI covers another")
	}
}

// TestUsedSetNeverRefuses: a full replay memory forgets its oldest ids instead of refusing new ones.
func TestUsedSetNeverRefuses(t *testing.T) {
	t.Parallel()
	u := newUsedSet(3)
	for _, id := range []string{"a", "b", "c"} {
		if !u.use(id) {
			t.Fatalf("%s: not fresh", id)
		}
	}
	if u.use("a") {
		t.Error("a: replay accepted")
	}
	for i := range 10_000 {
		if !u.use(strconv.Itoa(i)) {
			t.Fatalf("id %d refused in a full set", i)
		}
	}
	if !u.use("a") {
		t.Error("the oldest id was not forgotten")
	}
	if u.use("9999") {
		t.Error("the newest id was forgotten")
	}
	if len(u.ids) != 3 || len(u.ring) != 3 {
		t.Errorf("the set grew: %d ids, %d in ring", len(u.ids), len(u.ring))
	}
}

// TestRateLimiter: a key is limited per minute; the window starts over; a full limiter lets new keys through rather
// than refusing them.
func TestRateLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_020, 0) // 20 s into a minute
	l := newRateLimiter(2, 3)
	for i := range 2 {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatalf("event %d refused", i)
		}
	}
	ok, wait := l.allow("a", now)
	if ok || wait != 40*time.Second {
		t.Errorf("third event: got %t %s, want refused for 40s", ok, wait)
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Error("another key was limited")
	}
	l.allow("c", now)
	for i := range 100 {
		if ok, _ := l.allow("new"+strconv.Itoa(i), now); !ok {
			t.Fatal("a full limiter refused a new key")
		}
	}
	if len(l.counts) != 3 {
		t.Errorf("the limiter grew to %d keys", len(l.counts))
	}
	if ok, _ := l.allow("a", now.Add(40*time.Second)); !ok {
		t.Error("the next minute is still limited")
	}
}

func TestScopePolicy(t *testing.T) {
	t.Parallel()
	open := scopePolicy{fallback: []string{"openid", "profile"}}
	listed := scopePolicy{allowed: []string{"openid", "profile", "email", "offline_access"}, fallback: []string{"openid"}}
	for _, tc := range []struct {
		name    string
		p       scopePolicy
		in      string
		want    []string
		wantErr string
	}{
		{"none: the default", open, "", []string{"openid", "profile"}, ""},
		{"none, white space: the default", listed, "  ", []string{"openid"}, ""},
		{"no allow-list: passed on", open, "openid custom:thing", []string{"openid", "custom:thing"}, ""},
		{"allowed", listed, "openid offline_access", []string{"openid", "offline_access"}, ""},
		{"not allowed", listed, "openid Mail.ReadWrite", nil, "invalid_scope"},
		{"not allowed, Graph", listed, "Directory.ReadWrite.All", nil, "invalid_scope"},
		{"malformed", open, "openid a\"b", nil, "invalid_scope"},
		{"too many", open, strings.Repeat("s ", maxScopes+1), nil, "invalid_scope"},
		{"too long", open, strings.Repeat("s", maxScopeToken+1), nil, "invalid_scope"},
	} {
		got, oe := tc.p.settle(tc.in)
		if tc.wantErr != "" {
			if oe == nil || oe.Code != tc.wantErr {
				t.Errorf("%s: got %v %v, want %s", tc.name, got, oe, tc.wantErr)
			}
			continue
		}
		if oe != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v %v, want %v", tc.name, got, oe, tc.want)
		}
	}
	if got := resourceScopes([]string{"email", "offline_access", "openid"}, []string{"mcp:tools", "openid"}); !slices.Equal(got, []string{"email", "openid", "mcp:tools"}) {
		t.Errorf("resourceScopes: %v", got)
	}
}

func TestCheckResource(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		resource string
		in       []string
		ok       bool
	}{
		{"https://mcp.example.com/mcp", nil, true},
		{"https://mcp.example.com/mcp", []string{"https://mcp.example.com/mcp"}, true},
		{"https://mcp.example.com/mcp", []string{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp"}, true},
		{"https://mcp.example.com/mcp", []string{"https://graph.example.com/"}, false},
		{"https://mcp.example.com/mcp", []string{"https://mcp.example.com/mcp", "https://graph.example.com/"}, false},
		{"https://mcp.example.com/mcp", []string{"https://mcp.example.com/mcp/"}, false},
		{"https://mcp.example.com/mcp", []string{""}, false},
		{"https://mcp.example.com", []string{"https://mcp.example.com/"}, true},
		{"https://mcp.example.com", []string{"https://mcp.example.com/x"}, false},
	} {
		oe := checkResource(tc.in, tc.resource)
		if (oe == nil) != tc.ok || (oe != nil && oe.Code != "invalid_target") {
			t.Errorf("checkResource(%q, %q): got %v, want ok=%t", tc.in, tc.resource, oe, tc.ok)
		}
	}
}

// FuzzUpstreamAuthorizeURL: whatever the client sends, the upstream sees exactly the pre-registered client, the
// gateway's callback and the gateway's state, and every other parameter unchanged.
func FuzzUpstreamAuthorizeURL(f *testing.F) {
	f.Add("response_type=code&client_id=x&redirect_uri=http://127.0.0.1/cb&state=s&resource=https://a/mcp&scope=openid")
	f.Add("client_id=a&client_id=b&redirect_uri=&state=%00&x=%zz")
	f.Add("resource=https%3A%2F%2Fa%2Fmcp&prompt=login&login_hint=a%2Bb%40c&code_challenge=abc")
	f.Fuzz(func(t *testing.T, raw string) {
		in, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		got, err := upstreamAuthorizeURL("https://as.example/authorize", in, "client_UP", "https://gw.example/callback", "STATE")
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(got)
		if err != nil || u.Host != "as.example" || u.Path != "/authorize" {
			t.Fatalf("endpoint changed: %q", got)
		}
		q := u.Query()
		if !slices.Equal(q["client_id"], []string{"client_UP"}) || !slices.Equal(q["redirect_uri"], []string{"https://gw.example/callback"}) ||
			!slices.Equal(q["state"], []string{"STATE"}) {
			t.Fatalf("substitution failed: %v", q)
		}
		for k, vs := range in {
			if k == "client_id" || k == "redirect_uri" || k == "state" {
				continue
			}
			if !slices.Equal(q[k], vs) {
				t.Fatalf("parameter %q: got %q, want %q", k, q[k], vs)
			}
		}
		if len(q) != len(in)+countMissing(in, "client_id", "redirect_uri", "state") {
			t.Fatalf("parameters added: %v from %v", q, in)
		}
	})
}

func countMissing(q url.Values, keys ...string) int {
	n := 0
	for _, k := range keys {
		if !q.Has(k) {
			n++
		}
	}
	return n
}

// FuzzTokenRewrite: whatever the client sends, the upstream form carries the pre-registered client id, no client
// credentials of the client's, the secret only for authorization_code and refresh_token, and the other parameters
// unchanged.
func FuzzTokenRewrite(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "grant_type=authorization_code&code=c&client_id=mcpgw_a&code_verifier=v&resource=r", "", true)
	f.Add("application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=a&client_secret=s", "", false)
	f.Add("application/json", `{"grant_type":"refresh_token","refresh_token":"r","client_id":"mcpgw_a"}`, "", true)
	f.Add("", "grant_type=refresh_token", "Basic bWNwZ3dfYTpz", false)
	f.Fuzz(func(t *testing.T, ct, body, auth string, post bool) {
		tr, oe := parseTokenRequest(ct, []byte(body), auth)
		if oe != nil {
			return
		}
		c := upstreamClient{ID: "client_UP", Secret: "SECRET", AuthMethod: "client_secret_basic", Callback: "https://gw.example/callback"}
		if post {
			c.AuthMethod = "client_secret_post"
		}
		form, user, pass := upstreamTokenRequest(tr.Params, "UPCODE", "https://gw.example/mcp", c)
		grant := tr.Params.Get("grant_type")
		if !slices.Equal(form["resource"], []string{"https://gw.example/mcp"}) {
			t.Fatalf("resource not pinned: %v", form)
		}
		secretGrant := grant == "authorization_code" || grant == "refresh_token"
		if form.Has("client_assertion") || (form.Has("client_secret") && !(secretGrant && post)) {
			t.Fatalf("client credentials forwarded: %v", form)
		}
		if secretGrant {
			if post && (form.Get("client_secret") != "SECRET" || form.Get("client_id") != "client_UP" || user != "") {
				t.Fatalf("post: %v %q", form, user)
			}
			if !post && (user != "client_UP" || pass != "SECRET" || form.Has("client_id")) {
				t.Fatalf("basic: %v %q %q", form, user, pass)
			}
		} else if user != "" || form.Has("client_secret") || form.Get("client_id") != "client_UP" {
			t.Fatalf("secret added to grant %q: %v %q", grant, form, user)
		}
		if grant == "authorization_code" && (form.Get("code") != "UPCODE" || form.Get("redirect_uri") != c.Callback) {
			t.Fatalf("code grant not rewritten: %v", form)
		}
		for k, vs := range tr.Params {
			switch k {
			case "code", "redirect_uri":
				if grant == "authorization_code" {
					continue
				}
			}
			if !slices.Contains(tokenParams, k) {
				if k != "client_id" && k != "client_secret" && k != "resource" && form.Has(k) {
					t.Fatalf("parameter %q passed on: %v", k, form)
				}
				continue
			}
			if !slices.Equal(form[k], vs) {
				t.Fatalf("parameter %q: got %q, want %q", k, form[k], vs)
			}
		}
	})
}

// FuzzParseRegistration: any body either fails with an RFC 7591 error or gives a registration whose redirect URIs are
// all acceptable, and whose sealed client id gives it back.
func FuzzParseRegistration(f *testing.F) {
	f.Add(`{"client_name":"x","redirect_uris":["http://127.0.0.1:1/cb"],"token_endpoint_auth_method":"none"}`)
	f.Add(`{"redirect_uris":["cursor://a/b","https://a.example/cb?x=1"],"grant_types":["refresh_token"]}`)
	f.Add(`{"redirect_uris":["javascript:x"]}`)
	s := testSealer()
	f.Fuzz(func(t *testing.T, body string) {
		reg, meta, oe := parseRegistration([]byte(body), time.Unix(1, 0))
		if oe != nil {
			if oe.Status != 400 || (oe.Code != "invalid_client_metadata" && oe.Code != "invalid_redirect_uri") {
				t.Fatalf("error %+v", oe)
			}
			return
		}
		for _, u := range reg.RedirectURIs {
			if err := checkRedirectURI(u); err != nil {
				t.Fatalf("accepted %q: %v", u, err)
			}
		}
		if _, ok := meta["client_secret"]; ok {
			t.Fatal("the client chose its secret")
		}
		got, oe := s.openClientID(s.clientID(reg))
		if oe != nil || !slices.Equal(got.RedirectURIs, reg.RedirectURIs) || got.AuthMethod != reg.AuthMethod {
			t.Fatalf("round trip: %+v %v", got, oe)
		}
	})
}

// FuzzClientRedirectURL: the redirect goes to the registered URI's scheme, host and path, with exactly the client's
// state and the gateway's iss, whatever the code or error.
func FuzzClientRedirectURL(f *testing.F) {
	f.Add("http://127.0.0.1:9/cb?x=1", "st", "code", "")
	f.Add("cursor://app/cb", "", "", "access_denied")
	f.Add("https://a.example/cb?state=forged&iss=forged", "s&iss=x", "c#d", "e")
	f.Fuzz(func(t *testing.T, uri, state, code, errCode string) {
		if checkRedirectURI(uri) != nil {
			return
		}
		ru, _ := url.Parse(uri)
		got := clientRedirectURL(uri, state, "https://gw.example", callbackParams{Code: code, Error: errCode})
		u, err := url.Parse(got)
		if err != nil || u.Scheme != ru.Scheme || u.Host != ru.Host || u.Path != ru.Path {
			t.Fatalf("%q → %q", uri, got)
		}
		q := u.Query()
		if !slices.Equal(q["iss"], []string{"https://gw.example"}) || (state != "" && !slices.Equal(q["state"], []string{state})) || (state == "" && q.Has("state")) {
			t.Fatalf("state/iss: %q", got)
		}
		if errCode == "" && !slices.Equal(q["code"], []string{code}) {
			t.Fatalf("code: %q", got)
		}
	})
}

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}
