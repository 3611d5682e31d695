// Package fanout turns events into home-timeline writes: a new post goes
// into every follower's timeline (push) unless its author is pulled at read
// time, a deleted post leaves them, a follow backfills the followee's
// recent posts, and an unfollow purges them.
//
// A post with more followers than one chunk is split: the instance that
// handles the post writes the first chunk itself and publishes the rest as
// chunk messages on the shared consumer, so every instance takes a share.
//
// Inserts are idempotent and commutative (a timeline is a set of post IDs
// ordered by ID), so a redelivered or reordered post event leaves the same
// timelines. A backfill and a purge of one pair do not commute; instances
// handling a burst of follows and unfollows in parallel converge by
// re-reading the edge after each write (see followChanged).
package fanout

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/tracing"
)

// Followers pages through a user's followers.
type Followers interface {
	EachFollowerPage(ctx context.Context, user string, pageSize int, fn func([]string) error) error
}

// Timelines is where the engine writes.
type Timelines interface {
	Add(ctx context.Context, entries []cache.Entry) error
	Remove(ctx context.Context, entries []cache.Entry) error
}

// Posts lists an author's recent posts, for backfill and purge.
type Posts interface {
	ListByAuthor(ctx context.Context, author string, before feed.PostID, limit int) ([]feed.Post, error)
}

// Graph reads the durable graph: follower counts, to pick push or pull,
// and single edges, to settle follow and unfollow events whatever order
// they are handled in.
type Graph interface {
	FollowerCount(ctx context.Context, user string) (int64, error)
	IsFollowing(ctx context.Context, follower, followee string) (bool, error)
}

// Publisher appends chunk events to the event log.
type Publisher = event.Publisher

// Defaults of the engine's settings.
const (
	DefaultChunkSize = 1000
	// DefaultBackfill is the default timeline cap: a follow can fill a
	// timeline, and no more.
	DefaultBackfill = cache.DefaultCap
)

// Config tunes the engine.
type Config struct {
	// ChunkSize is how many followers one chunk covers: one pipelined
	// timeline write, and past the first, one message. Default 1000.
	ChunkSize int
	// Backfill is how many of a followee's recent posts a follow copies
	// into the follower's timeline, and an unfollow removes. Default 800,
	// the default timeline cap.
	Backfill int
	// Strategy and Threshold pick, per author, push at write time or pull
	// at read time (see feed.Strategy). Default hybrid at 10,000.
	Strategy  feed.Strategy
	Threshold int64
}

// Engine applies events to timelines.
type Engine struct {
	cfg       Config
	publisher Publisher
	followers Followers
	timelines Timelines
	recent    Timelines
	posts     Posts
	graph     Graph
	unfollows cache.Unfollows
	celebs    *cache.CelebritySet
	now       func() time.Time

	lag        prometheus.Histogram
	deliveries prometheus.Counter
	chunkTime  prometheus.Histogram
	chunks     prometheus.Counter
	posted     *prometheus.CounterVec
}

// Deps are the Engine's collaborators.
type Deps struct {
	Publisher   Publisher
	Followers   Followers
	Timelines   Timelines // home timelines
	Recent      Timelines // each author's recent posts
	Posts       Posts
	Graph       Graph
	Celebrities cache.Celebrities
	Unfollows   cache.Unfollows
}

// New returns an Engine whose metrics register with reg.
func New(cfg Config, d Deps, reg prometheus.Registerer) *Engine {
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.Backfill <= 0 {
		cfg.Backfill = DefaultBackfill
	}
	if cfg.Strategy == "" {
		cfg.Strategy = feed.DefaultStrategy
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = feed.DefaultCelebrityThreshold
	}
	e := &Engine{
		cfg: cfg, publisher: d.Publisher, followers: d.Followers, timelines: d.Timelines, recent: d.Recent,
		posts: d.Posts, graph: d.Graph, unfollows: d.Unfollows, now: time.Now,
		celebs: cache.NewCelebritySet(d.Celebrities, time.Second),
		posted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_fanout_posts_total",
			Help: "New posts handled by the fan-out, by how they reach followers: push (written now) or pull (merged at read time).",
		}, []string{"mode"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_fanout_lag_seconds",
			Help:    "Time from a post's creation to its write into a follower chunk's timelines.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1ms .. 33s
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_fanout_deliveries_total",
			Help: "Timeline entries sent to the cache by fan-out on write (inactive users' are dropped there).",
		}),
		chunks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_fanout_chunks_published_total",
			Help: "Chunk messages published for other fan-out instances to write.",
		}),
		chunkTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_fanout_chunk_seconds",
			Help:    "Time to write one chunk of followers' timelines.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	reg.MustRegister(e.lag, e.deliveries, e.chunkTime, e.chunks, e.posted)
	return e
}

