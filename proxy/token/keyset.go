package token

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Key set errors, for callers that branch on them. Verify returns errors that wrap exactly one of them.
var (
	// ErrMalformedToken reports a token that is not a compact JWS with one signature by an allowed algorithm.
	ErrMalformedToken = errors.New("not a compact JWS with one signature by an allowed algorithm")
	// ErrUnknownKey reports a token signed with a key that is not in the key set, even after a refetch (or while a
	// refetch is still running when the caller stops waiting).
	ErrUnknownKey = errors.New("no key in the key set matches the token")
	// ErrKeysUnavailable reports that no key set has been loaded yet.
	ErrKeysUnavailable = errors.New("key set not loaded")
	// ErrBadSignature reports a signature that no matching key verifies.
	ErrBadSignature = errors.New("signature does not verify")
)

// Defaults of KeySetOptions.
const (
	// DefaultKeyWait is how long a request waits for a key set fetch caused by its unknown kid.
	DefaultKeyWait = 2 * time.Second
	// DefaultKeyFetchTimeout bounds one key set fetch.
	DefaultKeyFetchTimeout = 10 * time.Second
)

// KeySet is the authorization server's JSON Web Key Set, fetched from a URL taken from configuration (never from a
// token), and the one place where token signatures are checked (Verify).
//
// Keys are looked up by kid. An unknown kid starts a refetch, at most one at a time and at most once per cooldown;
// the fetch runs detached from the request that caused it, under its own timeout, so a client that goes away neither
// cancels it nor wastes the cooldown, which counts from the end of the last fetch an unknown kid waited for. A request
// waits for the fetch for a short bound only, then fails; the fetch carries on for the requests after it. When the
// endpoint is down, the keys already held keep working. Generation changes whenever the set of keys changes, so that
// caches of verified tokens can be dropped at once when a key is removed.
type KeySet struct {
	client       *http.Client
	cooldown     time.Duration
	wait         time.Duration
	fetchTimeout time.Duration
	now          func() time.Time
	after        func(time.Duration) <-chan time.Time
	algs         []jose.SignatureAlgorithm
	onFetch      func(err error) // metrics hook; may be nil

	keys atomic.Pointer[keySnapshot]

	mu       sync.Mutex
	url      string    // guarded by mu
	inFlight *keyFetch // guarded by mu; the fetch running now, or nil
	lastEnd  time.Time // guarded by mu; end of the last fetch an unknown kid waited for
}

type keySnapshot struct {
	keys       []jose.JSONWebKey
	digest     [32]byte
	generation uint64
}

// keyFetch is one fetch of the key set; done is closed when it has ended and its keys (if any) are in place.
type keyFetch struct {
	done chan struct{}
	err  error // set before done is closed
	// forUnknownKey is set when a request with an unknown kid waits for this fetch: its end then starts the cooldown.
	forUnknownKey bool // guarded by KeySet.mu
}

// KeySetOptions configures NewKeySet.
type KeySetOptions struct {
	// URL is the key set's URL, from configuration or discovery, never from a token. Empty: none until SetURL.
	URL    string
	Client *http.Client // nil: http.DefaultClient (give it a timeout)
	// Cooldown is the minimum time from the end of a fetch an unknown kid waited for to the start of the next fetch
	// an unknown kid causes. Zero: none (tests only; the gateway's configuration requires at least 1s).
	Cooldown time.Duration
	// Wait bounds how long a request waits for a fetch before it fails with ErrUnknownKey (ErrKeysUnavailable while
	// no keys are loaded). Zero: DefaultKeyWait (2s). Longer lets a request survive a slower key set endpoint, at the
	// price of holding every request with an unknown kid that long.
	Wait time.Duration
	// FetchTimeout bounds each fetch, which no request can cancel. Zero: DefaultKeyFetchTimeout (10s).
	FetchTimeout time.Duration
	Now          func() time.Time                     // nil: time.Now
	After        func(time.Duration) <-chan time.Time // timer for Wait; nil: time.After
	Algs         []string                             // accepted JWS algorithms
	OnFetch      func(err error)                      // called after every fetch with its outcome
}

// NewKeySet returns a key set that has no keys until Refresh succeeds.
func NewKeySet(o KeySetOptions) *KeySet {
	ks := &KeySet{url: o.URL, client: o.Client, cooldown: o.Cooldown, wait: o.Wait, fetchTimeout: o.FetchTimeout,
		now: o.Now, after: o.After, onFetch: o.OnFetch}
	if ks.client == nil {
		ks.client = http.DefaultClient
	}
	if ks.wait <= 0 {
		ks.wait = DefaultKeyWait
	}
	if ks.fetchTimeout <= 0 {
		ks.fetchTimeout = DefaultKeyFetchTimeout
	}
	if ks.now == nil {
		ks.now = time.Now
	}
	if ks.after == nil {
		ks.after = time.After
	}
	for _, a := range o.Algs {
		ks.algs = append(ks.algs, jose.SignatureAlgorithm(a))
	}
	return ks
}

// SetURL sets the key set's URL, found by discovery. A fetch already running keeps the URL it started with.
func (ks *KeySet) SetURL(u string) {
	ks.mu.Lock()
	ks.url = u
	ks.mu.Unlock()
}

// Loaded reports whether a key set has been fetched.
func (ks *KeySet) Loaded() bool { return ks.keys.Load() != nil }

