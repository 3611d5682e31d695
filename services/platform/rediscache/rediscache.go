// Package rediscache is the Redis adapter for Herald's timeline and post
// caches. It runs on a single node, Sentinel or Redis Cluster through
// go-redis's UniversalClient.
//
// Keys are per user or per post, with the user in a hash tag, so every
// operation touches one key and one cluster slot:
//
//	tl:{alice}        ZSET: alice's home timeline
//	tl.active:{alice} STRING: present while alice is an active reader
//	tl.claim:{alice}  STRING: a rebuild's lock on her timeline, with a short TTL
//	recent:{alice}    ZSET: alice's own recent posts (a Cache of Kind "recent")
//	post:{<id>}       STRING: a post body, or a one-byte tombstone
//
// A timeline member is the post ID as 8 big-endian bytes, and every score
// is 0. Redis orders equal-score members by their bytes, and big-endian
// bytes order like the numbers, so the set is ordered by post ID exactly.
// A score cannot carry a 64-bit ID: a float64 is exact only to 2^53. Equal
// scores also keep the small-set listpack encoding compact (see
// docs/benchmarks.md for the measured bytes per entry). The empty member
// "" sorts below every ID and marks a timeline complete.
package rediscache

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
)

// Options tunes the cache.
type Options struct {
	// Cap is the most entries a timeline keeps. Default 800.
	Cap int
	// TimelineTTL expires a timeline this long after it was created or
	// rebuilt; the next read rebuilds it. Default 7 days. With an
	// ActiveWindow, the window is the TTL instead.
	TimelineTTL time.Duration
	// ActiveWindow, if positive, keeps active users' timelines only:
	// every Range and Claim marks the user active for ActiveWindow, and
	// Add writes only into active users' timelines. A user who reads
	// nothing for a window loses the timeline, and fan-out stops writing
	// it until the next read rebuilds it. See Add for how such a cache
	// writes, which is the fan-out's hot path.
	ActiveWindow time.Duration
	// PostTTL expires cached post bodies and tombstones. Default 24h.
	PostTTL time.Duration
	// Prefix goes before every key, so that several deployments, or
	// tests, can share one Redis.
	Prefix string
	// Kind names the sorted sets this Cache keeps: "tl" (default) for home
	// timelines, "recent" for authors' recent-post lists, which have the
	// same shape and operations.
	Kind string
}

// Cache implements cache.Timelines and cache.Posts on Redis.
type Cache struct {
	rdb  redis.UniversalClient
	opts Options
}

var (
	_ cache.Timelines   = (*Cache)(nil)
	_ cache.Posts       = (*Cache)(nil)
	_ cache.BatchRanger = (*Cache)(nil)
	_ cache.Unfollows   = (*Cache)(nil)
)

// New returns a Cache on rdb.
func New(rdb redis.UniversalClient, opts Options) *Cache {
	if opts.Cap <= 0 {
		opts.Cap = cache.DefaultCap
	}
	if opts.TimelineTTL <= 0 {
		opts.TimelineTTL = 7 * 24 * time.Hour
	}
	if opts.PostTTL <= 0 {
		opts.PostTTL = 24 * time.Hour
	}
	if opts.Kind == "" {
		opts.Kind = "tl"
	}
	if opts.ActiveWindow > 0 {
		// The timeline outlives the active mark by a margin, so that a
		// write to an active user finds the timeline still there. (A
		// write that comes later still creates a set without the
		// completeness marker, which reads treat as missing; and a read
		// that finds the timeline without its mark treats it as missing
		// too: see queueRange.)
		opts.TimelineTTL = opts.ActiveWindow + min(opts.ActiveWindow, time.Minute)
	}
	return &Cache{rdb: rdb, opts: opts}
}

// Cap implements cache.Timelines.
func (c *Cache) Cap() int { return c.opts.Cap }

func (c *Cache) timelineKey(user string) string {
	return c.opts.Prefix + c.opts.Kind + ":{" + user + "}"
}
func (c *Cache) activeKey(user string) string {
	return c.opts.Prefix + c.opts.Kind + ".active:{" + user + "}"
}
func (c *Cache) claimKey(user string) string {
	return c.opts.Prefix + c.opts.Kind + ".claim:{" + user + "}"
}
func (c *Cache) postKey(id feed.PostID) string { return c.opts.Prefix + "post:{" + id.String() + "}" }

// complete is the member that marks a timeline complete.
const complete = ""

func member(id feed.PostID) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	return string(b[:])
}

