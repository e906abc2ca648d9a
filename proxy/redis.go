package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-gateway/gateway/proxy/ratelimit"
	"github.com/mcp-gateway/gateway/proxy/redisstore"
)

// State shared by replicas (GATEWAY_REDIS_URL): the rate limits and Option B's replay memory of sign-in states move to
// Redis, under these prefixes. Streams (GATEWAY_MAX_STREAMS_USER) stay counted per replica: a stream lives on one
// replica, and a count in Redis would outlive a replica that dies holding some. While Redis does not answer, rate limits
// fall back to each replica's memory (fail open to a per-replica limit) and callbacks are refused (fail closed): see
// docs/replicas.md.
const (
	redisUserPrefix      = "mcpgw:rl:user:"      // GATEWAY_RATE_LIMIT_USER buckets, by subject
	redisAnonymousPrefix = "mcpgw:rl:anonymous:" // GATEWAY_RATE_LIMIT_ANONYMOUS buckets, by client address
	redisToolPrefix      = "mcpgw:rl:tool:"      // policy rules' limits, by subject, rule and tool
	redisStatePrefix     = "mcpgw:state:"        // Option B's used sign-in states, by state id
)

// newRedis connects the gateway to GATEWAY_REDIS_URL (no I/O yet) and registers its metrics; nil without it.
func (g *Gateway) newRedis(reg prometheus.Registerer) *redisstore.Client {
	o := g.cfg.RedisOptions()
	if o == nil {
		return nil
	}
	g.metrics.RedisUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mcp_gateway_redis_up", Help: "1 while Redis (GATEWAY_REDIS_URL) answers, 0 while rate limits fall back to each replica's memory and sign-ins cannot complete.",
	})
	g.metrics.RedisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcp_gateway_redis_errors_total", Help: "Calls to Redis that failed or timed out, by operation (rate_limit, once, ping).",
	}, []string{"op"})
	reg.MustRegister(g.metrics.RedisUp, g.metrics.RedisErrors)
	for _, op := range []string{"rate_limit", "once", "ping"} {
		g.metrics.RedisErrors.WithLabelValues(op)
	}
	g.log.Info("state shared by replicas through Redis: rate limits and sign-in states", "redis", o.Addr, "db", o.DB,
		"tls", o.TLSConfig != nil, "timeout", redisstore.DefaultTimeout.String())
	return redisstore.New(redisstore.Options{Redis: o, Logger: g.log, Up: g.metrics.RedisUp, Errors: g.metrics.RedisErrors, Now: g.now})
}

// shareThrough moves the rate limits that are on to Redis, each keeping its memory limiter as the fallback.
func (l *limits) shareThrough(c *redisstore.Client) {
	if l.user != nil {
		l.user = ratelimit.NewRedis(c, redisUserPrefix, l.user)
	}
	if l.anonymous != nil {
		l.anonymous = ratelimit.NewRedis(c, redisAnonymousPrefix, l.anonymous)
	}
	if l.tools != nil {
		l.tools = ratelimit.NewRedis(c, redisToolPrefix, l.tools)
	}
}
