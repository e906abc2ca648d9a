package authserver

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Per-minute limits. A person starts a sign-in a few times a day and a client refreshes once per access-token
// lifetime, so these leave room for many people behind one address; they stop a party that loops /authorize and
// /callback, registers clients by the thousand, or makes the gateway call the token endpoint in a loop. Beyond a limit
// the server answers 429 with Retry-After (a page at /authorize) until the minute ends.
const (
	statesPerClient  = 20  // sign-ins started (states minted) per client id
	statesPerAddr    = 120 // sign-ins started per client address
	tokensPerClient  = 60  // token requests sent to the authorization server per client id
	tokensPerAddr    = 600 // token requests sent to the authorization server per client address
	registersPerAddr = 60  // registrations per client address
	cimdPerAddr      = 30  // metadata documents fetched (cache misses) per client address
	cimdPerHost      = 60  // metadata documents fetched per host they are fetched from (URLs not known)
	cimdKnownPerHost = 60  // refetches per host of URLs whose last fetch gave a valid document (cimd.Admit's known)
	cimdInflight     = 2   // metadata document fetches under way at once per client address
	cimdHostInflight = 4   // metadata document fetches under way at once per host they are fetched from
	// limiterKeys is how many client ids or addresses each limit counts per minute; beyond, new ones pass uncounted.
	limiterKeys = 10_000
	// usedStates is how many used states the replay memory holds; beyond, the oldest are forgotten.
	usedStates = 100_000
)

// limits are the server's rate limiters, each bounded by limiterKeys.
type limits struct {
	statesByClient, statesByAddr, tokensByClient, tokensByAddr, registersByAddr *rateLimiter
	cimdByAddr, cimdByHost, cimdKnownByHost                                     *rateLimiter
	cimdInflight, cimdHostInflight                                              *inflightLimiter
}

func newLimits() limits {
	return limits{
		statesByClient:   newRateLimiter(statesPerClient, limiterKeys),
		statesByAddr:     newRateLimiter(statesPerAddr, limiterKeys),
		tokensByClient:   newRateLimiter(tokensPerClient, limiterKeys),
		tokensByAddr:     newRateLimiter(tokensPerAddr, limiterKeys),
		registersByAddr:  newRateLimiter(registersPerAddr, limiterKeys),
		cimdByAddr:       newRateLimiter(cimdPerAddr, limiterKeys),
		cimdByHost:       newRateLimiter(cimdPerHost, limiterKeys),
		cimdKnownByHost:  newRateLimiter(cimdKnownPerHost, limiterKeys),
		cimdInflight:     &inflightLimiter{per: cimdInflight, max: limiterKeys, n: map[string]int{}},
		cimdHostInflight: &inflightLimiter{per: cimdHostInflight, max: limiterKeys, n: map[string]int{}},
	}
}

// inflightLimiter counts work under way per key, at most per at once for each. It holds at most max keys: once full,
// a new key is let through uncounted, so that filling it never refuses anyone.
type inflightLimiter struct {
	mu       sync.Mutex
	per, max int
	n        map[string]int
}

// acquire counts one more piece of work for key and returns the function that ends it, or false when key has per
// under way.
func (l *inflightLimiter) acquire(key string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, known := l.n[key]
	switch {
	case !known && len(l.n) >= l.max:
		return func() {}, true
	case n >= l.per:
		return nil, false
	}
	l.n[key] = n + 1
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.n[key] <= 1 {
				delete(l.n, key)
			} else {
				l.n[key]--
			}
		})
	}, true
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

// UsedStore is the replay memory of sign-in states: each state is accepted at /callback once. Without a shared store
// (Options.Used) every replica keeps its own, and a callback replayed at another replica is refused only by the state's
// other bindings (its browser and its expiry) and by the authorization server accepting each code once.
type UsedStore interface {
	// Use records id as used for at least ttl and reports whether it was unused. An error means the store cannot tell
	// (it is unreachable); the caller then refuses the request, since accepting could accept a replay. Use must
	// return within a short bound.
	Use(ctx context.Context, id string, ttl time.Duration) (fresh bool, err error)
}

// usedSet remembers single-use ids in this process's memory: the default UsedStore. It is bounded: when full, it forgets the oldest id to make room. It never refuses:
// anyone can fill it (a state is minted for whoever asks), so a full set must not stop anyone else's sign-in. Forgetting
// is safe because a state is also bound to its browser and expires, and the authorization server accepts each code once.
type usedSet struct {
	mu   sync.Mutex
	max  int
	ids  map[string]struct{}
	ring []string // insertion order; ring[next] is the oldest once full
	next int
}

func newUsedSet(max int) *usedSet {
	return &usedSet{max: max, ids: map[string]struct{}{}}
}

// Use implements [UsedStore]; it never fails and ignores ttl (the set forgets by age instead).
func (u *usedSet) Use(_ context.Context, id string, _ time.Duration) (bool, error) {
	return u.use(id), nil
}

// use records id and reports whether it was unused.
func (u *usedSet) use(id string) (fresh bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, seen := u.ids[id]; seen {
		return false
	}
	if len(u.ring) < u.max {
		u.ring = append(u.ring, id)
	} else {
		delete(u.ids, u.ring[u.next])
		u.ring[u.next] = id
		u.next = (u.next + 1) % len(u.ring)
	}
	u.ids[id] = struct{}{}
	return true
}

// rateLimiter counts events per key in fixed windows of one minute. It holds at most max keys: once full, a key not
// yet counted in the current window is let through uncounted, so that filling it (with many client ids or addresses)
// lifts limits but never refuses anyone. The counts start over every minute.
type rateLimiter struct {
	mu     sync.Mutex
	limit  int
	max    int
	window int64 // unix minute of counts
	counts map[string]int
}

func newRateLimiter(limit, max int) *rateLimiter {
	return &rateLimiter{limit: limit, max: max, counts: map[string]int{}}
}

// allow counts one event for key at now and reports whether it is within the limit; when not, it also returns how
// long until the window ends.
func (l *rateLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := now.Unix() / 60
	if w != l.window {
		l.window = w
		clear(l.counts)
	}
	n, ok := l.counts[key]
	if !ok && len(l.counts) >= l.max {
		return true, 0
	}
	if n >= l.limit {
		return false, time.Unix((w+1)*60, 0).Sub(now)
	}
	l.counts[key] = n + 1
	return true, 0
}
