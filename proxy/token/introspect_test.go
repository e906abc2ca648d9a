package token

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/identity"
	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
)

// newTestIntrospector returns an introspector at is's endpoint with its credentials and the clock c.
func newTestIntrospector(t *testing.T, is *tokentest.Issuer, c *tokentest.Clock, mod func(o *IntrospectorOptions)) *Introspector {
	t.Helper()
	o := IntrospectorOptions{
		Endpoint: func() (string, error) { return is.URL + tokentest.IntrospectionPath, nil },
		Client:   is.Client(), ClientID: tokentest.IntrospectionClientID, ClientSecret: tokentest.IntrospectionClientSecret,
		Issuer: is.URL, Audiences: []string{testResource}, Skew: 30 * time.Second, Now: c.Now,
	}
	if mod != nil {
		mod(&o)
	}
	return NewIntrospector(o)
}

func reasonOf(err error) Reason {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return ""
}

func TestIntrospectorClaims(t *testing.T) {
	t.Parallel()
	is := tokentest.NewIssuer(t)
	c := tokentest.NewClock()
	now := c.Now()
	with := func(mod func(m map[string]any)) map[string]any {
		m := is.Claims(testResource, "user_1", now)
		m["email"] = "alice@example.com"
		mod(m)
		return m
	}
	tests := []struct {
		name  string
		token string
		want  Reason
	}{
		{"active", is.Opaque(with(func(map[string]any) {})), ""},
		{"active without iss", is.Opaque(with(func(m map[string]any) { delete(m, "iss") })), ""},
		{"unknown token", "never-issued-token", ReasonInactive},
		{"another audience", is.Opaque(with(func(m map[string]any) { m["aud"] = "https://other.example.com/mcp" })), ReasonAudience},
		{"no audience", is.Opaque(with(func(m map[string]any) { delete(m, "aud") })), ReasonAudience},
		{"another issuer", is.Opaque(with(func(m map[string]any) { m["iss"] = "https://evil.example.com" })), ReasonIssuer},
		{"expired", is.Opaque(with(func(m map[string]any) { m["exp"] = now.Add(-time.Hour).Unix() })), ReasonExpired},
		{"no exp", is.Opaque(with(func(m map[string]any) { delete(m, "exp") })), ReasonMissingClaim},
		{"no sub", is.Opaque(with(func(m map[string]any) { delete(m, "sub") })), ReasonMissingClaim},
		{"refresh token", is.Opaque(with(func(m map[string]any) { m["token_type"] = "refresh_token" })), ReasonInvalidClaim},
		{"DPoP-bound", is.Opaque(with(func(m map[string]any) { m["token_type"] = "DPoP" })), ReasonInvalidClaim},
		{"scope with a newline", is.Opaque(with(func(m map[string]any) { m["scope"] = "a\nb" })), ""}, // split on white space
		{"role with a comma", is.Opaque(with(func(m map[string]any) { m["role"] = "a,b" })), ReasonInvalidClaim},
	}
	in := newTestIntrospector(t, is, c, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := in.Verify(context.Background(), tt.token)
			if got := reasonOf(err); got != tt.want {
				t.Fatalf("reason %q (err %v), want %q", got, err, tt.want)
			}
			if tt.want != "" {
				return
			}
			if p.Issuer != is.URL || p.Subject != "user_1" || p.Identity.Email != "alice@example.com" || p.Identity.ClientID != "client_123" {
				t.Errorf("principal %+v, want issuer %s, sub user_1, e-mail and client id from the answer", p, is.URL)
			}
			if got := p.Headers().Get(identity.HeaderEmail); got != "alice@example.com" {
				t.Errorf("%s %q, want the e-mail address: identity headers come from the answer as from a JWT", identity.HeaderEmail, got)
			}
		})
	}
}

