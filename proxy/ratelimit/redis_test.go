package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/ratelimit"
	"github.com/mcp-gateway/gateway/proxy/redisstore"
	"github.com/mcp-gateway/gateway/proxy/redisstore/redistest"
)

// newRedisLimiter starts a redis-server and returns a limiter on it (prefix "t:") and the server.
func newRedisLimiter(t *testing.T, fallback ratelimit.Limiter) (*ratelimit.Redis, *redistest.Server, *redisstore.Client) {
	t.Helper()
	srv := redistest.New(t)
	cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "GATEWAY_REDIS_URL": srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	c := redisstore.New(redisstore.Options{Redis: cfg.RedisOptions(), RetryEvery: 20 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	if fallback == nil {
		fallback = ratelimit.NewMemory(10, nil)
	}
	return ratelimit.NewRedis(c, "t:", fallback), srv, c
}

// TestRedisBurstAndRetry: the bucket starts full (burst), a request beyond it is refused with the time until the next
// token, a refusal costs no token, and another key has its own bucket.
func TestRedisBurstAndRetry(t *testing.T) {
	t.Parallel()
	l, _, _ := newRedisLimiter(t, nil)
	ctx := context.Background()
	r := config.Rate{PerSecond: 1.0 / 60, Burst: 3} // 1/m: the test cannot outlast a token
	for i := range 3 {
		if ok, retry := l.Allow(ctx, "alice", r); !ok {
			t.Fatalf("request %d within the burst: refused, retry %s", i+1, retry)
		}
	}
	for i := range 2 {
		ok, retry := l.Allow(ctx, "alice", r)
		if ok {
			t.Fatalf("refusal %d beyond the burst: allowed", i+1)
		}
		if retry <= 59*time.Second || retry > 60*time.Second {
			t.Errorf("refusal %d: retry got %s, want just under 60s (one token at 1/m; a refusal takes none)", i+1, retry)
		}
	}
	if ok, _ := l.Allow(ctx, "bob", r); !ok {
		t.Error("another key: refused, want its own full bucket")
	}
}

// TestRedisRefill: a bucket refills at its rate, and the retry value is when it has.
func TestRedisRefill(t *testing.T) {
	t.Parallel()
	l, _, _ := newRedisLimiter(t, nil)
	ctx := context.Background()
	r := config.Rate{PerSecond: 20, Burst: 2} // one token every 50ms
	l.Allow(ctx, "k", r)
	l.Allow(ctx, "k", r)
	ok, retry := l.Allow(ctx, "k", r)
	if ok || retry <= 0 || retry > 50*time.Millisecond {
		t.Fatalf("beyond the burst: got %v, retry %s, want refused with a retry in (0, 50ms]", ok, retry)
	}
	time.Sleep(retry) // Redis's clock, not an injectable one: wait for it
	if ok, retry := l.Allow(ctx, "k", r); !ok {
		t.Fatalf("after the retry time: refused, retry %s", retry)
	}
	if ok, _ := l.Allow(ctx, "k", r); ok {
		t.Error("the refilled token taken: allowed again, want refused")
	}
}

// TestRedisKeysExpire: a key lives only until its bucket is full again, so Redis does not grow with the callers seen.
func TestRedisKeysExpire(t *testing.T) {
	t.Parallel()
	l, _, c := newRedisLimiter(t, nil)
	ctx := context.Background()
	l.Allow(ctx, "k", config.Rate{PerSecond: 1.0 / 60, Burst: 5})
	var ttl time.Duration
	err := c.Do(ctx, "test", func(ctx context.Context, rdb *redis.Client) error {
		var err error
		ttl, err = rdb.PTTL(ctx, "t:k").Result()
		return err
	})
	if err != nil || ttl <= 59*time.Second || ttl > 60*time.Second {
		t.Errorf("TTL of t:k after one of five tokens at 1/m: got %s, %v, want just under 60s (until the bucket is full)", ttl, err)
	}
}

// TestRedisDownFallsBack: with Redis stopped or hung, Allow answers from the fallback within the bound, and Redis's
// buckets are used again once it is back, without anyone's help.
func TestRedisDownFallsBack(t *testing.T) {
	t.Parallel()
	mem := ratelimit.NewMemory(10, nil)
	l, srv, c := newRedisLimiter(t, mem)
	ctx := context.Background()
	r := config.Rate{PerSecond: 1.0 / 60, Burst: 1}
	if ok, _ := l.Allow(ctx, "k", r); !ok {
		t.Fatal("first request: refused")
	}
	if mem.Len() != 0 {
		t.Fatalf("the fallback was used while Redis answered (%d keys)", mem.Len())
	}
	for _, outage := range []struct {
		name       string
		start, end func()
	}{
		{"stopped", srv.Stop, func() {
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
		}},
		{"hung", srv.Pause, srv.Resume},
	} {
		outage.start()
		for i := range 3 {
			start := time.Now()
			ok, _ := l.Allow(ctx, "k-"+outage.name, r)
			if took := time.Since(start); took > redisstore.DefaultTimeout+100*time.Millisecond {
				t.Errorf("%s, call %d: took %s, want at most the timeout (%s)", outage.name, i+1, took, redisstore.DefaultTimeout)
			}
			if want := i == 0; ok != want {
				t.Errorf("%s, call %d: got %v, want %v (the fallback's own bucket of 1)", outage.name, i+1, ok, want)
			}
		}
		if c.Up() {
			t.Errorf("%s: Up() true, want false", outage.name)
		}
		outage.end()
		deadline := time.Now().Add(5 * time.Second)
		for !c.Up() && time.Now().Before(deadline) {
			l.Allow(ctx, "other", r)
			time.Sleep(10 * time.Millisecond)
		}
		if !c.Up() {
			t.Fatalf("%s, then back: Up() still false after 5s", outage.name)
		}
	}
}
