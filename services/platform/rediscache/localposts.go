package rediscache

// Post bodies kept in process: Options.LocalPosts.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/feed"
)

// A post's body never changes once written; only its deletion does. So a
// reader may keep bodies in process, if it learns of every delete before
// it serves a body again. Deletes reach it through the delete log, a Redis
// stream (key post.deleted) to which DeletePosts appends each deleted ID,
// in the same round trip as its tombstones. A reader reads the log's new
// entries with each timeline read (Range, RangeBatch): one more command in
// a round trip it makes anyway, which mostly answers nothing.
//
// A delete is gone from reads when DeletePosts returns, as it is without
// the local bodies: GetPostsAsOf uses them only for a read that began no
// earlier than a check of the log that succeeded, and every entry written
// before that check ran is applied. Otherwise it checks the log itself, in
// the round trip that fetches the bodies from Redis.
//
// Applying a delete leaves a tombstone in process, and a body fetched from
// Redis or the store is kept only where the cache holds nothing for its
// ID, so a fetch that raced a delete cannot put the body back. (Only if the
// tombstone were evicted between the delete's arrival and the racing
// fetch's return, by LocalPosts other posts in between, could it.)

// deleteLogRetention is how long the delete log keeps an entry: it is
// trimmed by entry age as it is written. A reader whose last check is more
// than half of it old may have missed trimmed entries, so it empties its
// local bodies first.
const deleteLogRetention = time.Hour

// maxDeletesPerCheck bounds the entries one check reads. A reader further
// behind (after a burst of deletes) catches up over several checks, and
// uses no local body until it has.
const maxDeletesPerCheck = 1000

// localPosts is the in-process copy of post bodies, and the reader's place
// in the delete log.
type localPosts struct {
	bodies *lru.Cache[feed.PostID, feed.Post]
	now    func() time.Time
	// lookups counts GetPostsAsOf's bodies by where they came from.
	lookups *prometheus.CounterVec

	// mu guards what follows, and orders every change to bodies: applied
	// deletes, fills and purges.
	mu sync.Mutex
	// applied is the log entry ID through which deletes are applied; ""
	// until the first check has found the log's end.
	applied string
	// asOf is the start of the latest check after which every earlier
	// delete is applied: bodies answer for reads that began before it.
	asOf time.Time
	// checkedAt is when a check last succeeded.
	checkedAt time.Time
	// epoch counts purges, so that a fill begun before one is dropped.
	epoch uint64
}

func newLocalPosts(size int, now func() time.Time) *localPosts {
	bodies, err := lru.New[feed.PostID, feed.Post](size)
	if err != nil {
		panic(err) // only for a size below 1, which New never passes
	}
	return &localPosts{bodies: bodies, now: now, lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_post_cache_local_lookups_total",
		Help: "Post bodies a timeline read looked up, by where they came from: hit (the process), miss (Redis: not in the process), unchecked (Redis: no check of the delete log since the read began).",
	}, []string{"result"})}
}

// Describe implements prometheus.Collector: the local bodies' lookups, if
// the Cache keeps any. The timeline service registers its post cache.
func (c *Cache) Describe(ch chan<- *prometheus.Desc) {
	if c.local != nil {
		c.local.lookups.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *Cache) Collect(ch chan<- prometheus.Metric) {
	if c.local != nil {
		c.local.lookups.Collect(ch)
	}
}

func (c *Cache) deleteLogKey() string { return c.opts.Prefix + "post.deleted" }

// queueDeleteLog queues, in DeletePosts' pipeline, one log entry per
// deleted ID, trimming entries older than deleteLogRetention. The log
// itself expires deleteLogRetention after the last delete, like every
// other key (see the package comment): then every entry would have been
// trimmed anyway, and the next delete starts a new log, whose entry IDs
// (Redis's clock) follow the old ones.
func (c *Cache) queueDeleteLog(ctx context.Context, pipe redis.Pipeliner, ids []feed.PostID) {
	minID := strconv.FormatInt(c.opts.Clock().Add(-deleteLogRetention).UnixMilli(), 10)
	for _, id := range ids {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: c.deleteLogKey(), MinID: minID, Approx: true, Values: []any{"p", strconv.FormatUint(uint64(id), 10)}})
	}
	pipe.PExpire(ctx, c.deleteLogKey(), deleteLogRetention)
}

