package rediscache

// Unfollow marks: cache.Unfollows.

import (
	"context"
	"errors"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/cache"
)

// The marks of those who left an account lately are one sorted set per
// followee, each follower scored with the time of the mark in Unix
// milliseconds. A fan-out chunk asks about all its followers at once, and
// the set is almost always missing or small: one command, whatever the
// chunk's size, where a key per follower cost Redis a lookup per delivery.
// A mark lasts cache.UnfollowTTL: readers ignore older scores, each mark
// drops them, and the set expires UnfollowTTL after its last mark.

func (c *Cache) unfollowKey(followee string) string {
	return c.opts.Prefix + "unf:{" + followee + "}"
}

// maxUnfollowScan is the most marks Unfollowed reads whole. An account
// left by more within UnfollowTTL is asked about each follower instead.
const maxUnfollowScan = 256

// MarkUnfollowed implements cache.Unfollows.
func (c *Cache) MarkUnfollowed(ctx context.Context, follower, followee string) error {
	now := c.opts.Clock()
	key := c.unfollowKey(followee)
	pipe := c.rdb.Pipeline()
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(now.UnixMilli()), Member: follower})
	pipe.ZRemRangeByScore(ctx, key, "-inf", "("+c.unfollowHorizon())
	pipe.PExpire(ctx, key, cache.UnfollowTTL)
	return c.exec(ctx, pipe)
}

// ClearUnfollowed implements cache.Unfollows.
func (c *Cache) ClearUnfollowed(ctx context.Context, follower, followee string) error {
	if err := c.rdb.ZRem(ctx, c.unfollowKey(followee), follower).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Unfollowed implements cache.Unfollows: one read of followee's live marks,
// or, past maxUnfollowScan of them, a second asking about followers only.
func (c *Cache) Unfollowed(ctx context.Context, followee string, followers []string) ([]bool, error) {
	key, horizon := c.unfollowKey(followee), c.unfollowHorizon()
	out := make([]bool, len(followers))
	marks, err := c.rdb.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: horizon, Max: "+inf", Count: maxUnfollowScan + 1}).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	if len(marks) <= maxUnfollowScan {
		left := make(map[string]bool, len(marks))
		for _, m := range marks {
			left[m] = true
		}
		for i, f := range followers {
			out[i] = left[f]
		}
		return out, nil
	}
	scores, err := c.rdb.ZMScore(ctx, key, followers...).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	min, _ := strconv.ParseFloat(horizon, 64)
	for i := range followers {
		// A follower without a mark has no score, which go-redis reads
		// as 0, below every horizon.
		out[i] = i < len(scores) && scores[i] >= min
	}
	return out, nil
}

// unfollowHorizon is the oldest score of a live mark.
func (c *Cache) unfollowHorizon() string {
	return strconv.FormatInt(c.opts.Clock().Add(-cache.UnfollowTTL).UnixMilli(), 10)
}
