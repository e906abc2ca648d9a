package main

import (
	"strings"
	"testing"

	"github.com/mcp-gateway/gateway/proxy/config"
	"github.com/mcp-gateway/gateway/proxy/redisstore/redistest"
)

// TestCheckRedis: --check reports a Redis that answers, and one that does not with a fix and without the password.
func TestCheckRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t)
	for _, tc := range []struct {
		name, url string
		ok        bool
	}{
		{"answers", srv.URL + "/3", true},
		{"no such database", "redis://:hunter2secret@" + srv.Addr + "/99", false},
		{"nothing there", "redis://:hunter2secret@127.0.0.1:1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "GATEWAY_REDIS_URL": tc.url})
			if err != nil {
				t.Fatal(err)
			}
			c := &checker{ctx: t.Context(), cfg: cfg}
			c.redis()
			if len(c.out) != 1 || c.out[0].name != "redis" || c.out[0].ok != tc.ok || (!tc.ok && c.out[0].fix == "") {
				t.Fatalf("got %+v, want one redis line, ok %v, a fix when not", c.out, tc.ok)
			}
			if strings.Contains(c.out[0].detail, "hunter2secret") {
				t.Errorf("the detail repeats the password: %s", c.out[0].detail)
			}
		})
	}
	c := &checker{ctx: t.Context(), cfg: &config.Config{}}
	if c.redis(); len(c.out) != 0 {
		t.Errorf("without GATEWAY_REDIS_URL: got %+v, want no line", c.out)
	}
}