func TestIntrospectorClientAuth(t *testing.T) {
	t.Parallel()
	is := tokentest.NewIssuer(t)
	c := tokentest.NewClock()
	tok := is.Opaque(is.Claims(testResource, "user_1", c.Now()))
	for _, post := range []bool{false, true} {
		t.Run(fmt.Sprintf("post=%t", post), func(t *testing.T) {
			in := newTestIntrospector(t, is, c, func(o *IntrospectorOptions) { o.PostAuth = post })
			if _, err := in.Verify(context.Background(), tok); err != nil {
				t.Fatalf("err %v, want the token accepted", err)
			}
			bad := newTestIntrospector(t, is, c, func(o *IntrospectorOptions) { o.PostAuth, o.ClientSecret = post, "wrong secret" })
			_, err := bad.Verify(context.Background(), tok)
			if got := reasonOf(err); got != ReasonIntrospectionUnavailable || !errors.Is(err, ErrIntrospection) {
				t.Fatalf("wrong secret: reason %q (err %v), want %q", got, err, ReasonIntrospectionUnavailable)
			}
			if strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), "wrong secret") {
				t.Errorf("error %q holds the token or the secret", err)
			}
		})
	}
}

func TestIntrospectorCache(t *testing.T) {
	t.Parallel()
	is := tokentest.NewIssuer(t)
	c := tokentest.NewClock()
	in := newTestIntrospector(t, is, c, func(o *IntrospectorOptions) { o.CacheTTL = time.Minute; o.NegativeTTL = 5 * time.Second })
	ctx := context.Background()
	claims := is.Claims(testResource, "user_1", c.Now())
	claims["exp"] = c.Now().Add(90 * time.Second).Unix()
	tok := is.Opaque(claims)
	hits := func() int64 { return is.IntrospectionHits.Load() }

	p1, err := in.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := in.Verify(ctx, tok)
	if hits() != 1 || p1 != p2 {
		t.Fatalf("%d calls, same principal %t; want 1 call, the cached principal", hits(), p1 == p2)
	}
	is.Revoke(tok)
	c.Add(59 * time.Second)
	if _, err := in.Verify(ctx, tok); err != nil || hits() != 1 {
		t.Fatalf("within the TTL: err %v, %d calls; want the cached answer (revocation waits for the TTL)", err, hits())
	}
	c.Add(2 * time.Second)
	if _, err := in.Verify(ctx, tok); reasonOf(err) != ReasonInactive || hits() != 2 {
		t.Fatalf("past the TTL: err %v, %d calls; want a new call that finds the token revoked", err, hits())
	}
	if _, err := in.Verify(ctx, tok); reasonOf(err) != ReasonInactive || hits() != 2 {
		t.Fatalf("refused again: err %v, %d calls; want the negative cache", err, hits())
	}
	c.Add(6 * time.Second)
	in.Verify(ctx, tok)
	if hits() != 3 {
		t.Fatalf("%d calls, want a new call once the negative TTL has passed", hits())
	}

	// The TTL never outlives exp.
	claims = is.Claims(testResource, "user_2", c.Now())
	claims["exp"] = c.Now().Add(10 * time.Second).Unix()
	short := is.Opaque(claims)
	in.Verify(ctx, short)
	c.Add(45 * time.Second) // past exp and the skew, within the TTL
	before := hits()
	if _, err := in.Verify(ctx, short); reasonOf(err) != ReasonExpired || hits() != before+1 {
		t.Fatalf("past exp: err %v, %d new calls; want the token asked about again and refused as expired", err, hits()-before)
	}
}

// A flood of random tokens fills the negative cache only: accepted tokens stay cached.
func TestIntrospectorFloodKeepsAcceptedTokens(t *testing.T) {
	t.Parallel()
	is := tokentest.NewIssuer(t)
	c := tokentest.NewClock()
	in := newTestIntrospector(t, is, c, func(o *IntrospectorOptions) { o.CacheSize = 4 })
	ctx := context.Background()
	tok := is.Opaque(is.Claims(testResource, "user_1", c.Now()))
	if _, err := in.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		in.Verify(ctx, fmt.Sprintf("random-%d", i))
	}
	before := is.IntrospectionHits.Load()
	if _, err := in.Verify(ctx, tok); err != nil || is.IntrospectionHits.Load() != before {
		t.Fatalf("err %v, %d new calls; want the accepted token still cached", err, is.IntrospectionHits.Load()-before)
	}
	if n := in.refused.len(); n > 4 {
		t.Errorf("negative cache holds %d entries, want at most 4", n)
	}
}

// hostile is an introspection endpoint whose answers the test decides; it counts calls and can hold them.
type hostile struct {
	*httptest.Server
	calls   atomic.Int64
	entered chan struct{}
	release chan struct{}
	answer  func(w http.ResponseWriter)
	once    sync.Once
}

// open lets the held calls, and those after them, answer.
func (h *hostile) open() { h.once.Do(func() { close(h.release) }) }

