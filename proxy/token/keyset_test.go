package token

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/token/tokentest"
)

// settle waits for the key set fetch running now, if any, to end.
func (ks *KeySet) settle() {
	ks.mu.Lock()
	f := ks.inFlight
	ks.mu.Unlock()
	if f != nil {
		<-f.done
	}
}

// manualTimer is an injectable KeySetOptions.After: asked receives every duration asked for, and the timers fire
// when fire is closed.
type manualTimer struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newManualTimer() *manualTimer {
	return &manualTimer{asked: make(chan time.Duration, 64), fire: make(chan time.Time)}
}

func (m *manualTimer) After(d time.Duration) <-chan time.Time {
	m.asked <- d
	return m.fire
}

// verifyResult is the outcome of a Verify run in a goroutine.
type verifyResult struct {
	p   *Principal
	err error
}

func goVerify(ctx context.Context, v *Verifier, tok string) <-chan verifyResult {
	ch := make(chan verifyResult, 1)
	go func() {
		p, err := v.Verify(ctx, tok)
		ch <- verifyResult{p, err}
	}()
	return ch
}

// await returns the result of a Verify started with goVerify. The timeout only turns a hang into a failure.
func await(t *testing.T, ch <-chan verifyResult, what string) verifyResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: Verify still waiting", what)
		return verifyResult{}
	}
}

func wantReason(t *testing.T, what string, err error, want Reason) {
	t.Helper()
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("%s: got %v, want an *AuthError with reason %s", what, err, want)
	}
	if ae.Reason != want {
		t.Errorf("%s: reason got %s, want %s (err %v)", what, ae.Reason, want, err)
	}
}

// TestKeySetRefetchOutlivesCanceledRequest: a client that sends a token with a random kid and hangs up during the
// refetch neither cancels the fetch nor leaves the key set without the new key, so a token signed by the rotated-in
// key right after is accepted without another fetch.
func TestKeySetRefetchOutlivesCanceledRequest(t *testing.T) {
	t.Parallel()
	k1, k2 := tokentest.NewKey(t, "k1", 0), tokentest.NewKey(t, "k2", 1)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	v, ks := newTestVerifier(t, is, c)

	is.SetKeys(k1, k2) // rotation: the issuer publishes k2
	entered, release := is.Hold(t)
	ctx, cancel := context.WithCancel(context.Background())
	random := tokentest.Key{ID: "random-kid", Private: k2.Private}.Sign(t, is.Claims(testResource, "attacker", c.Now()))
	res := goVerify(ctx, v, random)
	<-entered // the refetch has reached the JWKS endpoint
	cancel()
	wantReason(t, "canceled request with a random kid", await(t, res, "canceled request").err, ReasonUnknownKey)

	release()
	ks.settle()
	if got := is.JWKSCanceled.Load(); got != 0 {
		t.Errorf("JWKS requests canceled: got %d, want 0 (the fetch belongs to no request)", got)
	}
	hits := is.JWKSHits.Load()
	if _, err := v.Verify(context.Background(), k2.Sign(t, is.Claims(testResource, "user_2", c.Now()))); err != nil {
		t.Fatalf("token signed by the rotated-in key right after: %v", err)
	}
	if got := is.JWKSHits.Load() - hits; got != 0 {
		t.Errorf("JWKS fetches for the new key: got %d, want 0 (the detached fetch brought it)", got)
	}
}

// TestKeySetSlowEndpointBoundsWait: with a JWKS endpoint that does not answer, requests with an unknown kid share one
// fetch and give up after the wait bound (DefaultKeyWait) with unknown_key; the fetch carries on and its keys serve
// the requests after it.
func TestKeySetSlowEndpointBoundsWait(t *testing.T) {
	t.Parallel()
	k1, k2 := tokentest.NewKey(t, "k1", 0), tokentest.NewKey(t, "k2", 1)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	timer := newManualTimer()
	ks := NewKeySet(KeySetOptions{URL: is.JWKSURL(), Client: is.Client(), Cooldown: 10 * time.Second,
		Now: c.Now, After: timer.After, Algs: []string{"RS256"}})
	if err := ks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(VerifierOptions{Keys: ks, Issuer: is.URL, Audiences: []string{testResource}, Now: c.Now})

	is.SetKeys(k1, k2)
	entered, release := is.Hold(t)
	hits := is.JWKSHits.Load()
	tok := k2.Sign(t, is.Claims(testResource, "user_2", c.Now()))
	var results []<-chan verifyResult
	for range 3 {
		results = append(results, goVerify(context.Background(), v, tok))
	}
	<-entered
	for range results {
		if d := <-timer.asked; d != DefaultKeyWait {
			t.Errorf("wait bound: got %s, want %s", d, DefaultKeyWait)
		}
	}
	close(timer.fire) // the bound passes while the endpoint still has not answered
	for i, r := range results {
		wantReason(t, "request waiting on a slow JWKS endpoint", await(t, r, fmt.Sprintf("request %d", i)).err, ReasonUnknownKey)
	}
	if got := is.JWKSHits.Load() - hits; got != 1 {
		t.Errorf("JWKS fetches for 3 waiting requests: got %d, want 1", got)
	}

	release()
	ks.settle()
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("token signed by the new key once the slow fetch ended: %v", err)
	}
}

