package config

import (
	"strings"
	"testing"
)

// TestLoadConfigRedisURL checks GATEWAY_REDIS_URL: accepted forms become go-redis options, refused ones get an error
// naming the variable that never repeats the password.
func TestLoadConfigRedisURL(t *testing.T) {
	t.Parallel()
	load := func(u string) (*Config, error) {
		return Load(map[string]string{"GATEWAY_ISSUER_URL": "https://as.example", "GATEWAY_REDIS_URL": u})
	}
	c, err := load("")
	if err != nil || c.RedisOptions() != nil || c.RedisAddr() != "" {
		t.Fatalf("unset: got %v, %v, want no Redis", c.RedisOptions(), err)
	}
	for _, tc := range []struct {
		url, addr, user, password string
		db                        int
		tls                       bool
	}{
		{"redis://redis:6379", "redis:6379", "", "", 0, false},
		{"redis://:s3cret@10.0.0.5/2", "10.0.0.5:6379", "", "s3cret", 2, false},
		{"rediss://gw:s3cret@cache.example:6380/1?dial_timeout=1s", "cache.example:6380", "gw", "s3cret", 1, true},
	} {
		c, err := load(tc.url)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		o := c.RedisOptions()
		if o.Addr != tc.addr || o.Username != tc.user || o.Password != tc.password || o.DB != tc.db || (o.TLSConfig != nil) != tc.tls {
			t.Errorf("%s: got addr %q user %q password %q db %d tls %v", tc.url, o.Addr, o.Username, o.Password, o.DB, o.TLSConfig != nil)
		}
		if c.RedisAddr() != tc.addr {
			t.Errorf("%s: RedisAddr got %q, want %q", tc.url, c.RedisAddr(), tc.addr)
		}
	}
	for _, u := range []string{
		"http://:hunter2secret@redis:6379",
		"unix:///run/redis.sock",
		"redis://:hunter2secret@redis:6379/notadb",
		"redis://:hunter2secret@redis:6379/1?color=blue",
		"redis://:hunter2secret@redis:6379/%zz",
		"redis://:hunter2secret@",
		"redis:// :hunter2secret@redis:6379",
	} {
		_, err := load(u)
		if err == nil || !strings.Contains(err.Error(), "GATEWAY_REDIS_URL") {
			t.Errorf("%q: got %v, want an error naming GATEWAY_REDIS_URL", u, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("%q: the error %q repeats the password", u, err)
		}
	}
}
