package ratelimit

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/mcp-gateway/gateway/proxy/config"
)

// TestMemory checks the token bucket per key: the burst passes, the next request is refused with the time until
// a token is back, other keys are not affected, and the bucket refills.
func TestMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(1_000_000, 0)
	l := NewMemory(10, func() time.Time { return now })
	r := config.Rate{PerSecond: 0.5, Burst: 2}
	for i := range 2 {
		if ok, _ := l.Allow(ctx, "a", r); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, retry := l.Allow(ctx, "a", r)
	if ok || retry != 2*time.Second {
		t.Fatalf("over the burst: got %t, %s, want false, 2s", ok, retry)
	}
	if ok, _ := l.Allow(ctx, "b", r); !ok {
		t.Error("another key was refused")
	}
	now = now.Add(2 * time.Second)
	if ok, _ := l.Allow(ctx, "a", r); !ok {
		t.Error("refused after the bucket refilled a token")
	}
	if ok, _ := l.Allow(ctx, "a", r); ok {
		t.Error("a refused request took no token, so only one is back")
	}
}

// TestMemoryBounded floods a limiter with new keys, as addresses anyone can choose: it never holds more than its
// maximum, never refuses a new key, and, once the buckets have refilled, counts new keys again.
func TestMemoryBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(1_000_000, 0)
	l := NewMemory(100, func() time.Time { return now })
	r := config.Rate{PerSecond: 1, Burst: 1}
	for i := range 10_000 {
		if ok, _ := l.Allow(ctx, "addr"+strconv.Itoa(i), r); !ok {
			t.Fatalf("new key %d refused", i)
		}
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("buckets after the flood: got %d, want 100", n)
	}
	now = now.Add(sweepEvery)
	l.Allow(ctx, "late", r)
	l.Allow(ctx, "late", r)
	if ok, _ := l.Allow(ctx, "late", r); ok {
		t.Error("after the sweep, a new key is still not counted")
	}
	if n := l.Len(); n != 1 {
		t.Errorf("buckets after the sweep: got %d, want 1", n)
	}
}

// TestMemoryRateChange checks that a bucket adopts a new rate for its key (a policy reloaded with another limit).
func TestMemoryRateChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(1_000_000, 0)
	l := NewMemory(10, func() time.Time { return now })
	if ok, _ := l.Allow(ctx, "a", config.Rate{PerSecond: 1, Burst: 1}); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := l.Allow(ctx, "a", config.Rate{PerSecond: 1, Burst: 1}); ok {
		t.Fatal("second request within the second passed a burst of 1")
	}
	now = now.Add(time.Second)
	if ok, _ := l.Allow(ctx, "a", config.Rate{PerSecond: 0.1, Burst: 1}); !ok {
		t.Fatal("refused after a second at the old rate")
	}
	now = now.Add(time.Second)
	if ok, retry := l.Allow(ctx, "a", config.Rate{PerSecond: 0.1, Burst: 1}); ok || retry != 9*time.Second {
		t.Fatalf("at the new rate, a second later: got %t, %s, want false, 9s", ok, retry)
	}
}
