// Package ratelimit holds the gateway's request rate limits: a token bucket per key (a user, a client address, a user
// and a tool), kept in memory by each replica or, with Redis, shared by every replica.
package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mcp-gateway/gateway/proxy/config"
)

// Limiter takes requests from token buckets, one per key.
type Limiter interface {
	// Allow takes one token from key's bucket, which holds r.Burst tokens and refills at r.PerSecond, and reports
	// whether there was one; when not, it also returns how long until there is. r is the same for every call with
	// the same key (a caller that changes a rate changes the key too, or accepts the bucket adopting the new rate).
	// A limiter that cannot tell (its store is unreachable) decides as its documentation says; Allow never blocks
	// longer than a short bound.
	Allow(ctx context.Context, key string, r config.Rate) (ok bool, retry time.Duration)
}

// sweepEvery is the shortest time between two sweeps of a full Memory, so that a flood of new keys costs one sweep
// per interval, not one per request.
const sweepEvery = time.Second

// Memory is a Limiter in this process's memory: a token bucket (x/time/rate) per key, for at most max keys. A bucket
// that has refilled is as good as none, so when the map is full such buckets are swept away; if it is still full, a
// new key passes uncounted: whoever fills the map lifts the limit, never refuses anyone.
type Memory struct {
	mu        sync.Mutex
	max       int
	now       func() time.Time
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

// NewMemory returns a Memory holding buckets for at most maxKeys keys, reading the time from now (time.Now if nil).
func NewMemory(maxKeys int, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{max: maxKeys, now: now, buckets: map[string]*rate.Limiter{}}
}

// Allow implements [Limiter]; it never fails.
func (m *Memory) Allow(_ context.Context, key string, r config.Rate) (bool, time.Duration) {
	now := m.now()
	m.mu.Lock()
	b := m.buckets[key]
	if b == nil {
		if len(m.buckets) >= m.max && now.Sub(m.lastSweep) >= sweepEvery {
			m.lastSweep = now
			for k, b := range m.buckets {
				if b.TokensAt(now) >= float64(b.Burst()) {
					delete(m.buckets, k)
				}
			}
		}
		if len(m.buckets) >= m.max {
			m.mu.Unlock()
			return true, 0
		}
		b = rate.NewLimiter(rate.Limit(r.PerSecond), r.Burst)
		m.buckets[key] = b
	} else if b.Limit() != rate.Limit(r.PerSecond) || b.Burst() != r.Burst {
		b.SetLimitAt(now, rate.Limit(r.PerSecond))
		b.SetBurstAt(now, r.Burst)
	}
	m.mu.Unlock()
	res := b.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Len returns how many keys m holds a bucket for.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.buckets)
}
