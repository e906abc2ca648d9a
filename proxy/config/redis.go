package config

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/redis/go-redis/v9"
)

// checkRedisURL checks GATEWAY_REDIS_URL: unset, or a redis:// or rediss:// URL that go-redis accepts. No message
// repeats the URL, which may hold a password.
func checkRedisURL(s string) error {
	if s == "" {
		return nil
	}
	if _, err := parseRedisURL(s); err != nil {
		return &varError{name: "GATEWAY_REDIS_URL", err: err}
	}
	return nil
}

// parseRedisURL parses s, a redis:// or rediss:// URL, into go-redis options.
func parseRedisURL(s string) (*redis.Options, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse's error quotes the whole URL, password included.
		return nil, errors.New("not a URL: want redis://[user:password@]host[:port][/db] or rediss://…")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("scheme %q: want redis:// or rediss:// (TLS)", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("no host: want redis://[user:password@]host[:port][/db]")
	}
	o, err := redis.ParseURL(s)
	if err != nil {
		return nil, err // go-redis's messages name the part at fault (database, option), never the password
	}
	return o, nil
}

// RedisOptions returns GATEWAY_REDIS_URL as go-redis options, a fresh copy at each call; nil when it is unset.
func (c *Config) RedisOptions() *redis.Options {
	if c.RedisURL == "" {
		return nil
	}
	o, _ := parseRedisURL(c.RedisURL) // validated by Load
	return o
}

// RedisAddr returns the host:port of GATEWAY_REDIS_URL, without credentials, for logs; "" when it is unset.
func (c *Config) RedisAddr() string {
	if o := c.RedisOptions(); o != nil {
		return o.Addr
	}
	return ""
}