// Generation identifies the current set of keys; it changes whenever a fetch brings a different set.
func (ks *KeySet) Generation() uint64 {
	if s := ks.keys.Load(); s != nil {
		return s.generation
	}
	return 0
}

// Refresh fetches the key set now, or joins the fetch already running, and returns its outcome. On failure the keys
// already held are kept. When ctx ends first, Refresh returns ctx's error and the fetch goes on.
func (ks *KeySet) Refresh(ctx context.Context) error {
	ks.mu.Lock()
	f := ks.inFlight
	if f == nil {
		f = ks.startLocked()
	}
	ks.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLocked starts a fetch detached from any request. ks.mu must be held.
func (ks *KeySet) startLocked() *keyFetch {
	f := &keyFetch{done: make(chan struct{})}
	ks.inFlight = f
	url := ks.url
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ks.fetchTimeout)
		err := ks.fetch(ctx, url)
		cancel()
		ks.mu.Lock()
		ks.inFlight = nil
		if f.forUnknownKey {
			ks.lastEnd = ks.now()
		}
		f.err = err
		ks.mu.Unlock()
		close(f.done)
	}()
	return f
}

// fetch loads the key set from url and, when it differs from the one held, replaces it.
func (ks *KeySet) fetch(ctx context.Context, url string) (err error) {
	defer func() {
		if ks.onFetch != nil {
			ks.onFetch(err)
		}
	}()
	if url == "" {
		return errors.New("fetch key set: no URL yet (the authorization server has not been discovered)")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("fetch key set %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch key set %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch key set %s: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20+1))
	if err != nil {
		return fmt.Errorf("fetch key set %s: %w", url, err)
	}
	if len(body) > 1<<20 {
		return fmt.Errorf("fetch key set %s: larger than 1 MiB", url)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("fetch key set %s: not a JSON Web Key Set: %w", url, err)
	}
	var usable []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.IsPublic() && (k.Use == "" || k.Use == "sig") && k.Valid() {
			usable = append(usable, k)
		}
	}
	if len(usable) == 0 {
		return fmt.Errorf("fetch key set %s: no usable public signing keys", url)
	}
	digest := sha256.Sum256(body)
	old := ks.keys.Load()
	next := &keySnapshot{keys: usable, digest: digest, generation: 1}
	if old != nil {
		if old.digest == digest {
			return nil
		}
		next.generation = old.generation + 1
	}
	ks.keys.Store(next)
	return nil
}

// Verify checks the signature of a compact JWS against the key set and returns its payload. It is the gateway's
// only signature check. Its errors wrap ErrMalformedToken, ErrUnknownKey, ErrKeysUnavailable or ErrBadSignature.
//
// A kid the key set lacks makes it wait, for Wait at most, for a refetch (see KeySet); while no keys are loaded it
// only waits for a fetch already running (the first load is the gateway's discovery's to start).
func (ks *KeySet) Verify(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, ks.algs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedToken, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, ErrMalformedToken
	}
	kid := jws.Signatures[0].Header.KeyID
	snap := ks.keys.Load()
	if !hasKey(snap, kid) {
		if snap, err = ks.awaitKey(ctx, kid); err != nil {
			return nil, err
		}
	}
	for _, k := range snap.keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(k); err == nil {
			return payload, nil
		}
	}
	return nil, ErrBadSignature
}

// hasKey reports whether snap has a key for kid; a token without kid matches any key.
func hasKey(s *keySnapshot, kid string) bool {
	if s == nil {
		return false
	}
	if kid == "" {
		return len(s.keys) > 0
	}
	for _, k := range s.keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

// awaitKey returns a snapshot that has kid, after waiting for a fetch if one runs or may be started; else the error
// to answer with.
func (ks *KeySet) awaitKey(ctx context.Context, kid string) (*keySnapshot, error) {
	ks.mu.Lock()
	cur := ks.keys.Load()
	if hasKey(cur, kid) { // a fetch that ended since the caller looked brought it
		ks.mu.Unlock()
		return cur, nil
	}
	f := ks.inFlight
	switch {
	case f != nil:
	case cur == nil:
		// Requests never start the first load: its URL comes from discovery, which retries with its own backoff.
	case ks.lastEnd.IsZero() || ks.now().Sub(ks.lastEnd) >= ks.cooldown:
		f = ks.startLocked()
	}
	if f != nil && cur != nil {
		f.forUnknownKey = true
	}
	ks.mu.Unlock()
	if f == nil {
		return nil, missing(cur, "kid not in the key set, and the last refetch ended less than the cooldown ago")
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, missing(ks.keys.Load(), "request ended while the key set was being fetched: "+ctx.Err().Error())
	case <-ks.after(ks.wait):
		return nil, missing(ks.keys.Load(), "key set fetch still running after "+ks.wait.String())
	}
	if cur = ks.keys.Load(); !hasKey(cur, kid) {
		why := "kid not in the key set fetched again"
		if f.err != nil {
			why = "key set fetch failed: " + f.err.Error()
		}
		return nil, missing(cur, why)
	}
	return cur, nil
}

// missing is the error for a kid that cur lacks: ErrKeysUnavailable while no keys are loaded, else ErrUnknownKey.
func missing(cur *keySnapshot, why string) error {
	if cur == nil {
		return fmt.Errorf("%w: %s", ErrKeysUnavailable, why)
	}
	return fmt.Errorf("%w: %s", ErrUnknownKey, why)
}