// unavailable marks err as Redis being unavailable, unless the caller's
// context ended: a request that gave up is not a Redis outage, and must
// not send readers to the durable store.
func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return feed.Unavailable("redis", err)
}

// insert adds members with score 0 to capped sets and trims each to the
// newest cap IDs, one set after another in one atomic script call; see the
// modes and arguments in insert.lua. Rank 0 is spared by the trim: on a
// complete timeline it is the marker. (On an incomplete one it is the
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
		if len(ms) > 1 || rand.IntN(trimEvery) == 0 {
			pipe.ZRemRangeByRank(ctx, key, 1, -int64(c.opts.Cap+1))
		}
		queued++
	}
	if queued == 0 {
		return nil
	}
	return c.exec(ctx, pipe)
}

// actives reports which of users are marked active.
func (c *Cache) actives(ctx context.Context, users []string) ([]bool, error) {
	keys := make([]string, len(users))
	for i, u := range users {
		keys[i] = c.activeKey(u)
	}
	return c.present(ctx, keys)
}

// present reports which of keys exist, in one round trip: one MGET on a
// single node, pipelined GETs on Cluster, whose MGET cannot span slots.
func (c *Cache) present(ctx context.Context, keys []string) ([]bool, error) {
	out := make([]bool, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	if _, cluster := c.rdb.(*redis.ClusterClient); cluster {
		pipe := c.rdb.Pipeline()
		gets := make([]*redis.StringCmd, len(keys))
		for i, k := range keys {
			gets[i] = pipe.Get(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, unavailable(err)
		}
		for i, g := range gets {
			out[i] = g.Err() == nil
		}
		return out, nil
	}
	vals, err := c.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	for i, v := range vals {
		out[i] = v != nil
	}
	return out, nil
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

func (c *Cache) exec(ctx context.Context, pipe redis.Pipeliner) error {
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		return unavailable(err)
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return unavailable(err)
		}
	}
	return nil
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
// and the timeline's renewed expiry.
func (c *Cache) Range(ctx context.Context, user string, before feed.PostID, limit int) ([]feed.PostID, bool, error) {
	if limit <= 0 {
		return nil, false, nil
	}
	pipe := c.rdb.Pipeline()
	result := c.queueRange(ctx, pipe, user, before, limit)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, unavailable(err)
	}
	return result()
}

// RangeBatch implements cache.BatchRanger: the requests on Caches that
// share this one's client go in one pipeline; others run on their own.
func (c *Cache) RangeBatch(ctx context.Context, reqs []*cache.RangeReq) {
	pipe := c.rdb.Pipeline()
	results := make([]func() ([]feed.PostID, bool, error), len(reqs))
	for i, r := range reqs {
		if rc, ok := r.List.(*Cache); ok && rc.rdb == c.rdb && r.Limit > 0 {
			results[i] = rc.queueRange(ctx, pipe, r.User, r.Before, r.Limit)
		}
	}
	_, err := pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		err = unavailable(err)
	} else {
		err = nil
	}
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
func (c *Cache) queueRange(ctx context.Context, pipe redis.Pipeliner, user string, before feed.PostID, limit int) func() ([]feed.PostID, bool, error) {
	key := c.timelineKey(user)
	top := "+"
	if before != 0 {
		top = "(" + member(before)
	}
	var above *redis.IntCmd
	var wasActive *redis.StatusCmd
	if c.opts.ActiveWindow > 0 {
		// SET ... GET renews the mark and says whether it was there. A
		// timeline outlives its mark by a margin; in that margin the
		// fan-out skips the user, so a timeline found without its mark
		// may lack posts, and is reported missing, to be rebuilt.
		wasActive = pipe.SetArgs(ctx, c.activeKey(user), 1, redis.SetArgs{TTL: c.opts.ActiveWindow, Get: true})
		pipe.PExpire(ctx, key, c.opts.TimelineTTL)
		// Between trims a timeline may hold entries past the cap; count
		// what lies above this page to keep them hidden.
		if before != 0 {
			above = pipe.ZLexCount(ctx, key, "["+member(before), "+")
		}
	}
	marker := pipe.ZScore(ctx, key, complete)
	// The marker is the lowest member, so limit+1 leaves room for it.
	page := pipe.ZRevRangeByLex(ctx, key, &redis.ZRangeBy{Max: top, Min: "-", Count: int64(limit + 1)})
	return func() ([]feed.PostID, bool, error) {
		if err := marker.Err(); errors.Is(err, redis.Nil) {
			return nil, false, nil
		} else if err != nil {
			return nil, false, unavailable(err)
		}
		if wasActive != nil {
			if err := wasActive.Err(); errors.Is(err, redis.Nil) {
				return nil, false, nil
			} else if err != nil {
				return nil, false, unavailable(err)
			}
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
			if len(m) == 8 && len(ids) < visible {
				ids = append(ids, feed.PostID(binary.BigEndian.Uint64([]byte(m))))
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
// round trip, so that fan-out writes land from now on.
func (c *Cache) Claim(ctx context.Context, user string, ttl time.Duration) (bool, error) {
	pipe := c.rdb.Pipeline()
	if c.opts.ActiveWindow > 0 {
		pipe.Set(ctx, c.activeKey(user), 1, c.opts.ActiveWindow)
	}
	claim := pipe.SetNX(ctx, c.claimKey(user), 1, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, unavailable(err)
	}
	return claim.Val(), nil
}

// Post bodies: a tombstone is one zero byte; a post is a version byte (1),
// then the creation time in Unix milliseconds, the author and the text.
const tombstone = "\x00"

func encodePost(p feed.Post) string {
	b := make([]byte, 0, 1+binary.MaxVarintLen64*2+len(p.Author)+len(p.Text))
	b = append(b, 1)
	b = binary.AppendVarint(b, p.Created.UnixMilli())
	b = binary.AppendUvarint(b, uint64(len(p.Author)))
	b = append(b, p.Author...)
	b = append(b, p.Text...)
	return string(b)
}

func decodePost(id feed.PostID, s string) (feed.Post, error) {
	if s == tombstone {
		return feed.Post{ID: id, Deleted: true}, nil
	}
	b := []byte(s)
	if len(b) < 1 || b[0] != 1 {
		return feed.Post{}, fmt.Errorf("post %d: unknown cache encoding", id)
	}
	b = b[1:]
	ms, n := binary.Varint(b)
	if n <= 0 {
		return feed.Post{}, fmt.Errorf("post %d: bad cached time", id)
	}
	b = b[n:]
	al, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < al {
		return feed.Post{}, fmt.Errorf("post %d: bad cached author", id)
	}
	b = b[n:]
	return feed.Post{ID: id, Created: time.UnixMilli(ms).UTC(), Author: string(b[:al]), Text: string(b[al:])}, nil
}

// GetPosts implements cache.Posts in one round trip: one MGET on a single
// node; on Redis Cluster, whose MGET cannot span slots, one pipeline of
// GETs, which go-redis splits by node.
func (c *Cache) GetPosts(ctx context.Context, ids []feed.PostID) (map[feed.PostID]feed.Post, error) {
	out := make(map[feed.PostID]feed.Post, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = c.postKey(id)
	}
	vals := make([]any, len(ids))
	if _, cluster := c.rdb.(*redis.ClusterClient); !cluster {
		v, err := c.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, unavailable(err)
		}
		vals = v
	} else {
		pipe := c.rdb.Pipeline()
		gets := make([]*redis.StringCmd, len(ids))
		for i, k := range keys {
			gets[i] = pipe.Get(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, unavailable(err)
		}
		for i, g := range gets {
			if s, err := g.Result(); err == nil {
				vals[i] = s
			}
		}
	}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // a miss
		}
		p, err := decodePost(ids[i], s)
		if err != nil {
			continue // an unreadable entry is a miss; the store has the post
		}
		out[ids[i]] = p
	}
	return out, nil
}

// PutPosts implements cache.Posts. SET NX never overwrites, so neither a
// tombstone nor a newer copy is replaced by a racing refill.
func (c *Cache) PutPosts(ctx context.Context, posts []feed.Post) error {
	if len(posts) == 0 {
		return nil
	}
	pipe := c.rdb.Pipeline()
	for _, p := range posts {
		pipe.SetNX(ctx, c.postKey(p.ID), encodePost(p), c.opts.PostTTL)
	}
	return c.exec(ctx, pipe)
}

// DeletePosts implements cache.Posts.
func (c *Cache) DeletePosts(ctx context.Context, ids []feed.PostID) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := c.rdb.Pipeline()
	for _, id := range ids {
		pipe.Set(ctx, c.postKey(id), tombstone, c.opts.PostTTL)
	}
	return c.exec(ctx, pipe)
}

// MemoryUsage returns Redis's MEMORY USAGE of user's timeline key, in bytes.
func (c *Cache) MemoryUsage(ctx context.Context, user string) (int64, error) {
	n, err := c.rdb.MemoryUsage(ctx, c.timelineKey(user)).Result()
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

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
