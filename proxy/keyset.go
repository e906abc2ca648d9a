package proxy

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

// Key set errors, for callers that branch on them.
var (
	// ErrUnknownKey reports a token signed with a key that is not in the key set, even after a refetch.
	ErrUnknownKey = errors.New("no key in the key set matches the token")
	// ErrKeysUnavailable reports that no key set has been loaded yet.
	ErrKeysUnavailable = errors.New("key set not loaded")
	// ErrBadSignature reports a signature that no matching key verifies.
	ErrBadSignature = errors.New("signature does not verify")
)

// KeySet is the authorization server's JSON Web Key Set, fetched from a URL taken from configuration (never from a
// token). It implements oidc.KeySet. Keys are looked up by kid; an unknown kid causes one refetch, at most once per
// cooldown; when the endpoint is down, the keys already held keep working. Generation changes whenever the set of keys
// changes, so that caches of verified tokens can be dropped at once when a key is removed.
type KeySet struct {
	url      string
	client   *http.Client
	cooldown time.Duration
	now      func() time.Time
	algs     []jose.SignatureAlgorithm
	onFetch  func(err error) // metrics hook; may be nil

	keys atomic.Pointer[keySnapshot]

	fetchMu   sync.Mutex // one fetch at a time
	lastFetch time.Time  // guarded by fetchMu; start of the last fetch caused by an unknown kid
}

type keySnapshot struct {
	keys       []jose.JSONWebKey
	digest     [32]byte
	generation uint64
}

// KeySetOptions configures NewKeySet.
type KeySetOptions struct {
	URL      string
	Client   *http.Client     // nil: http.DefaultClient (give it a timeout)
	Cooldown time.Duration    // minimum time between refetches caused by unknown kids
	Now      func() time.Time // nil: time.Now
	Algs     []string         // accepted JWS algorithms
	OnFetch  func(err error)  // called after every fetch with its outcome
}

// NewKeySet returns a key set that has no keys until Refresh succeeds.
func NewKeySet(o KeySetOptions) *KeySet {
	ks := &KeySet{url: o.URL, client: o.Client, cooldown: o.Cooldown, now: o.Now, onFetch: o.OnFetch}
	if ks.client == nil {
		ks.client = http.DefaultClient
	}
	if ks.now == nil {
		ks.now = time.Now
	}
	for _, a := range o.Algs {
		ks.algs = append(ks.algs, jose.SignatureAlgorithm(a))
	}
	return ks
}

// SetURL sets the key set's URL, found by discovery.
func (ks *KeySet) SetURL(u string) {
	ks.fetchMu.Lock()
	ks.url = u
	ks.fetchMu.Unlock()
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

// Refresh fetches the key set now. On failure the keys already held are kept.
func (ks *KeySet) Refresh(ctx context.Context) error {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	return ks.fetch(ctx)
}

// fetch must be called with fetchMu held.
func (ks *KeySet) fetch(ctx context.Context) (err error) {
	defer func() {
		if ks.onFetch != nil {
			ks.onFetch(err)
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return fmt.Errorf("fetch key set %s: %w", ks.url, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch key set %s: %w", ks.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch key set %s: status %s", ks.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20+1))
	if err != nil {
		return fmt.Errorf("fetch key set %s: %w", ks.url, err)
	}
	if len(body) > 1<<20 {
		return fmt.Errorf("fetch key set %s: larger than 1 MiB", ks.url)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("fetch key set %s: not a JSON Web Key Set: %w", ks.url, err)
	}
	var usable []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.IsPublic() && (k.Use == "" || k.Use == "sig") && k.Valid() {
			usable = append(usable, k)
		}
	}
	if len(usable) == 0 {
		return fmt.Errorf("fetch key set %s: no usable public signing keys", ks.url)
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

// VerifySignature verifies a compact JWS against the key set and returns its payload. It implements oidc.KeySet.
func (ks *KeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, ks.algs)
	if err != nil {
		return nil, fmt.Errorf("parse token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must have exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	snap := ks.keys.Load()
	if snap == nil {
		return nil, ErrKeysUnavailable
	}
	if !hasKey(snap, kid) {
		snap = ks.refetchForUnknownKey(ctx, snap, kid)
		if !hasKey(snap, kid) {
			return nil, ErrUnknownKey
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

// refetchForUnknownKey fetches the key set once per cooldown and returns the newest snapshot. Concurrent callers wait
// for the fetch in progress instead of starting their own.
func (ks *KeySet) refetchForUnknownKey(ctx context.Context, seen *keySnapshot, kid string) *keySnapshot {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	if cur := ks.keys.Load(); cur != seen && hasKey(cur, kid) {
		return cur // another caller's fetch brought it
	}
	now := ks.now()
	if !ks.lastFetch.IsZero() && now.Sub(ks.lastFetch) < ks.cooldown {
		return ks.keys.Load()
	}
	ks.lastFetch = now
	_ = ks.fetch(ctx) // the outcome reaches metrics through onFetch; the old keys stay on failure
	return ks.keys.Load()
}