// Kinds are the events the engine consumes.
var Kinds = []event.Kind{event.KindPostCreated, event.KindFanoutChunk, event.KindPostDeleted, event.KindFollowed, event.KindUnfollowed}

// Handle applies one event; an error means "retry later". It implements
// event.Handler.
func (e *Engine) Handle(ctx context.Context, ev event.Event) error {
	switch ev := ev.(type) {
	case event.PostCreated:
		return e.push(ctx, ev.Author, ev.Post, ev.Created)
	case event.FanoutChunk:
		return e.write(ctx, ev.Author, ev.Followers, ev.Post, ev.Created)
	case event.PostDeleted:
		return e.retract(ctx, ev.Author, ev.Post)
	case event.Followed:
		return e.followChanged(ctx, ev.Follower, ev.Followee, true)
	case event.Unfollowed:
		return e.followChanged(ctx, ev.Follower, ev.Followee, false)
	}
	return fmt.Errorf("fanout: unexpected event %T: %w", ev, event.ErrPermanent)
}

// pulled reports whether author's posts reach followers at read time.
// Under hybrid, an author who reaches the threshold joins the sticky
// celebrity set, which readers consult to know whom to pull.
func (e *Engine) pulled(ctx context.Context, author string) (bool, error) {
	if e.cfg.Strategy != feed.Hybrid {
		return e.cfg.Strategy.Pulled(0, e.cfg.Threshold), nil
	}
	if celeb, err := e.celebs.Has(ctx, author); err != nil || celeb {
		return celeb, err
	}
	n, err := e.graph.FollowerCount(ctx, author)
	if err != nil || !e.cfg.Strategy.Pulled(n, e.cfg.Threshold) {
		return false, err
	}
	return true, e.celebs.Add(ctx, author)
}

// push adds post id to its author's recent-post list, which readers pull
// from, and, unless the author is pulled, sends it to the author's
// followers: the first chunk written here, the others published as chunk
// messages for any instance to write. A redelivered post publishes its
// chunks again under the same message IDs, which the stream drops as
// duplicates within its dedupe window.
func (e *Engine) push(ctx context.Context, author string, id feed.PostID, created time.Time) error {
	if err := e.recent.Add(ctx, []cache.Entry{{User: author, Post: id}}); err != nil {
		return err
	}
	pulled, err := e.pulled(ctx, author)
	if err != nil {
		return err
	}
	if pulled {
		e.posted.WithLabelValues("pull").Inc()
		return nil
	}
	e.posted.WithLabelValues("push").Inc()
	var index uint32
	return e.followers.EachFollowerPage(ctx, author, e.cfg.ChunkSize, func(users []string) error {
		index++
		if index == 1 {
			return e.write(ctx, author, users, id, created)
		}
		e.chunks.Inc()
		return e.publisher.Publish(ctx, event.FanoutChunk{Post: id, Author: author, Created: created, Index: index, Followers: users})
	})
}

// write puts post id of author into each of users' timelines in one
// pipelined batch, leaving out users marked as having unfollowed author:
// a chunk can wait in the stream while a follower leaves, and its write
// must not land after the unfollow's purge.
func (e *Engine) write(ctx context.Context, author string, users []string, id feed.PostID, created time.Time) (err error) {
	ctx, span := tracing.Tracer().Start(ctx, "write timelines", trace.WithAttributes(
		attribute.Int64("herald.post.id", int64(id)), attribute.Int("herald.followers", len(users))))
	defer func() { tracing.End(span, err) }()
	start := e.now()
	left, err := e.unfollows.Unfollowed(ctx, author, users)
	if err != nil {
		return err
	}
	entries := make([]cache.Entry, 0, len(users))
	for i, u := range users {
		if !left[i] {
			entries = append(entries, cache.Entry{User: u, Post: id})
		}
	}
	if err := e.timelines.Add(ctx, entries); err != nil {
		return err
	}
	done := e.now()
	e.chunkTime.Observe(done.Sub(start).Seconds())
	e.lag.Observe(done.Sub(created).Seconds())
	e.deliveries.Add(float64(len(entries)))
	return nil
}