// TestKeySetFirstLoad: while no keys are loaded, a request waits for a fetch already running for the wait bound at
// most, and gets keys_unavailable (503) when it has not ended; it never starts a fetch itself.
func TestKeySetFirstLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		refresh  bool // a first load is running when the request arrives
		complete bool // it ends before the wait bound
		want     Reason
	}{
		{"first load ends within the bound", true, true, ""},
		{"first load still running at the bound", true, false, ReasonKeysUnavailable},
		{"no load running", false, false, ReasonKeysUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k1 := tokentest.NewKey(t, "k1", 0)
			is := tokentest.NewIssuer(t, k1)
			c := tokentest.NewClock()
			timer := newManualTimer()
			ks := NewKeySet(KeySetOptions{URL: is.JWKSURL(), Client: is.Client(), Cooldown: time.Second,
				Now: c.Now, After: timer.After, Algs: []string{"RS256"}})
			v := NewVerifier(VerifierOptions{Keys: ks, Issuer: is.URL, Audiences: []string{testResource}, Now: c.Now})
			entered, release := is.Hold(t)
			refreshed := make(chan error, 1)
			if tt.refresh {
				go func() { refreshed <- ks.Refresh(context.Background()) }()
				<-entered
			}
			res := goVerify(context.Background(), v, k1.Sign(t, is.Claims(testResource, "user_1", c.Now())))
			if tt.refresh {
				<-timer.asked
				if tt.complete {
					release()
				} else {
					close(timer.fire)
				}
			}
			r := await(t, res, "request during the first load")
			if tt.want == "" {
				if r.err != nil {
					t.Fatalf("got %v, want accepted", r.err)
				}
			} else {
				wantReason(t, "request without keys", r.err, tt.want)
			}
			release()
			if tt.refresh {
				if err := <-refreshed; err != nil {
					t.Errorf("first load: %v", err)
				}
			}
			if got, want := is.JWKSHits.Load(), map[bool]int64{true: 1, false: 0}[tt.refresh]; got != want {
				t.Errorf("JWKS fetches: got %d, want %d", got, want)
			}
		})
	}
}

// TestKeySetCooldownStartsWhenFetchEnds: the cooldown counts from the end of a fetch an unknown kid waited for, so a
// fetch that took longer than the cooldown does not let the next unknown kid fetch again at once.
func TestKeySetCooldownStartsWhenFetchEnds(t *testing.T) {
	t.Parallel()
	k1, k2 := tokentest.NewKey(t, "k1", 0), tokentest.NewKey(t, "k2", 1)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	v, ks := newTestVerifier(t, is, c) // cooldown 10s
	unknown := func() string {
		return tokentest.Key{ID: "nope", Private: k2.Private}.Sign(t, is.Claims(testResource, "u", c.Now()))
	}

	entered, release := is.Hold(t)
	ctx, cancel := context.WithCancel(context.Background())
	res := goVerify(ctx, v, unknown())
	<-entered
	c.Add(15 * time.Second) // the fetch takes longer than the cooldown
	cancel()
	await(t, res, "first unknown kid")
	release()
	ks.settle()

	hits := is.JWKSHits.Load()
	wantReason(t, "unknown kid right after the fetch ended", verifyErr(v, unknown()), ReasonUnknownKey)
	if got := is.JWKSHits.Load() - hits; got != 0 {
		t.Errorf("JWKS fetches right after a fetch ended: got %d, want 0 (cooldown)", got)
	}
	c.Add(10 * time.Second)
	wantReason(t, "unknown kid a cooldown after the fetch ended", verifyErr(v, unknown()), ReasonUnknownKey)
	if got := is.JWKSHits.Load() - hits; got != 1 {
		t.Errorf("JWKS fetches a cooldown after the last fetch ended: got %d, want 1", got)
	}
}

func verifyErr(v *Verifier, tok string) error {
	_, err := v.Verify(context.Background(), tok)
	return err
}

// TestKeySetFetchHasItsOwnTimeout: a fetch that no request can cancel still ends, at its own timeout; the requests
// waiting for it fail, and the keys already held keep working.
func TestKeySetFetchHasItsOwnTimeout(t *testing.T) {
	t.Parallel()
	k1, k2 := tokentest.NewKey(t, "k1", 0), tokentest.NewKey(t, "k2", 1)
	is := tokentest.NewIssuer(t, k1)
	c := tokentest.NewClock()
	fetchErrs := make(chan error, 4)
	ks := NewKeySet(KeySetOptions{URL: is.JWKSURL(), Client: is.Client(), Cooldown: time.Second,
		Now: c.Now, Wait: time.Hour, FetchTimeout: 50 * time.Millisecond, Algs: []string{"RS256"},
		OnFetch: func(err error) { fetchErrs <- err }})
	if err := ks.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-fetchErrs
	v := NewVerifier(VerifierOptions{Keys: ks, Issuer: is.URL, Audiences: []string{testResource}, Now: c.Now})
	is.Hold(t) // never released before the test ends: only the fetch's timeout can end it
	err := verifyErr(v, k2.Sign(t, is.Claims(testResource, "u", c.Now())))
	wantReason(t, "unknown kid while the endpoint hangs", err, ReasonUnknownKey)
	if err := <-fetchErrs; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("fetch outcome: got %v, want its own deadline exceeded", err)
	}
	if _, err := v.Verify(context.Background(), k1.Sign(t, is.Claims(testResource, "u", c.Now()))); err != nil {
		t.Errorf("token signed by a key already held: %v", err)
	}
}
