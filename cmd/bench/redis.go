package main

import (
	"context"

	"github.com/mcp-gateway/gateway/proxy/redisstore/redistest"
)

func init() {
	variants = append(variants, variant{name: "f gateway + limits (Redis)", env: redisLimitsEnv})
}

// redisLimitsEnv is set-up (f)'s environment: a redis-server of its own for the run (stopped by the cleanup), and
// GATEWAY_RATE_LIMIT_USER in it, so high that the bench never reaches it: what is measured is the round trip to Redis
// (one Lua call per request), not refusals.
func redisLimitsEnv(_ context.Context, dir string) ([]string, func(), error) {
	srv, err := redistest.StartServer(dir)
	if err != nil {
		return nil, nil, err
	}
	return []string{"GATEWAY_REDIS_URL=" + srv.URL, "GATEWAY_RATE_LIMIT_USER=1000000/s,burst=1000000"}, srv.Stop, nil
}
