package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcp-gateway/gateway/tools"
)

// preregistered is the authorization server's side of Option B: one client, whose only redirect URI is the gateway's
// callback, authenticating with Basic. /authorize grants at once; /token checks the client, the redirect URI and PKCE.
type preregistered struct {
	t        *testing.T
	is       *issuer
	callback string
	mu       sync.Mutex
	codes    map[string]pendingCode
}

type pendingCode struct{ challenge, resource string }

const (
	preClientID = "client_PREREGISTERED"
	preSecret   = "preregistered secret"
)

func (p *preregistered) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/authorize":
		q := r.URL.Query()
		if q.Get("client_id") != preClientID || q.Get("redirect_uri") != p.callback || q.Get("code_challenge_method") != "S256" {
			http.Error(w, "bad authorization request: "+q.Encode(), http.StatusBadRequest)
			return
		}
		code := fmt.Sprintf("code-%d", time.Now().UnixNano())
		p.mu.Lock()
		p.codes[code] = pendingCode{challenge: q.Get("code_challenge"), resource: q.Get("resource")}
		p.mu.Unlock()
		http.Redirect(w, r, p.callback+"?"+url.Values{"code": {code}, "state": {q.Get("state")}, "iss": {p.is.URL}}.Encode(), http.StatusFound)
	case "/token":
		r.ParseForm()
		id, secret, _ := r.BasicAuth()
		p.mu.Lock()
		c, ok := p.codes[r.PostForm.Get("code")]
		delete(p.codes, r.PostForm.Get("code"))
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		switch {
		case id != preClientID || secret != url.QueryEscape(preSecret):
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client"}`)
		case r.PostForm.Get("grant_type") != "authorization_code" || !ok || r.PostForm.Get("redirect_uri") != p.callback ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant"}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`,
				p.is.token(p.t, "user_go", map[string]any{"aud": c.resource, "client_id": preClientID, "email": "go@example.com"}))
		}
	}
}

var consentField = regexp.MustCompile(`name="(request|csrf)" value="([^"]*)"`)

// consentAndFollow is a go-sdk authorization code fetcher that does what a person does: open the gateway's
// authorization URL, allow on its consent page, and follow the redirects through the authorization server and the
// gateway's callback to the client's redirect URI.
func consentAndFollow(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
	jar, _ := cookiejar.New(nil)
	start, _ := url.Parse(args.URL)
	gateway := start.Scheme + "://" + start.Host
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == "localhost:8976" {
			return http.ErrUseLastResponse // the client's redirect URI
		}
		return nil
	}}
	resp, err := c.Get(args.URL)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{"decision": {"allow"}}
	for _, m := range consentField.FindAllStringSubmatch(string(body), -1) {
		form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
	}
	if len(form) != 3 {
		return nil, fmt.Errorf("no consent form (%d): %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gateway+"/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", gateway)
	if resp, err = c.Do(req); err != nil {
		return nil, err
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("the consent answered %d without a redirect", resp.StatusCode)
	}
	q := loc.Query()
	if q.Get("error") != "" {
		return nil, fmt.Errorf("authorization error %s: %s", q.Get("error"), q.Get("error_description"))
	}
	return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
}

// TestOptionBGoClient: the go-sdk client, which checks the authorization server's issuer, PKCE support and the
// authorization response's iss, signs in through the gateway in Option B and calls a tool.
func TestOptionBGoClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	public := "http://" + addr
	is := newIssuer(t)
	is.oauth = &preregistered{t: t, is: is, callback: public + "/callback", codes: map[string]pendingCode{}}
	up := httptest.NewServer(tools.Handler(tools.Options{IdentitySecret: []byte(secret)}))
	t.Cleanup(up.Close)
	startGateway(t, map[string]string{
		"GATEWAY_LISTEN_ADDR":                addr,
		"GATEWAY_PUBLIC_URL":                 public,
		"GATEWAY_ISSUER_URL":                 is.URL,
		"GATEWAY_UPSTREAM_URL":               up.URL + "/mcp",
		"GATEWAY_IDENTITY_SECRET":            secret,
		"MCP_USE_OAUTH_WORKOS_CLIENT_ID":     preClientID,
		"MCP_USE_OAUTH_WORKOS_CLIENT_SECRET": preSecret,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs:            []string{"http://localhost:8976/callback"},
			TokenEndpointAuthMethod: "none",
			GrantTypes:              []string{"authorization_code", "refresh_token"},
			ClientName:              "go-sdk Option B client",
		}},
		AuthorizationCodeFetcher: consentAndFollow,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "go-client", Version: "1"}, nil)
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: public + "/mcp", OAuthHandler: h}, nil)
	if err != nil {
		t.Fatalf("connect with OAuth through Option B: %v", err)
	}
	defer s.Close()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "get-user-info", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.StructuredContent); !strings.Contains(got, "userId:user_go") {
		t.Errorf("get-user-info: got %s", got)
	}
}
