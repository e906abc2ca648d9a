// Package redisstore connects the gateway to the Redis its replicas share (GATEWAY_REDIS_URL): a Client that bounds
// every call by a short timeout and keeps track of whether Redis answers, and the single-use set built on it (Once).
// The rate limiter on it is package ratelimit's Redis.
//
// Every call takes at most Options.Timeout. Once a call fails, Redis counts as down: calls fail at once with
// ErrUnavailable, without touching the network, except one trial call per RetryEvery, whose success brings Redis back.
// So a Redis that is down or hangs costs a request nothing, or at worst the timeout, and recovery needs no one.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Defaults of Options.
const (
	// DefaultTimeout bounds each call: a round trip to a Redis next to the gateway takes well under a millisecond.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultRetryEvery is how often a trial call goes to a Redis that is down.
	DefaultRetryEvery = time.Second
	// logEvery is the shortest time between two warnings that Redis is down.
	logEvery = 10 * time.Second
)

// ErrUnavailable is the error of a call Redis did not answer in time or at all (wrapping the cause), and of a call not
// tried because Redis is down.
var ErrUnavailable = errors.New("redis unavailable")

// Options configure a Client.
type Options struct {
	// Redis are the connection options (config.Config.RedisOptions). The Client sets ContextTimeoutEnabled (so that
	// a hung server cannot hold a call past its deadline) and turns off retries (a retry would not fit in the bound).
	// Required.
	Redis *redis.Options
	// Timeout bounds each call. 0: DefaultTimeout.
	Timeout time.Duration
	// RetryEvery is how often a call is tried while Redis is down. 0: DefaultRetryEvery.
	RetryEvery time.Duration
	// Logger receives a warning when Redis stops answering (at most one per 10s) and a note when it answers again.
	// nil: discard.
	Logger *slog.Logger
	// Up, when set, is 1 while Redis answers and 0 while it does not.
	Up prometheus.Gauge
	// Errors, when set, counts the calls that failed, by operation (a label with one value per caller, fixed in code).
	Errors *prometheus.CounterVec
	// Now is the clock. nil: time.Now.
	Now func() time.Time
}

// Client is a go-redis client whose calls are bounded and whose failures mark Redis down until a trial call succeeds.
// It is safe for concurrent use.
type Client struct {
	rdb        *redis.Client
	timeout    time.Duration
	retryEvery time.Duration
	log        *slog.Logger
	upGauge    prometheus.Gauge
	errs       *prometheus.CounterVec
	now        func() time.Time
	addr       string

	down     atomic.Bool
	nextTry  atomic.Int64 // unix nanoseconds before which no call is tried while down
	warn     rate.Sometimes
	pingMu   sync.Mutex
	pingedAt time.Time
}

// New returns a Client for o. It does no I/O: the first call connects.
func New(o Options) *Client {
	ro := *o.Redis
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = -1
	ro.DisableIdentity = true // no CLIENT SETINFO on each new connection: one round trip fewer, nothing to log
	c := &Client{rdb: redis.NewClient(&ro), timeout: o.Timeout, retryEvery: o.RetryEvery, log: o.Logger,
		upGauge: o.Up, errs: o.Errors, now: o.Now, addr: ro.Addr, warn: rate.Sometimes{Interval: logEvery}}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.retryEvery <= 0 {
		c.retryEvery = DefaultRetryEvery
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.upGauge != nil {
		c.upGauge.Set(1) // until a call says otherwise: nothing is known to be wrong
	}
	return c
}

// Do runs f with the go-redis client and a context that ends after the timeout. op names the caller in the errors
// metric. An error f returns other than redis.Nil marks Redis down; while it is down, Do returns ErrUnavailable without
// calling f, except for one trial per RetryEvery. The caller's cancellation does not reach f: a client that hangs up
// must not make Redis look down.
func (c *Client) Do(ctx context.Context, op string, f func(ctx context.Context, rdb *redis.Client) error) error {
	if c.down.Load() {
		next, now := c.nextTry.Load(), c.now().UnixNano()
		if now < next || !c.nextTry.CompareAndSwap(next, now+c.retryEvery.Nanoseconds()) {
			return fmt.Errorf("%w: down since a call failed; retried every %s", ErrUnavailable, c.retryEvery)
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	err := f(ctx, c.rdb)
	if err != nil && !errors.Is(err, redis.Nil) {
		c.failed(op, err)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	c.answered()
	return err
}

// failed marks Redis down after a failed call.
func (c *Client) failed(op string, err error) {
	if c.errs != nil {
		c.errs.WithLabelValues(op).Inc()
	}
	c.nextTry.Store(c.now().Add(c.retryEvery).UnixNano())
	if !c.down.Swap(true) && c.upGauge != nil {
		c.upGauge.Set(0)
	}
	c.warn.Do(func() {
		c.log.Warn("redis does not answer: rate limits fall back to each replica's memory, sign-ins cannot complete; "+
			"retrying (logged once per interval)", "redis", c.addr, "op", op, "err", err, "interval", logEvery.String())
	})
}

// answered marks Redis up after a call it answered.
func (c *Client) answered() {
	if c.down.Swap(false) {
		if c.upGauge != nil {
			c.upGauge.Set(1)
		}
		c.log.Info("redis answers again: rate limits and sign-ins are shared by the replicas again", "redis", c.addr)
	}
}

// Up reports whether Redis answered the last call made to it (true before the first).
func (c *Client) Up() bool { return !c.down.Load() }

// Check reports whether Redis answers: it sends PING at most once a second (a probe such as /readyz must not turn
// into load on Redis) and otherwise reports what the last call saw.
func (c *Client) Check(ctx context.Context) bool {
	c.pingMu.Lock()
	now := c.now()
	due := c.pingedAt.IsZero() || now.Sub(c.pingedAt) >= time.Second
	if due {
		c.pingedAt = now
	}
	c.pingMu.Unlock()
	if due {
		c.Do(ctx, "ping", func(ctx context.Context, rdb *redis.Client) error { return rdb.Ping(ctx).Err() })
	}
	return c.Up()
}

// Addr is the host:port of Redis, for logs.
func (c *Client) Addr() string { return c.addr }

// Close closes the connections.
func (c *Client) Close() error { return c.rdb.Close() }
