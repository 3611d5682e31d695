package rediscache

// The celebrity set: cache.Celebrities.

import (
	"context"
	_ "embed"
)

// AddCelebrity implements cache.Celebrities with a Redis set, celebs.
func (c *Cache) AddCelebrity(ctx context.Context, author string) error {
	if err := c.rdb.SAdd(ctx, c.opts.Prefix+"celebs", author).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Celebrities implements cache.Celebrities.
func (c *Cache) Celebrities(ctx context.Context) (map[string]bool, error) {
	members, err := c.rdb.SMembers(ctx, c.opts.Prefix+"celebs").Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make(map[string]bool, len(members))
	for _, m := range members {
		out[m] = true
	}
	return out, nil
}
