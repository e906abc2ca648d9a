package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mcp-gateway/gateway/proxy/identity"
)

// Defaults of IntrospectorOptions.
const (
	// DefaultIntrospectionCacheTTL is how long an active token's introspection is trusted, at most until its exp.
	DefaultIntrospectionCacheTTL = 60 * time.Second
	// DefaultIntrospectionNegativeTTL is how long a refused token's introspection is remembered.
	DefaultIntrospectionNegativeTTL = 5 * time.Second
	// DefaultIntrospectionTimeout bounds one introspection call, and a request's wait for it.
	DefaultIntrospectionTimeout = 5 * time.Second
	// DefaultIntrospectionMaxInFlight caps the introspection calls running at once.
	DefaultIntrospectionMaxInFlight = 64
	// maxIntrospectionResponse caps an introspection response's body.
	maxIntrospectionResponse = 64 << 10
)

// ErrIntrospection reports that the introspection endpoint gave no usable answer (a network error, a status other
// than 200, a body that is not an introspection response, a timeout) or could not be asked. The cause it wraps never
// holds the token, the client secret or a response body.
var ErrIntrospection = errors.New("token introspection failed")

// Introspector verifies opaque access tokens at the issuer's introspection endpoint (RFC 7662) with the gateway's own
// client credentials. An active answer is checked like a JWT's claims (CheckClaims: iss, sub, exp, nbf, aud) and
// turned into a Principal exactly as a JWT's claims are.
//
// Answers are cached by the token's SHA-256: an accepted token until the earlier of its exp and the cache TTL (a
// revoked token keeps working that long), a refused one for the negative TTL. The two caches are bounded apart, so
// that strangers sending random tokens, which fill the negative cache, never push out the tokens of real users. At
// most one call per token runs at a time (requests with the same token wait for it), at most MaxInFlight calls run at
// once (one more fails at once), each call runs under its own timeout detached from the requests that wait for it, and
// no request waits longer than the timeout. An endpoint that cannot answer is never a pass: the request fails with
// ReasonIntrospectionUnavailable, which the caller answers with 503.
type Introspector struct {
	endpoint    func() (string, error)
	client      *http.Client
	clientID    string
	secret      string
	post        bool
	rules       ClaimRules
	ttl, negTTL time.Duration
	timeout     time.Duration
	now         func() time.Time
	after       func(time.Duration) <-chan time.Time
	onCall      func(outcome string)
	extra       *identity.ClaimHeaders

	ok, refused tokenCache
	slots       chan struct{}

	mu    sync.Mutex
	calls map[[32]byte]*introspection // guarded by mu: the calls running now, by token hash
}

// introspection is one call to the endpoint; done is closed once p or err is set.
type introspection struct {
	done chan struct{}
	p    *Principal
	err  error
}

// IntrospectorOptions configures NewIntrospector.
type IntrospectorOptions struct {
	// Endpoint returns the introspection endpoint's URL (configured, or from the issuer's metadata), or why there is
	// none yet. It is called for each call.
	Endpoint func() (string, error)
	// Client makes the calls; nil: http.DefaultClient. Redirects are never followed: they would carry the token and
	// the credentials elsewhere.
	Client *http.Client
	// ClientID and ClientSecret are the gateway's credentials at the authorization server. PostAuth sends them in
	// the form body (client_secret_post) instead of a Basic Authorization header (client_secret_basic).
	ClientID, ClientSecret string
	PostAuth               bool
	// Issuer is the iss an answer must carry (an answer without iss is taken as the issuer's own); Audiences are
	// those aud must name one of; Skew is the tolerance on exp and nbf.
	Issuer    string
	Audiences []string
	Skew      time.Duration
	// CacheTTL bounds how long an accepted token is trusted without asking again. Zero:
	// DefaultIntrospectionCacheTTL.
	CacheTTL time.Duration
	// NegativeTTL is how long a refused token is refused without asking again. Zero:
	// DefaultIntrospectionNegativeTTL.
	NegativeTTL time.Duration
	// Timeout bounds each call and each request's wait. Zero: DefaultIntrospectionTimeout.
	Timeout time.Duration
	// MaxInFlight caps the calls running at once. Zero: DefaultIntrospectionMaxInFlight.
	MaxInFlight int
	// CacheSize bounds each of the two caches. Zero: 10000.
	CacheSize int
	Now       func() time.Time                     // nil: time.Now
	After     func(time.Duration) <-chan time.Time // timer for a request's wait; nil: time.After
	// ClaimHeaders adds headers taken from the answer's claims to every principal's Headers, as Verifier's does.
	ClaimHeaders *identity.ClaimHeaders
	// OnCall, when set, is told each call's outcome: "active", "refused" or "error"; and "busy" for a call not made
	// because MaxInFlight calls were running.
	OnCall func(outcome string)
}

