package rediscache

// Home timelines and recent-post lists: cache.Timelines.

import (
	"context"
	_ "embed"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
)

// insert adds members with score 0 to capped sets and trims each to the
// newest cap IDs, one set after another in one atomic script call; see the
// modes and arguments in insert.lua. The last rank is spared by the trim:
// on a complete timeline it is the marker. (On an incomplete one it is the
// oldest ID, which makes such a timeline keep cap+1 entries until it is
// completed.)
//
// The script lives in insert.lua so that deploy/local/bench-redis.sh can
// measure the very same script with redis-benchmark.
//
//go:embed insert.lua
var insertLua string

var insert = redis.NewScript(insertLua)

// Script modes; see insert.lua.
const (
	modeAdd   = "add"
	modeStore = "store"
)

// maxPerCall bounds the timelines one script call writes. A script blocks
// Redis while it runs, so a batch is cut into calls of a few hundred
// microseconds each, all sent in one pipeline.
const maxPerCall = 256

// Add implements cache.Timelines.
//
// Without an ActiveWindow the batch is one pipeline of insert script
// calls: on a single Redis a call covers up to maxPerCall timelines; on
// Redis Cluster, whose scripts may touch only one slot, each timeline gets
// its own call.
//
// With one, Add is the fan-out's hot path, and a script is too slow for
// it: every redis.call inside a script costs about as much as a whole
// pipelined command (docs/benchmarks.md). So it takes two round trips of
// plain commands instead. The first reads the batch's active marks (one
// MGET; pipelined GETs on Cluster). The second pipelines one ZADD per
// active user's timeline and, for about one in trimEvery of them, the trim
// to the cap. A timeline may hold a few entries past the cap between
// trims; Range never shows them, so readers see exactly the cap.
func (c *Cache) Add(ctx context.Context, entries []cache.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	byUser := make(map[string][]string, len(entries))
	order := make([]string, 0, len(entries))
	for _, e := range entries {
		if _, ok := byUser[e.User]; !ok {
			order = append(order, e.User)
		}
		byUser[e.User] = append(byUser[e.User], member(e.Post))
	}
	if c.opts.ActiveWindow > 0 {
		return c.addActive(ctx, order, byUser)
	}
	per := maxPerCall
	if _, cluster := c.rdb.(*redis.ClusterClient); cluster {
		per = 1
	}
	return c.execScript(ctx, func(pipe redis.Pipeliner) {
		for len(order) > 0 {
			n := min(per, len(order))
			c.insertCmd(ctx, pipe, modeAdd, order[:n], byUser)
			order = order[n:]
		}
	})
}

// trimEvery is how many single-entry inserts into a timeline go, on
// average, between trims to the cap.
const trimEvery = 8

func (c *Cache) addActive(ctx context.Context, users []string, members map[string][]string) error {
	active, err := c.actives(ctx, users)
	if err != nil {
		c.known.forget()
		return err
	}
	pipe := c.rdb.Pipeline()
	queued := 0
	for i, u := range users {
		if !active[i] {
			continue
		}
		key, ms := c.timelineKey(u), members[u]
		args := make([]any, 0, 2+2*len(ms))
		args = append(args, "zadd", key)
		for _, m := range ms {
			args = append(args, 0, m)
		}
		pipe.Do(ctx, args...)
		if len(ms) > 1 || rand.IntN(c.trimEvery) == 0 {
			pipe.ZRemRangeByRank(ctx, key, int64(c.opts.Cap), -2)
		}
		queued++
	}
	if queued == 0 {
		return nil
	}
	if err := c.exec(ctx, pipe); err != nil {
		c.known.forget()
		return err
	}
	return nil
}

// actives reports which of users are marked active: those the Cache
// lately found active (see knownActive) without asking, the rest from
// their marks in one round trip.
func (c *Cache) actives(ctx context.Context, users []string) ([]bool, error) {
	ask, sent := c.known.unknown(users)
	active := make([]bool, len(users))
	for i := range active {
		active[i] = true
	}
	if len(ask) == 0 {
		return active, nil
	}
	keys := make([]string, len(ask))
	for j, i := range ask {
		keys[j] = c.activeKey(users[i])
	}
	found, err := c.present(ctx, keys)
	if err != nil {
		return nil, err
	}
	confirmed := make([]string, 0, len(ask))
	for j, i := range ask {
		active[i] = found[j]
		if found[j] {
			confirmed = append(confirmed, users[i])
		}
	}
	c.known.confirm(confirmed, sent)
	return active, nil
}