// queueCheck queues a read of the delete log's new entries on pipe, and
// returns the function that applies them once the pipeline ran. Without
// local bodies it queues nothing.
func (c *Cache) queueCheck(ctx context.Context, pipe redis.Cmdable) func() {
	l := c.local
	if l == nil {
		return func() {}
	}
	l.mu.Lock()
	start, applied := l.now(), l.applied
	l.mu.Unlock()
	if applied == "" {
		// The first check only finds the log's end: nothing is cached
		// yet, so no earlier delete can be stale here.
		last := pipe.XRevRangeN(ctx, c.deleteLogKey(), "+", "-", 1)
		return func() {
			msgs, err := last.Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return
			}
			end := "0-0"
			if len(msgs) > 0 {
				end = msgs[0].ID
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.applied == "" {
				l.applied, l.asOf, l.checkedAt = end, start, l.now()
			}
		}
	}
	read := pipe.XRead(ctx, &redis.XReadArgs{Streams: []string{c.deleteLogKey(), applied}, Count: maxDeletesPerCheck, Block: -1})
	return func() {
		streams, err := read.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return
		}
		var msgs []redis.XMessage
		if len(streams) > 0 {
			msgs = streams[0].Messages
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if now := l.now(); now.Sub(l.checkedAt) > deleteLogRetention/2 {
			// Entries past applied may have been trimmed unread.
			l.bodies.Purge()
			l.epoch++
		}
		for _, m := range msgs {
			if s, ok := m.Values["p"].(string); ok {
				if n, err := strconv.ParseUint(s, 10, 64); err == nil {
					l.bodies.Add(feed.PostID(n), feed.Post{ID: feed.PostID(n), Deleted: true})
				}
			}
			if streamIDLess(l.applied, m.ID) {
				l.applied = m.ID
			}
		}
		l.checkedAt = l.now()
		if len(msgs) < maxDeletesPerCheck && start.After(l.asOf) {
			l.asOf = start
		}
	}
}

// GetPostsAsOf implements cache.PostsAsOf: GetPosts for a read that began
// at start, from the local bodies where the delete log allows it (see the
// comment at the top of this file); otherwise in one round trip that both
// checks the log and fetches the bodies.
func (c *Cache) GetPostsAsOf(ctx context.Context, ids []feed.PostID, start time.Time) (map[feed.PostID]feed.Post, error) {
	l := c.local
	if l == nil || len(ids) == 0 {
		return c.GetPosts(ctx, ids)
	}
	l.mu.Lock()
	fresh, epoch := l.applied != "" && !l.asOf.Before(start), l.epoch
	l.mu.Unlock()
	out := make(map[feed.PostID]feed.Post, len(ids))
	miss := ids
	if fresh {
		miss = nil
		for _, id := range ids {
			if p, ok := l.bodies.Get(id); ok {
				out[id] = p
			} else {
				miss = append(miss, id)
			}
		}
		l.lookups.WithLabelValues("hit").Add(float64(len(ids) - len(miss)))
		l.lookups.WithLabelValues("miss").Add(float64(len(miss)))
		if len(miss) == 0 {
			return out, nil
		}
	} else {
		l.lookups.WithLabelValues("unchecked").Add(float64(len(ids)))
	}
	keys := make([]string, len(miss))
	for i, id := range miss {
		keys[i] = c.postKey(id)
	}
	pipe, send := c.readPipe()
	var applyCheck func()
	if !fresh {
		applyCheck = c.queueCheck(ctx, pipe)
	}
	vals := c.queueMGet(ctx, pipe, keys)
	if err := send(ctx); err != nil {
		return nil, err
	}
	if applyCheck != nil {
		// The bodies were read after the check, so they are as new as
		// it: they may fill a cache it purged.
		applyCheck()
		l.mu.Lock()
		epoch = l.epoch
		l.mu.Unlock()
	}
	got, err := vals()
	if err != nil {
		return nil, err
	}
	l.fill(epoch, decodePosts(out, miss, got))
	return out, nil
}

// fill keeps posts fetched since epoch was read, each only where the
// cache holds nothing for its ID (a tombstone there stays).
func (l *localPosts) fill(epoch uint64, posts []feed.Post) {
	if l == nil || len(posts) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch != epoch || l.applied == "" {
		return
	}
	for _, p := range posts {
		l.bodies.ContainsOrAdd(p.ID, p)
	}
}

// queueMGet queues a read of keys on pipe: one MGET on a single node,
// GETs on Cluster, whose MGET cannot span slots (go-redis splits the
// pipeline by node). Its function returns each key's value, nil for a
// missing one.
func (c *Cache) queueMGet(ctx context.Context, pipe redis.Cmdable, keys []string) func() ([]any, error) {
	if _, cluster := c.rdb.(*redis.ClusterClient); !cluster {
		cmd := pipe.MGet(ctx, keys...)
		return func() ([]any, error) {
			vals, err := cmd.Result()
			if err != nil {
				return nil, unavailable(err)
			}
			return vals, nil
		}
	}
	gets := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		gets[i] = pipe.Get(ctx, k)
	}
	return func() ([]any, error) {
		vals := make([]any, len(keys))
		for i, g := range gets {
			v, err := g.Result()
			switch {
			case err == nil:
				vals[i] = v
			case !errors.Is(err, redis.Nil):
				return nil, unavailable(err)
			}
		}
		return vals, nil
	}
}

// streamIDLess reports whether stream entry ID a comes before b. IDs are
// "<milliseconds>-<sequence>"; an unparsable one counts as zero.
func streamIDLess(a, b string) bool {
	am, as := splitStreamID(a)
	bm, bs := splitStreamID(b)
	return am < bm || am == bm && as < bs
}

func splitStreamID(id string) (ms, seq uint64) {
	m, s, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(s, 10, 64)
	return ms, seq
}
