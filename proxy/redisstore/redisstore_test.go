package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/mcp-gateway/gateway/proxy/redisstore"
	"github.com/mcp-gateway/gateway/proxy/redisstore/redistest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	srv  *redistest.Server
	c    *redisstore.Client
	up   prometheus.Gauge
	errs *prometheus.CounterVec
	log  *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{srv: redistest.New(t), log: &syncBuffer{},
		up:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "up"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "errors"}, []string{"op"})}
	o, err := redis.ParseURL(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	f.c = redisstore.New(redisstore.Options{Redis: o, RetryEvery: 20 * time.Millisecond, Up: f.up, Errors: f.errs,
		Logger: slog.New(slog.NewJSONHandler(f.log, nil))})
	t.Cleanup(func() { f.c.Close() })
	return f
}

// TestOnceIsSingleUse: an id is fresh once, on any client of the same Redis, and expires with its TTL.
func TestOnceIsSingleUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.c.Once("s:"), f.c.Once("s:")
	if fresh, err := a.Use(ctx, "id1", time.Minute); !fresh || err != nil {
		t.Fatalf("first use: got %v, %v, want fresh", fresh, err)
	}
	if fresh, err := b.Use(ctx, "id1", time.Minute); fresh || err != nil {
		t.Errorf("replay: got %v, %v, want not fresh, no error", fresh, err)
	}
	if fresh, _ := f.c.Once("other:").Use(ctx, "id1", time.Minute); !fresh {
		t.Error("the same id under another prefix: not fresh, want fresh")
	}
	if fresh, _ := a.Use(ctx, "short", 50*time.Millisecond); !fresh {
		t.Fatal("short: not fresh")
	}
	time.Sleep(100 * time.Millisecond) // Redis's expiry, on its own clock
	if fresh, _ := a.Use(ctx, "short", 50*time.Millisecond); !fresh {
		t.Error("after its TTL: not fresh, want fresh (expired)")
	}
}

// TestOnceFailsClosedAndRecovers: while Redis is stopped, Use refuses at once with ErrUnavailable (never fresh), the
// gauge says down, the errors are counted and the outage is logged once; once Redis is back, the next trial call
// brings it back by itself.
func TestOnceFailsClosedAndRecovers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	o := f.c.Once("s:")
	if _, err := o.Use(ctx, "before", time.Minute); err != nil {
		t.Fatal(err)
	}
	f.srv.Stop()
	for i := range 5 {
		start := time.Now()
		fresh, err := o.Use(ctx, "during", time.Minute)
		if fresh || !errors.Is(err, redisstore.ErrUnavailable) {
			t.Errorf("call %d while stopped: got %v, %v, want not fresh and ErrUnavailable", i+1, fresh, err)
		}
		if took := time.Since(start); took > redisstore.DefaultTimeout+100*time.Millisecond {
			t.Errorf("call %d while stopped: took %s", i+1, took)
		}
	}
	if got := testutil.ToFloat64(f.up); got != 0 {
		t.Errorf("up gauge while stopped: got %v, want 0", got)
	}
	if got := testutil.ToFloat64(f.errs.WithLabelValues("once")); got < 1 || got > 2 {
		t.Errorf("errors{op=once}: got %v, want 1 or 2 (the calls while down are not tried)", got)
	}
	if n := strings.Count(f.log.String(), "redis does not answer"); n != 1 {
		t.Errorf("warnings: got %d, want 1\n%s", n, f.log.String())
	}
	if err := f.srv.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var fresh bool
	var err error
	for time.Now().Before(deadline) {
		if fresh, err = o.Use(ctx, "during", time.Minute); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !fresh || err != nil {
		t.Fatalf("after the restart: got %v, %v, want fresh", fresh, err)
	}
	if got := testutil.ToFloat64(f.up); got != 1 || !f.c.Up() {
		t.Errorf("up after the restart: gauge %v, Up() %v, want 1, true", got, f.c.Up())
	}
	if !strings.Contains(f.log.String(), "redis answers again") {
		t.Errorf("no note that Redis answers again:\n%s", f.log.String())
	}
}

// TestHungRedisIsBounded: a Redis that accepts but does not answer holds a call only for the timeout.
func TestHungRedisIsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if !f.c.Check(ctx) {
		t.Fatal("Check before the hang: false")
	}
	f.srv.Pause()
	defer f.srv.Resume()
	start := time.Now()
	_, err := f.c.Once("s:").Use(ctx, "x", time.Minute)
	if took := time.Since(start); took > redisstore.DefaultTimeout+100*time.Millisecond {
		t.Errorf("call to a hung Redis took %s, want about %s", took, redisstore.DefaultTimeout)
	}
	if !errors.Is(err, redisstore.ErrUnavailable) {
		t.Errorf("error: got %v, want ErrUnavailable", err)
	}
}

// TestCallerCancellationIsNotAnOutage: a caller whose context has ended (a client that hung up) still gets its call
// made, and does not mark Redis down for everyone else.
func TestCallerCancellationIsNotAnOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if fresh, err := f.c.Once("s:").Use(ctx, "x", time.Minute); !fresh || err != nil {
		t.Errorf("with a cancelled caller: got %v, %v, want fresh", fresh, err)
	}
	if !f.c.Up() {
		t.Error("Up() false after a cancelled caller's call")
	}
}
