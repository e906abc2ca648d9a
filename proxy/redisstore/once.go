package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Once is a set of single-use ids shared by every replica that uses the same Redis and prefix: the first Use of an
// id, on any replica, gets fresh; every later one, until the id expires, does not. It implements the replay memory of
// package authserver (authserver.UsedStore).
type Once struct {
	c      *Client
	prefix string
}

// Once returns the set of ids stored under prefix (such as "mcpgw:state:").
func (c *Client) Once(prefix string) *Once { return &Once{c: c, prefix: prefix} }

// Use records id as used for ttl (at least a millisecond) with SET NX, and reports whether it was unused. When Redis
// does not answer, or is down, it returns an error wrapping ErrUnavailable and fresh is false: the caller must refuse,
// since a replay could not be told apart.
func (o *Once) Use(ctx context.Context, id string, ttl time.Duration) (fresh bool, err error) {
	err = o.c.Do(ctx, "once", func(ctx context.Context, rdb *redis.Client) error {
		var err error
		fresh, err = rdb.SetNX(ctx, o.prefix+id, 1, max(ttl, time.Millisecond)).Result()
		return err
	})
	return fresh && err == nil, err
}
