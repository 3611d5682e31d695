// Package rediscache is the Redis adapter for Herald's timeline and post
// caches. It runs on a single node, Sentinel or Redis Cluster through
// go-redis's UniversalClient.
//
// Keys are per user or per post, with the user in a hash tag, so every
// operation touches one key and one cluster slot:
//
//	tl.v2:{alice}     ZSET: alice's home timeline
//	tl.active:{alice} STRING: present while alice is an active reader
//	tl.claim:{alice}  STRING: a rebuild's lock on her timeline, with a short TTL
//	recent.v2:{alice} ZSET: alice's own recent posts (a Cache of Kind "recent")
//	post:{<id>}       STRING: a post body, or a one-byte tombstone
//	post.deleted      STREAM: the delete log, deleted post IDs of the last hour (see localposts.go)
//	unf:{alice}       ZSET: who left alice lately, scored by when (see unfollows.go)
//	celebs            SET: the celebrities (sticky; see cache.Celebrities)
//
// Any caller can name any user, so every key but celebs has a TTL, which
// is what bounds what made-up users leave behind: a home timeline and its
// active mark the active window after the last read, a recent list
// TimelineTTL after its last write, a claim its rebuild's TTL, a post body
// PostTTL after it was cached, an unfollow mark cache.UnfollowTTL, the
// delete log an hour after the last delete.
//
// A timeline member is the post ID's complement (every bit flipped) as 8
// big-endian bytes, and every score is 0. Redis orders equal-score
// members by their bytes, and big-endian bytes order like the numbers, so
// the set is ordered by post ID exactly, newest first: the newest post is
// the lowest member, rank 0. A score cannot carry a 64-bit ID: a float64
// is exact only to 2^53. Equal scores also keep the small-set listpack
// encoding compact, and a listpack is searched from its head, so putting
// the newest posts there makes a fan-out's insert of a new post cheap:
// about a third of the Redis CPU of the plain ID, which put a new post at
// the far end of a full timeline (docs/benchmarks.md, "Timeline
// representations side by side"). The 9-byte member of 0xff bytes sorts
// above every ID and marks a timeline complete; the member of eight 0xff
// bytes and a zero, between every ID and it, holds a claimed timeline's
// key until its Store (see Claim). The key names carry the layout (v2),
// so that a timeline of the earlier layout, plain IDs, is never read as
// this one; it expires with its TTL.
package rediscache

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
)

// Options tunes the cache.
type Options struct {
	// Cap is the most entries a timeline keeps. Default 800.
	Cap int
	// TimelineTTL expires a timeline, or a recent list, this long after
	// its last write (Add or Store); reads do not renew it, and the next
	// read after it expired rebuilds it. Default cache.DefaultRecentTTL.
	// With an ActiveWindow, the window and a margin are the TTL instead,
	// renewed by reads.
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
	// Clock, for tests, is the clock that times the renewals of active
	// marks (see renewFraction); nil means time.Now.
	Clock func() time.Time
	// LocalPosts, if positive, is how many post bodies GetPostsAsOf keeps
	// in process, the most recently used; deletes reach them through the
	// delete log (see localposts.go). Zero keeps none.
	LocalPosts int
	// AutoPipelineReads sends the reads of Range, RangeBatch and
	// GetPostsAsOf through go-redis's shared auto-pipeliner
	// (AsyncAutoPipeline, experimental in go-redis), which writes many
	// concurrent readers' commands to Redis together, instead of each
	// read's own pipeline: fewer system calls in this process and in
	// Redis per read (docs/benchmarks.md). A read queued there no longer
	// heeds its context; the client's read timeout still bounds it.
	AutoPipelineReads bool
	// KnownActive is how many users Add remembers as active, per
	// generation, for a quarter of the margin by which a timeline
	// outlives its active mark, so that a fan-out chunk reads only the
	// marks of users it has not lately found active (see knownActive).
	// Zero means DefaultKnownActive; negative remembers none. Only with
	// an ActiveWindow.
	KnownActive int
	// Kind names the sorted sets this Cache keeps: "tl" (default) for home
	// timelines, "recent" for authors' recent-post lists, which have the
	// same shape and operations.
	Kind string
}

// DefaultKnownActive is Options.KnownActive's default: a million users a
// generation, about 40 MB each beside the user IDs (measured with Go
// 1.26), and there are at most two generations.
const DefaultKnownActive = 1_000_000

// Cache implements cache.Timelines and cache.Posts on Redis.
type Cache struct {
	rdb  redis.UniversalClient
	opts Options
	// renewals is when this Cache last renewed each user's active mark,
	// so that a user who reads often renews it once per renewEvery
	// rather than on every read (see queueRange).
	renewals *renewals
	// local holds post bodies in process; nil without Options.LocalPosts.
	local *localPosts
	// reads is the auto-pipeliner reads go through; nil without
	// Options.AutoPipelineReads.
	reads redis.Cmdable
	// known is the users Add lately found active; nil without an
	// ActiveWindow or with a negative Options.KnownActive.
	known *knownActive
	// trimEvery is trimEvery, but for benchmarks that compare others.
	trimEvery int
}

