package rediscache

// Unfollow marks: cache.Unfollows.

import (
	"context"
	_ "embed"

	"github.com/herald-feed/herald/services/platform/cache"
)

func (c *Cache) unfollowKey(follower, followee string) string {
	return c.opts.Prefix + "unf:{" + follower + "}:" + followee
}

// MarkUnfollowed implements cache.Unfollows.
func (c *Cache) MarkUnfollowed(ctx context.Context, follower, followee string) error {
	if err := c.rdb.Set(ctx, c.unfollowKey(follower, followee), 1, cache.UnfollowTTL).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// ClearUnfollowed implements cache.Unfollows.
func (c *Cache) ClearUnfollowed(ctx context.Context, follower, followee string) error {
	if err := c.rdb.Del(ctx, c.unfollowKey(follower, followee)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Unfollowed implements cache.Unfollows with one MGET (pipelined GETs on
// Cluster).
func (c *Cache) Unfollowed(ctx context.Context, followee string, followers []string) ([]bool, error) {
	keys := make([]string, len(followers))
	for i, f := range followers {
		keys[i] = c.unfollowKey(f, followee)
	}
	return c.present(ctx, keys)
}