// NewIntrospector returns an Introspector.
func NewIntrospector(o IntrospectorOptions) *Introspector {
	in := &Introspector{endpoint: o.Endpoint, clientID: o.ClientID, secret: o.ClientSecret, post: o.PostAuth,
		rules: ClaimRules{Issuer: o.Issuer, Audiences: o.Audiences, Skew: o.Skew},
		ttl:   cmpOr(o.CacheTTL, DefaultIntrospectionCacheTTL), negTTL: cmpOr(o.NegativeTTL, DefaultIntrospectionNegativeTTL),
		timeout: cmpOr(o.Timeout, DefaultIntrospectionTimeout), now: o.Now, after: o.After, onCall: o.OnCall, extra: o.ClaimHeaders,
		ok: newTokenCache(cmpOr(o.CacheSize, 10000)), refused: newTokenCache(cmpOr(o.CacheSize, 10000)),
		slots: make(chan struct{}, cmpOr(o.MaxInFlight, DefaultIntrospectionMaxInFlight)),
		calls: map[[32]byte]*introspection{},
	}
	client := http.DefaultClient
	if o.Client != nil {
		client = o.Client
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	in.client = &c
	if in.now == nil {
		in.now = time.Now
	}
	if in.after == nil {
		in.after = time.After
	}
	if in.onCall == nil {
		in.onCall = func(string) {}
	}
	return in
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Verify returns the principal of an opaque token, or an *AuthError: ReasonInactive, a claim's reason, or
// ReasonIntrospectionUnavailable when the endpoint could not say.
func (in *Introspector) Verify(ctx context.Context, raw string) (*Principal, error) {
	return in.verify(ctx, tokenKey(raw), raw)
}

func (in *Introspector) verify(ctx context.Context, key [32]byte, raw string) (*Principal, error) {
	now := in.now()
	if e, ok := in.ok.get(key, 0, now); ok {
		return e.p, nil
	}
	if e, ok := in.refused.get(key, 0, now); ok {
		return nil, e.err
	}
	in.mu.Lock()
	call := in.calls[key]
	if call == nil {
		select {
		case in.slots <- struct{}{}:
		default:
			in.mu.Unlock()
			in.onCall("busy")
			return nil, unavailable("%d introspection calls in flight already", cap(in.slots))
		}
		call = &introspection{done: make(chan struct{})}
		in.calls[key] = call
		go in.run(key, raw, call)
	}
	in.mu.Unlock()
	select {
	case <-call.done:
		return call.p, call.err
	case <-ctx.Done():
		return nil, unavailable("request ended while the token was being introspected: %w", ctx.Err())
	case <-in.after(in.timeout):
		return nil, unavailable("no introspection answer within %s", in.timeout)
	}
}

// unavailable is the error for an endpoint that could not say.
func unavailable(format string, args ...any) *AuthError {
	return &AuthError{Reason: ReasonIntrospectionUnavailable, Err: fmt.Errorf("%w: %w", ErrIntrospection, fmt.Errorf(format, args...))}
}

// run makes one call, detached from the requests that wait for it, caches its answer and hands it to them.
func (in *Introspector) run(key [32]byte, raw string, call *introspection) {
	ctx, cancel := context.WithTimeout(context.Background(), in.timeout)
	p, err := in.call(ctx, raw)
	cancel()
	now := in.now()
	var ae *AuthError
	switch {
	case err == nil:
		until := now.Add(in.ttl)
		if p.Expiry.Before(until) {
			until = p.Expiry
		}
		in.ok.put(key, cacheEntry{p: p, until: until}, now)
		in.onCall("active")
	case errors.As(err, &ae) && ae.Reason != ReasonIntrospectionUnavailable:
		in.refused.put(key, cacheEntry{err: ae, until: now.Add(in.negTTL)}, now)
		in.onCall("refused")
	default:
		in.onCall("error")
	}
	in.mu.Lock()
	delete(in.calls, key)
	in.mu.Unlock()
	<-in.slots
	call.p, call.err = p, err
	close(call.done)
}

// call asks the endpoint about raw and checks the answer.
func (in *Introspector) call(ctx context.Context, raw string) (*Principal, error) {
	body, err := in.post1(ctx, raw)
	if err != nil {
		return nil, err
	}
	return in.principal(body, in.now())
}

// post1 sends the introspection request and returns the body of a 200 answer.
func (in *Introspector) post1(ctx context.Context, raw string) ([]byte, error) {
	endpoint, err := in.endpoint()
	if err != nil {
		return nil, unavailable("%w", err)
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	if in.post {
		form.Set("client_id", in.clientID)
		form.Set("client_secret", in.secret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, unavailable("introspection endpoint %s: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if !in.post {
		// RFC 6749 §2.3.1: the credentials are form-encoded before they are joined.
		req.SetBasicAuth(url.QueryEscape(in.clientID), url.QueryEscape(in.secret))
	}
	resp, err := in.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL error repeats the endpoint
		}
		return nil, unavailable("introspection endpoint %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		what := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			what = " (are the introspection client credentials right?)"
		}
		return nil, unavailable("introspection endpoint %s answered %s%s", endpoint, resp.Status, what)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionResponse+1))
	if err != nil {
		return nil, unavailable("introspection endpoint %s: %w", endpoint, err)
	}
	if len(body) > maxIntrospectionResponse {
		return nil, unavailable("introspection endpoint %s: answer larger than %d bytes", endpoint, maxIntrospectionResponse)
	}
	return body, nil
}

// introspectionAnswer is what an introspection response says beyond the claims.
type introspectionAnswer struct {
	Active    *bool  `json:"active"`
	TokenType string `json:"token_type"`
}

// principal checks an introspection response and returns the principal of the active token it describes.
func (in *Introspector) principal(body []byte, now time.Time) (*Principal, error) {
	var a introspectionAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.Active == nil {
		return nil, unavailable("the answer is not an introspection response (a JSON object with a boolean active)")
	}
	if !*a.Active {
		return nil, authErr(ReasonInactive, "the introspection endpoint says the token is not active")
	}
	switch strings.ToLower(a.TokenType) {
	case "", "bearer", "access_token":
	default:
		// A refresh token, or one bound to a key (DPoP) whose proof the gateway does not check.
		return nil, authErr(ReasonInvalidClaim, "introspected token_type %q is not a bearer access token", a.TokenType)
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, authErr(ReasonMalformed, "introspected claims: %w", err)
	}
	if c.Issuer == "" {
		c.Issuer = in.rules.Issuer // the endpoint speaks for its issuer
	}
	exp, err := CheckClaims(&c, in.rules, now)
	if err != nil {
		return nil, err
	}
	p, err := principal(&c, body, exp)
	if err != nil {
		return nil, err
	}
	if err := in.extra.Set(p.hdr, body); err != nil {
		return nil, &AuthError{Reason: ReasonInvalidClaim, Err: err}
	}
	return p, nil
}