// retract removes a deleted post from its author's recent list and from
// followers' timelines, where a push, or a backfill from before the author
// became pulled, may have put it. Reads already filter it out; this frees
// the cache slots.
func (e *Engine) retract(ctx context.Context, author string, id feed.PostID) error {
	if err := e.recent.Remove(ctx, []cache.Entry{{User: author, Post: id}}); err != nil {
		return err
	}
	return e.followers.EachFollowerPage(ctx, author, e.cfg.ChunkSize, func(users []string) error {
		entries := make([]cache.Entry, len(users))
		for i, u := range users {
			entries[i] = cache.Entry{User: u, Post: id}
		}
		return e.timelines.Remove(ctx, entries)
	})
}

// followChanged applies a Followed (followed) or Unfollowed event so that
// the outcome does not depend on the order in which fan-out instances
// handle a burst of them: after each of its writes, the handler re-reads
// the edge, and while it no longer matches, applies the opposite and reads
// again. So every write to the pair's entries is followed by a re-read by
// the same handler. The last write to land then has a re-read after it;
// an edge change after that re-read would have an event whose handler
// writes later still, so that re-read saw the final edge, and the
// timeline matches it. (Re-reading only once, after the first write, left
// a hole: a handler that read a stale edge and wrote the opposite could
// land that write after the final event's handler had finished.)
func (e *Engine) followChanged(ctx context.Context, follower, followee string, followed bool) error {
	state := followed
	for range maxFollowFlips {
		var err error
		if state {
			err = e.backfill(ctx, follower, followee)
		} else {
			err = e.purge(ctx, follower, followee)
		}
		if err != nil {
			return err
		}
		now, err := e.graph.IsFollowing(ctx, follower, followee)
		if err != nil || now == state {
			return err
		}
		state = now
	}
	return fmt.Errorf("fanout: the edge %s -> %s kept changing under %d re-reads; the event will be retried", follower, followee, maxFollowFlips)
}

// maxFollowFlips bounds followChanged's write-and-re-read rounds while a
// pair flaps; past it the event is retried later.
const maxFollowFlips = 8

// backfill copies a new followee's recent posts into the follower's
// timeline, unless the followee is pulled: then reads merge them anyway.
func (e *Engine) backfill(ctx context.Context, follower, followee string) error {
	if err := e.unfollows.ClearUnfollowed(ctx, follower, followee); err != nil {
		return err
	}
	if pulled, err := e.pulled(ctx, followee); err != nil || pulled {
		return err
	}
	entries, err := e.recentEntries(ctx, follower, followee)
	if err != nil || len(entries) == 0 {
		return err
	}
	return e.timelines.Add(ctx, entries)
}

// purge removes followee's recent posts from follower's timeline, after
// marking the unfollow so that pushes still on their way skip follower.
func (e *Engine) purge(ctx context.Context, follower, followee string) error {
	if err := e.unfollows.MarkUnfollowed(ctx, follower, followee); err != nil {
		return err
	}
	entries, err := e.recentEntries(ctx, follower, followee)
	if err != nil || len(entries) == 0 {
		return err
	}
	return e.timelines.Remove(ctx, entries)
}

// recentEntries returns entries putting followee's recent posts in
// follower's timeline.
func (e *Engine) recentEntries(ctx context.Context, follower, followee string) ([]cache.Entry, error) {
	ps, err := e.posts.ListByAuthor(ctx, followee, 0, e.cfg.Backfill)
	if err != nil {
		return nil, err
	}
	entries := make([]cache.Entry, len(ps))
	for i, p := range ps {
		entries[i] = cache.Entry{User: follower, Post: p.ID}
	}
	return entries, nil
}