var (
	_ cache.Timelines   = (*Cache)(nil)
	_ cache.Posts       = (*Cache)(nil)
	_ cache.BatchRanger = (*Cache)(nil)
	_ cache.Unfollows   = (*Cache)(nil)
	_ cache.PostsAsOf   = (*Cache)(nil)
)

// New returns a Cache on rdb.
func New(rdb redis.UniversalClient, opts Options) *Cache {
	if opts.Cap <= 0 {
		opts.Cap = cache.DefaultCap
	}
	if opts.TimelineTTL <= 0 {
		opts.TimelineTTL = cache.DefaultRecentTTL
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
		if opts.KnownActive == 0 {
			opts.KnownActive = DefaultKnownActive
		}
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	c := &Cache{rdb: rdb, opts: opts, renewals: newRenewals(opts.ActiveWindow/renewFraction, opts.Clock), trimEvery: trimEvery}
	if opts.ActiveWindow > 0 {
		c.known = newKnownActive(opts.KnownActive, (opts.TimelineTTL-opts.ActiveWindow)/4)
	}
	if opts.LocalPosts > 0 {
		c.local = newLocalPosts(opts.LocalPosts, opts.Clock)
	}
	if opts.AutoPipelineReads {
		// It fails only for a client that has none (a Ring); reads then
		// keep their own pipelines.
		if ap, err := rdb.AsyncAutoPipeline(); err == nil {
			c.reads = ap
		}
	}
	return c
}

// Cap implements cache.Timelines.
func (c *Cache) Cap() int { return c.opts.Cap }

// layout names the members' layout in the sets' key names (see the
// package comment).
const layout = ".v2"

func (c *Cache) timelineKey(user string) string { return setKey(c.opts.Prefix, c.opts.Kind, user) }

// setKey is the key of user's sorted set of the given kind.
func setKey(prefix, kind, user string) string { return prefix + kind + layout + ":{" + user + "}" }

// HomeTimelineKey is the key of user's home timeline in a Cache of Kind
// "tl" with the given Prefix (backend.OpenCache's is the namespace and a
// colon), for tests and benchmarks that look at or write the sets
// directly.
func HomeTimelineKey(prefix, user string) string { return setKey(prefix, "tl", user) }
func (c *Cache) activeKey(user string) string {
	return c.opts.Prefix + c.opts.Kind + ".active:{" + user + "}"
}
func (c *Cache) claimKey(user string) string {
	return c.opts.Prefix + c.opts.Kind + ".claim:{" + user + "}"
}
func (c *Cache) postKey(id feed.PostID) string { return c.opts.Prefix + "post:{" + id.String() + "}" }

// complete is the member that marks a timeline complete: above every ID.
const complete = "\xff\xff\xff\xff\xff\xff\xff\xff\xff"

// pending is the member that Claim puts into an active user's timeline,
// so that the key exists, with its TTL, before the fan-out's first ZADD,
// which would create it without one; Store removes it. Without it, a
// rebuild that failed after the fan-out wrote into the claimed timeline
// would leave a key that never expires, of a user who may never read
// again. It sorts between every ID and complete, so a trim spares it
// only on an incomplete timeline (the last rank), and readers skip it as
// they skip complete. While it is in a complete timeline (a Claim after a read
// found the timeline without its active mark), Full may say true one
// entry early, which sends a reader past the end to the durable store
// for nothing.
const pending = "\xff\xff\xff\xff\xff\xff\xff\xff\x00"

// member is id's member in a timeline: its complement, big-endian.
func member(id feed.PostID) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], ^uint64(id))
	return string(b[:])
}

// memberID is the post ID of a timeline member, and false for the markers.
func memberID(m string) (feed.PostID, bool) {
	if len(m) != 8 {
		return 0, false
	}
	return feed.PostID(^binary.BigEndian.Uint64([]byte(m))), true
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

// present reports which of keys exist, in one round trip.
func (c *Cache) present(ctx context.Context, keys []string) ([]bool, error) {
	vals, err := c.mget(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(keys))
	for i, v := range vals {
		out[i] = v != nil
	}
	return out, nil
}

// mget reads keys in one round trip (see queueMGet). A missing key's
// value is nil; a present one's is its string.
func (c *Cache) mget(ctx context.Context, keys []string) ([]any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := c.rdb.Pipeline()
	vals := c.queueMGet(ctx, pipe, keys)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	return vals()
}

// readPipe returns where a read queues its commands, and the function
// that sends them: a pipeline of the read's own, sent by Exec, or, with
// AutoPipelineReads, the shared auto-pipeliner, which sends commands as
// they come and needs no Exec (their results wait for them). Either way
// each command's result carries its own error.
func (c *Cache) readPipe() (redis.Cmdable, func(context.Context) error) {
	if c.reads != nil {
		return c.reads, func(context.Context) error { return nil }
	}
	pipe := c.rdb.Pipeline()
	return pipe, func(ctx context.Context) error {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return unavailable(err)
		}
		return nil
	}
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