// execScript runs a pipeline of insert calls by script hash. A server that
// has not seen the script (first use, a restart, a failover) answers
// NOSCRIPT; then the script is loaded on every node and the pipeline runs
// once more, which is safe because inserts are idempotent.
func (c *Cache) execScript(ctx context.Context, build func(redis.Pipeliner)) error {
	pipe := c.rdb.Pipeline()
	build(pipe)
	err := c.exec(ctx, pipe)
	if err == nil || !strings.Contains(err.Error(), "NOSCRIPT") {
		return err
	}
	load := func(ctx context.Context, client *redis.Client) error { return insert.Load(ctx, client).Err() }
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachShard(ctx, load)
	} else {
		err = insert.Load(ctx, c.rdb).Err()
	}
	if err != nil {
		return unavailable(err)
	}
	pipe = c.rdb.Pipeline()
	build(pipe)
	return c.exec(ctx, pipe)
}

// insertCmd queues one script call writing members[u] into each of
// users' timelines.
func (c *Cache) insertCmd(ctx context.Context, pipe redis.Pipeliner, mode string, users []string, members map[string][]string) {
	keys := make([]string, 0, 2*len(users))
	args := []any{c.opts.Cap, c.opts.TimelineTTL.Milliseconds(), mode}
	for _, u := range users {
		keys = append(keys, c.timelineKey(u), c.claimKey(u))
		args = append(args, len(members[u]))
		for _, m := range members[u] {
			args = append(args, m)
		}
	}
	insert.EvalSha(ctx, pipe, keys, args...)
}

// Remove implements cache.Timelines.
func (c *Cache) Remove(ctx context.Context, entries []cache.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	pipe := c.rdb.Pipeline()
	for _, e := range entries {
		pipe.ZRem(ctx, c.timelineKey(e.User), member(e.Post))
	}
	return c.exec(ctx, pipe)
}

// Range implements cache.Timelines: one round trip for the completeness
// check and the page and, with an ActiveWindow, the user's active mark
// and the timeline's renewed expiry, and, with LocalPosts, the delete
// log's new entries.
func (c *Cache) Range(ctx context.Context, user string, before feed.PostID, limit int) ([]feed.PostID, bool, error) {
	if limit <= 0 {
		return nil, false, nil
	}
	pipe, send := c.readPipe()
	result := c.queueRange(ctx, pipe, user, before, limit)
	check := c.queueCheck(ctx, pipe)
	if err := send(ctx); err != nil {
		return nil, false, err
	}
	check()
	return result()
}

// RangeBatch implements cache.BatchRanger: the requests on Caches that
// share this one's client go in one pipeline; others run on their own.
func (c *Cache) RangeBatch(ctx context.Context, reqs []*cache.RangeReq) {
	pipe, send := c.readPipe()
	results := make([]func() ([]feed.PostID, bool, error), len(reqs))
	for i, r := range reqs {
		if rc, ok := r.List.(*Cache); ok && rc.rdb == c.rdb && r.Limit > 0 {
			results[i] = rc.queueRange(ctx, pipe, r.User, r.Before, r.Limit)
		}
	}
	check := c.queueCheck(ctx, pipe)
	err := send(ctx)
	check()
	for i, r := range reqs {
		switch {
		case results[i] == nil:
			r.IDs, r.OK, r.Err = r.List.Range(ctx, r.User, r.Before, r.Limit)
		case err != nil:
			r.IDs, r.OK, r.Err = nil, false, err
		default:
			r.IDs, r.OK, r.Err = results[i]()
		}
	}
}

