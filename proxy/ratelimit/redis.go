package ratelimit

import (
	"context"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/redisstore"
)

// gcra is the Generic Cell Rate Algorithm in one round trip: the token bucket of x/time/rate (Burst tokens, refilled
// at PerSecond) kept as one number per key, the theoretical arrival time (TAT) of the next request, in microseconds of
// Redis's clock (TIME), so that replicas whose clocks differ still share one bucket. A request is allowed when TAT
// minus the burst's tolerance is not in the future; it then moves TAT on by one emission interval. The key expires
// when its bucket is full again, so an idle key costs nothing. A refused request writes nothing.
//
// KEYS[1] the bucket's key; ARGV[1] the emission interval (µs per token), ARGV[2] the burst.
// Returns 0 when allowed, else how long until it would be, in µs (at least 1).
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = emission * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - tolerance
if allow_at > now then
  return math.max(1, math.ceil(allow_at - now))
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return 0
`)

// Redis is a Limiter whose buckets live in Redis, shared by every replica using the same Redis and prefix. When Redis
// does not answer (or is down, see package redisstore), it fails open to Fallback: each replica then limits on its own,
// so the budget is at worst the limit times the replicas, never no limit and never a refusal Redis caused. Each call
// waits at most the Client's timeout, and none while Redis is known to be down.
type Redis struct {
	c        *redisstore.Client
	prefix   string
	fallback Limiter
}

// NewRedis returns a Redis limiter that keys its buckets prefix+key (such as "mcpgw:rl:user:" + a subject) and asks
// fallback (a Memory) while Redis does not answer.
func NewRedis(c *redisstore.Client, prefix string, fallback Limiter) *Redis {
	return &Redis{c: c, prefix: prefix, fallback: fallback}
}

// Allow implements [Limiter]. The emission interval is counted in whole microseconds: a rate above 1,000,000/s
// counts as 1,000,000/s.
func (l *Redis) Allow(ctx context.Context, key string, r config.Rate) (bool, time.Duration) {
	emission := max(1, math.Round(1e6/r.PerSecond))
	var retry int64
	err := l.c.Do(ctx, "rate_limit", func(ctx context.Context, rdb *redis.Client) error {
		var err error
		retry, err = gcra.Run(ctx, rdb, []string{l.prefix + key}, int64(emission), r.Burst).Int64()
		return err
	})
	if err != nil {
		return l.fallback.Allow(ctx, key, r)
	}
	if retry > 0 {
		return false, time.Duration(retry) * time.Microsecond
	}
	return true, 0
}
