package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-gateway/gateway/proxy/config"
)

// redis checks, with GATEWAY_REDIS_URL, that Redis answers PING with the URL's credentials and database. The gateway
// starts without it (rate limits fall back to memory, sign-ins fail until it answers), so --check is where a wrong
// host, password or TLS setting shows before traffic does.
func (c *checker) redis() {
	o := c.cfg.RedisOptions()
	if o == nil {
		return
	}
	o.MaxRetries = -1
	o.ContextTimeoutEnabled = true
	o.DisableIdentity = true
	rdb := redis.NewClient(o)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(c.ctx, checkTimeout)
	defer cancel()
	where := fmt.Sprintf("%s (database %d, TLS %v)", o.Addr, o.DB, o.TLSConfig != nil)
	if err := rdb.Ping(ctx).Err(); err != nil {
		c.fail("redis", fmt.Sprintf("%s does not answer PING: %v", where, err),
			"check GATEWAY_REDIS_URL's host, port, password and scheme (rediss:// for TLS); until Redis answers, rate "+
				"limits count per replica and Option B sign-ins cannot complete")
		return
	}
	c.pass("redis", "%s answers: rate limits and sign-in states are shared by the replicas", where)
}

// logRedisTo sends go-redis's log lines to log, when the gateway uses Redis. go-redis has one logger per process.
func logRedisTo(cfg *config.Config, log *slog.Logger) {
	if cfg.RedisURL != "" {
		redis.SetLogger(redisLogger{log})
	}
}

// redisLogger takes go-redis's own log lines (a failed dial, a pool event) into the gateway's log at debug level: the
// gateway reports Redis's state itself (a warning per interval while down, package redisstore), and go-redis would
// otherwise print unstructured lines to stderr, one per failed dial.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