// queueRange queues Range's commands on pipe and returns the function that
// reads their results after the pipeline ran.
func (c *Cache) queueRange(ctx context.Context, pipe redis.Cmdable, user string, before feed.PostID, limit int) func() ([]feed.PostID, bool, error) {
	key := c.timelineKey(user)
	from := "-" // the newest
	if before != 0 {
		from = "(" + member(before)
	}
	var above *redis.IntCmd
	var wasActive *redis.StatusCmd
	var isActive *redis.IntCmd
	var renewing time.Time // when the renewal below began, if it renews
	if c.opts.ActiveWindow > 0 {
		// SET ... GET renews the mark and says whether it was there. A
		// timeline outlives its mark by a margin; in that margin the
		// fan-out skips the user, so a timeline found without its mark
		// may lack posts, and is reported missing, to be rebuilt. A
		// mark this Cache renewed lately is only checked (see
		// renewFraction): a read instead of two writes.
		if c.renewals.fresh(user) {
			isActive = pipe.Exists(ctx, c.activeKey(user))
		} else {
			renewing = c.renewals.now()
			wasActive = pipe.SetArgs(ctx, c.activeKey(user), 1, redis.SetArgs{TTL: c.opts.ActiveWindow, Get: true})
			pipe.PExpire(ctx, key, c.opts.TimelineTTL)
		}
		// Between trims a timeline may hold entries past the cap; count
		// what lies above this page to keep them hidden.
		if before != 0 {
			above = pipe.ZLexCount(ctx, key, "-", "["+member(before))
		}
	}
	marker := pipe.ZScore(ctx, key, complete)
	// The marker is the highest member, so limit+1 leaves room for it.
	page := pipe.ZRangeByLex(ctx, key, &redis.ZRangeBy{Min: from, Max: "+", Count: int64(limit + 1)})
	return func() ([]feed.PostID, bool, error) {
		if err := marker.Err(); errors.Is(err, redis.Nil) {
			return nil, false, nil
		} else if err != nil {
			return nil, false, unavailable(err)
		}
		if wasActive != nil {
			if err := wasActive.Err(); errors.Is(err, redis.Nil) {
				c.renewals.renewed(user, renewing) // the SET made the mark
				return nil, false, nil
			} else if err != nil {
				return nil, false, unavailable(err)
			}
		}
		if isActive != nil {
			if n, err := isActive.Result(); err != nil {
				return nil, false, unavailable(err)
			} else if n == 0 {
				c.renewals.forget(user)
				return nil, false, nil
			}
		}
		if wasActive != nil {
			c.renewals.renewed(user, renewing)
		}
		members, err := page.Result()
		if err != nil {
			return nil, false, unavailable(err)
		}
		visible := limit
		if c.opts.ActiveWindow > 0 {
			shown := int64(0) // entries at or above before, which is not in the page
			if above != nil {
				shown = above.Val()
			}
			visible = int(min(int64(limit), max(0, int64(c.opts.Cap)-shown)))
		}
		ids := make([]feed.PostID, 0, min(len(members), visible))
		for _, m := range members {
			if id, ok := memberID(m); ok && len(ids) < visible {
				ids = append(ids, id)
			}
		}
		return ids, true, nil
	}
}

// Full implements cache.Timelines. A complete timeline at the cap holds cap
// entries and the marker.
func (c *Cache) Full(ctx context.Context, user string) (bool, error) {
	n, err := c.rdb.ZCard(ctx, c.timelineKey(user)).Result()
	if err != nil {
		return false, unavailable(err)
	}
	return n >= int64(c.opts.Cap)+1, nil
}

// Store implements cache.Timelines. With an ActiveWindow it marks the
// user active too: a timeline is rebuilt because its user reads it.
func (c *Cache) Store(ctx context.Context, user string, ids []feed.PostID) error {
	members := make([]string, len(ids))
	for i, id := range ids {
		members[i] = member(id)
	}
	return c.execScript(ctx, func(pipe redis.Pipeliner) {
		if c.opts.ActiveWindow > 0 {
			pipe.Set(ctx, c.activeKey(user), 1, c.opts.ActiveWindow)
		}
		c.insertCmd(ctx, pipe, modeStore, []string{user}, map[string][]string{user: members})
	})
}

// Claim implements cache.Timelines with SET NX on the timeline's claim
// key. With an ActiveWindow it also marks the user active, in the same
// round trip, so that fan-out writes land from now on, and gives the
// timeline its key and TTL (see pending), so that what they write expires
// even if the rebuild never stores.
func (c *Cache) Claim(ctx context.Context, user string, ttl time.Duration) (bool, error) {
	pipe := c.rdb.Pipeline()
	if c.opts.ActiveWindow > 0 {
		key := c.timelineKey(user)
		pipe.Set(ctx, c.activeKey(user), 1, c.opts.ActiveWindow)
		pipe.ZAddNX(ctx, key, redis.Z{Member: pending})
		pipe.PExpire(ctx, key, c.opts.TimelineTTL)
	}
	claim := pipe.SetNX(ctx, c.claimKey(user), 1, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, unavailable(err)
	}
	return claim.Val(), nil
}

// MemoryUsage returns Redis's MEMORY USAGE of user's timeline key, in bytes.
func (c *Cache) MemoryUsage(ctx context.Context, user string) (int64, error) {
	n, err := c.rdb.MemoryUsage(ctx, c.timelineKey(user)).Result()
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}