func newHostile(t *testing.T, answer func(w http.ResponseWriter)) *hostile {
	h := &hostile{entered: make(chan struct{}, 100), release: make(chan struct{}), answer: answer}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.calls.Add(1)
		h.entered <- struct{}{}
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
		h.answer(w)
	}))
	t.Cleanup(func() { h.open(); h.Close() })
	return h
}

func (h *hostile) introspector(c *tokentest.Clock, after func(time.Duration) <-chan time.Time, maxInFlight int) *Introspector {
	return NewIntrospector(IntrospectorOptions{
		Endpoint: func() (string, error) { return h.URL, nil }, Client: h.Client(), ClientID: "id", ClientSecret: "secret",
		Issuer: "https://issuer.example.com", Audiences: []string{testResource}, Now: c.Now, After: after,
		MaxInFlight: maxInFlight, Timeout: 5 * time.Second,
	})
}

func TestIntrospectorSingleFlight(t *testing.T) {
	t.Parallel()
	c := tokentest.NewClock()
	h := newHostile(t, func(w http.ResponseWriter) {
		fmt.Fprintf(w, `{"active":true,"iss":"https://issuer.example.com","sub":"u","aud":%q,"exp":%d}`, testResource, c.Now().Add(time.Hour).Unix())
	})
	in := h.introspector(c, nil, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := in.Verify(context.Background(), "same-token")
			errs <- err
		})
	}
	<-h.entered
	h.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("err %v, want every request accepted", err)
		}
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("%d calls for 20 requests with one token, want 1", n)
	}
}

// A slow endpoint holds a request no longer than the timeout, and no more than MaxInFlight calls run at once.
func TestIntrospectorBounds(t *testing.T) {
	t.Parallel()
	c := tokentest.NewClock()
	h := newHostile(t, func(w http.ResponseWriter) { w.Write([]byte(`{"active":false}`)) })
	fire := make(chan time.Time)
	var waits []time.Duration
	var mu sync.Mutex
	after := func(d time.Duration) <-chan time.Time {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return fire
	}
	in := h.introspector(c, after, 2)
	done := make(chan error)
	go func() { _, err := in.Verify(context.Background(), "slow-1"); done <- err }()
	<-h.entered
	go func() { _, err := in.Verify(context.Background(), "slow-2"); done <- err }()
	<-h.entered
	_, err := in.Verify(context.Background(), "third")
	if reasonOf(err) != ReasonIntrospectionUnavailable || h.calls.Load() != 2 {
		t.Fatalf("third token with 2 calls in flight: err %v, %d calls; want unavailable at once, no call", err, h.calls.Load())
	}
	close(fire) // the timeout of the two waiting requests
	for range 2 {
		if err := <-done; reasonOf(err) != ReasonIntrospectionUnavailable {
			t.Fatalf("err %v, want unavailable after the timeout", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range waits {
		if d != 5*time.Second {
			t.Errorf("a request waited up to %s, want the timeout, 5s", d)
		}
	}
}

func TestIntrospectorBadAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter)
	}{
		{"500", func(w http.ResponseWriter) { http.Error(w, "oops", http.StatusInternalServerError) }},
		{"redirect", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://elsewhere.example.com/")
			w.WriteHeader(http.StatusTemporaryRedirect)
		}},
		{"not JSON", func(w http.ResponseWriter) { w.Write([]byte("<html>")) }},
		{"no active", func(w http.ResponseWriter) { w.Write([]byte(`{"sub":"u"}`)) }},
		{"active not a boolean", func(w http.ResponseWriter) { w.Write([]byte(`{"active":"true"}`)) }},
		{"too large", func(w http.ResponseWriter) {
			w.Write([]byte(`{"active":false,"x":"` + strings.Repeat("a", 70<<10) + `"}`))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tokentest.NewClock()
			h := newHostile(t, tt.answer)
			h.open()
			in := h.introspector(c, nil, 0)
			for i := range 2 {
				_, err := in.Verify(context.Background(), "tok")
				if reasonOf(err) != ReasonIntrospectionUnavailable {
					t.Fatalf("err %v, want unavailable: a bad answer is never a pass", err)
				}
				if h.calls.Load() != int64(i+1) {
					t.Fatalf("%d calls after %d requests: a failure must not be cached", h.calls.Load(), i+1)
				}
			}
		})
	}
}
