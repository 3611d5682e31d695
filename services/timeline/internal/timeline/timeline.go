// Package timeline is the timeline service's domain: it reads home
// timelines from the cache, merges in the reader's own posts, hydrates post
// bodies, rebuilds missing timelines from the durable store, and streams
// new posts to connected readers. Hub's comment describes how streams are
// indexed (per user, not per stream) and the limits that bound them.
package timeline

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/pagetoken"
	"github.com/herald-feed/herald/services/platform/tracing"
)

// Posts is the part of the durable store the timeline service reads.
type Posts interface {
	GetPosts(ctx context.Context, ids []feed.PostID) ([]feed.Post, error)
	ListByAuthor(ctx context.Context, author string, before feed.PostID, limit int) ([]feed.Post, error)
}

// Following lists the accounts a user follows.
type Following interface {
	Following(ctx context.Context, user string, max int) ([]string, error)
}

// Config tunes the service.
type Config struct {
	// MaxFollowing bounds how much of a user's following list a rebuild,
	// a pull or a stream reads. Default: no bound, the whole list. The
	// graph service's -max-following (feed.DefaultMaxFollowing) bounds
	// the lists it grows; a bound here below the longest list the graph
	// holds would drop the posts of the accounts past it, with no error.
	// And lists outgrow that limit: edges made before the limit existed or
	// was lowered, bulk loads below the graph service, a split graph
	// service run with a higher limit than this binary's default.
	MaxFollowing int
	// RebuildConcurrency bounds parallel store reads in a rebuild or a
	// pull. Default 16.
	RebuildConcurrency int
	// Strategy must match the fan-out service's: it says whose posts are
	// pulled at read time (see feed.Strategy). Under hybrid, the fan-out
	// decides who is a celebrity and records it in the celebrity set.
	Strategy feed.Strategy
	// MemoTTL bounds how long an instance reuses a following list it
	// looked up; Followed and Unfollowed events clear it at once.
	// Default 30s.
	MemoTTL time.Duration
	// ClaimTTL bounds a rebuild's claim on a timeline: the cross-instance
	// lock that makes concurrent rebuilds collapse into one. Default 5s.
	ClaimTTL time.Duration
	// ClaimWait is how long a reader whose instance lost the claim waits
	// for the winner's rebuild before rebuilding itself. Default 1s.
	ClaimWait time.Duration
}

// Service implements the timeline operations.
type Service struct {
	cfg       Config
	timelines cache.Timelines
	recent    cache.Timelines
	celebs    *cache.CelebritySet
	postCache cache.Posts
	posts     Posts
	following Following
	tokens    *pagetoken.Codec
	log       *slog.Logger
	origins   *tracing.Origins
	rebuilds  singleflight.Group

	followingMemo *memo[[]string]

	rebuildCount *prometheus.CounterVec
	lookups      *prometheus.CounterVec
}

// Deps are the Service's collaborators.
type Deps struct {
	Timelines   cache.Timelines // home timelines
	Recent      cache.Timelines // authors' recent posts
	PostCache   cache.Posts
	Posts       Posts
	Following   Following
	Celebrities cache.Celebrities
	Tokens      *pagetoken.Codec
	Log         *slog.Logger
	// Origins, if set, holds the trace contexts of recent posts, whose
	// first read here ends their traces (see tracing.Origins).
	Origins *tracing.Origins
}

// New returns a Service whose metrics register with reg.
func New(cfg Config, d Deps, reg prometheus.Registerer) *Service {
	if cfg.MaxFollowing <= 0 {
		cfg.MaxFollowing = math.MaxInt
	}
	if cfg.RebuildConcurrency <= 0 {
		cfg.RebuildConcurrency = 16
	}
	if cfg.Strategy == "" {
		cfg.Strategy = feed.DefaultStrategy
	}
	if cfg.MemoTTL <= 0 {
		cfg.MemoTTL = 30 * time.Second
	}
	if cfg.ClaimTTL <= 0 {
		cfg.ClaimTTL = 5 * time.Second
	}
	if cfg.ClaimWait <= 0 {
		cfg.ClaimWait = time.Second
	}
	s := &Service{
		cfg: cfg, timelines: d.Timelines, recent: d.Recent, postCache: d.PostCache,
		celebs: cache.NewCelebritySet(d.Celebrities, time.Second),
		posts:  d.Posts, following: d.Following, tokens: d.Tokens, log: d.Log, origins: d.Origins,
		followingMemo: newMemo[[]string](cfg.MemoTTL),
		rebuildCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_timeline_rebuilds_total",
			Help: "Missing home timelines, by outcome: built (this instance rebuilt it from the durable store), waited (another instance's rebuild filled it), retaken (the other rebuild was too slow, so this instance rebuilt it too).",
		}, []string{"outcome"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_timeline_cache_lookups_total",
			Help: "Home timeline cache lookups, by result (hit; miss; error when the cache was unavailable; past_cap when a page continued from the durable store past a capped list).",
		}, []string{"result"}),
	}
	reg.MustRegister(s.rebuildCount, s.lookups)
	// Every label's series from the start, so that ratios read 0 rather
	// than nothing before the first of each.
	for _, outcome := range []string{"built", "waited", "retaken"} {
		s.rebuildCount.WithLabelValues(outcome)
	}
	for _, result := range []string{"hit", "miss", "error", "past_cap"} {
		s.lookups.WithLabelValues(result)
	}
	// A post cache that keeps bodies in process counts where they came
	// from (rediscache: herald_post_cache_local_lookups_total).
	if c, ok := d.PostCache.(prometheus.Collector); ok {
		reg.MustRegister(c)
	}
	return s
}

// Home returns one page of user's home timeline, newest first, and the
// token of the next page ("" after the last). The token holds the last
// post ID returned, so the next page is strictly older whatever arrives in
// between.
func (s *Service) Home(ctx context.Context, user string, pageSize int32, token string) ([]feed.Post, string, error) {
	start := time.Now()
	if err := feed.ValidateUserID("user_id", user); err != nil {
		return nil, "", err
	}
	scope := "home:" + user
	req, err := s.tokens.ParseRequest(scope, pageSize, feed.MaxPageSize, token)
	if err != nil {
		return nil, "", err
	}
	size, before := req.Size, feed.PostID(req.Cursor.Last)

	var out []feed.Post
	for len(out) < size {
		want := size - len(out)
		ids, err := s.candidates(ctx, user, before, want)
		if err != nil {
			return nil, "", err
		}
		if len(ids) == 0 {
			break
		}
		posts, err := s.hydrateRead(ctx, ids, start)
		if err != nil {
			return nil, "", err
		}
		out = append(out, posts...)
		if len(ids) < want {
			break // the timeline ended
		}
		// Some candidates were deleted; read on below the last one.
		before = ids[len(ids)-1]
	}
	if len(out) < size {
		return out, "", nil
	}
	out = out[:size]
	return out, s.tokens.Encode(scope, pagetoken.Cursor{Last: uint64(out[size-1].ID)}), nil
}

// candidates returns up to n post IDs below before: user's cached
// timeline (what fan-out pushed) merged with the recent posts of user
// (an author always reads their own writes) and of every author user
// pulls. Merging sets ordered by ID keeps pages exact: no duplicates
// where an author was both pushed and pulled, no gaps between pages.
func (s *Service) candidates(ctx context.Context, user string, before feed.PostID, n int) ([]feed.PostID, error) {
	authors, err := s.pulledAuthors(ctx, user)
	if err != nil {
		return nil, err
	}
	// An author always reads their own writes. A new slice: authors may be
	// the memoized following list, which other readers share.
	authors = append(slices.Clip(authors), user)
	first := s.firstReads(ctx, user, authors, before, n)

	var cached, pulled []feed.PostID
	g, gctx := errgroup.WithContext(ctx)
	if s.cfg.Strategy != feed.Pull { // under pull nothing is pushed
		g.Go(func() (err error) {
			cached, err = s.cached(gctx, user, before, n, first[timelineKey])
			return err
		})
	}
	g.Go(func() (err error) {
		pulled, err = s.pulledPosts(gctx, authors, before, n, first)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return Merge(n, cached, pulled), nil
}

// timelineKey is the key of the home timeline's read in firstReads' map;
// the recent lists' reads are keyed by author, and a user ID is never
// empty.
const timelineKey = ""

// firstReads runs the first cache reads of a page, the home timeline's
// and each author's recent list's, in one round trip when the cache can
// batch them. It returns nil when it cannot; then each read goes alone.
func (s *Service) firstReads(ctx context.Context, user string, authors []string, before feed.PostID, n int) map[string]*cache.RangeReq {
	b, ok := s.timelines.(cache.BatchRanger)
	if !ok {
		return nil
	}
	reqs := make([]*cache.RangeReq, 0, len(authors)+1)
	if s.cfg.Strategy != feed.Pull {
		reqs = append(reqs, &cache.RangeReq{List: s.timelines, User: user, Before: before, Limit: n})
	}
	for _, a := range authors {
		reqs = append(reqs, &cache.RangeReq{List: s.recent, User: a, Before: before, Limit: n})
	}
	b.RangeBatch(ctx, reqs)
	out := make(map[string]*cache.RangeReq, len(reqs))
	for _, r := range reqs {
		key := r.User
		if r.List == s.timelines {
			key = timelineKey
		}
		out[key] = r
	}
	return out
}

// rangeOr returns first's results if the read was batched, or reads list.
func rangeOr(ctx context.Context, first *cache.RangeReq, list cache.Timelines, user string, before feed.PostID, n int) ([]feed.PostID, bool, error) {
	if first != nil {
		return first.IDs, first.OK, first.Err
	}
	return list.Range(ctx, user, before, n)
}

// cached reads the cached timeline, rebuilding it first if it is missing.
// If the cache is down, it reads the durable store instead: slower, but
// the cache is only a cache.
func (s *Service) cached(ctx context.Context, user string, before feed.PostID, n int, first *cache.RangeReq) ([]feed.PostID, error) {
	ids, ok, err := rangeOr(ctx, first, s.timelines, user, before, n)
	if errors.Is(err, feed.ErrUnavailable) {
		s.lookups.WithLabelValues("error").Inc()
		s.log.Warn("timeline cache unavailable; reading the durable store", "user", user, "err", err)
		return s.durable(ctx, user, before, n)
	}
	if err != nil {
		return nil, err
	}
	if ok {
		s.lookups.WithLabelValues("hit").Inc()
		return s.pastCap(ctx, s.timelines, user, ids, before, n, s.durableOf(user))
	}
	s.lookups.WithLabelValues("miss").Inc()
	// Concurrent readers of one missing timeline share one rebuild here,
	// and a claim in the cache makes other instances' readers wait for it.
	_, err, _ = s.rebuilds.Do(user, func() (any, error) {
		// The rebuild outlives a reader who gives up, since others may
		// share it, but not its claim: a slower one would race the next
		// claimant for nothing.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ClaimTTL)
		defer cancel()
		return nil, s.rebuild(rctx, user)
	})
	if errors.Is(err, feed.ErrUnavailable) {
		s.log.Warn("timeline rebuild failed; reading the durable store", "user", user, "err", err)
		return s.durable(ctx, user, before, n)
	}
	if err != nil {
		return nil, err
	}
	ids, _, err = s.timelines.Range(ctx, user, before, n)
	if err != nil {
		return nil, err
	}
	return s.pastCap(ctx, s.timelines, user, ids, before, n, s.durableOf(user))
}

// durableOf returns the durable-store continuation of user's timeline.
func (s *Service) durableOf(user string) func(context.Context, feed.PostID, int) ([]feed.PostID, error) {
	return func(ctx context.Context, below feed.PostID, m int) ([]feed.PostID, error) {
		return s.durable(ctx, user, below, m)
	}
}

// pastCap continues a short page read from a capped list (a timeline or a
// recent-post list): if the list is full, entries older than its last one
// were trimmed, so the rest of the page comes from the durable store
// through more. History does not end at the cap.
func (s *Service) pastCap(ctx context.Context, list cache.Timelines, key string, ids []feed.PostID, before feed.PostID, n int,
	more func(ctx context.Context, below feed.PostID, m int) ([]feed.PostID, error)) ([]feed.PostID, error) {
	// A short first page of at most cap entries means the whole list is
	// shorter than that, so it cannot be full: no need to ask. This keeps
	// the extra round trip off the common read of a small timeline.
	if len(ids) >= n || before == 0 && n <= list.Cap() {
		return ids, nil
	}
	full, err := list.Full(ctx, key)
	if err != nil || !full {
		return ids, err
	}
	below := before
	if len(ids) > 0 {
		below = ids[len(ids)-1]
	}
	older, err := more(ctx, below, n-len(ids))
	if err != nil {
		return nil, err
	}
	s.lookups.WithLabelValues("past_cap").Inc()
	return append(ids, older...), nil
}

// rebuild refills user's timeline from the durable store, capped to the
// cache cap. It claims the timeline first, which both locks out other
// instances' rebuilds and makes fan-out write into the timeline from then
// on: every post is either stored before the durable read below, so read
// by it, or pushed after the claim, so kept by Store's union.
func (s *Service) rebuild(ctx context.Context, user string) error {
	outcome := "built"
	won, err := s.timelines.Claim(ctx, user, s.cfg.ClaimTTL)
	if err != nil {
		return err
	}
	if !won {
		if s.awaitRebuild(ctx, user) {
			s.rebuildCount.WithLabelValues("waited").Inc()
			return nil
		}
		// The other rebuild is slow, or its instance died. Rebuilding as
		// well is safe: Store merges. Claim again in case the other claim
		// lapsed meanwhile, so that pushes keep landing.
		if _, err := s.timelines.Claim(ctx, user, s.cfg.ClaimTTL); err != nil {
			return err
		}
		outcome = "retaken"
	}
	followees, lists, err := s.durableLists(ctx, user, 0, s.timelines.Cap())
	if err != nil {
		return err
	}
	ids := Merge(s.timelines.Cap(), lists...)
	s.rebuildCount.WithLabelValues(outcome).Inc()
	s.log.Debug("rebuilt timeline", "user", user, "entries", len(ids), "outcome", outcome)
	if err := s.timelines.Store(ctx, user, ids); err != nil {
		return err
	}
	return s.dropUnfollowed(ctx, user, followees, lists)
}

// dropUnfollowed takes out of user's timeline, just stored, the posts of
// those among followees whom user no longer follows. The rebuild read the
// following list before it stored: if user unfollowed one of them in
// between, the fan-out's purge of that account's posts may have run
// before the Store, which then put them back. So the list is read again
// after the Store: an unfollow it does not show is newer than the Store,
// and its purge, which follows the graph's write, comes after the Store
// too. lists[i] are followees[i]'s posts as the rebuild read them.
func (s *Service) dropUnfollowed(ctx context.Context, user string, followees []string, lists [][]feed.PostID) error {
	if len(followees) == 0 {
		return nil
	}
	now, err := s.following.Following(ctx, user, s.cfg.MaxFollowing)
	if err != nil {
		return err
	}
	still := make(map[string]bool, len(now))
	for _, f := range now {
		still[f] = true
	}
	var gone []cache.Entry
	for i, f := range followees {
		if still[f] {
			continue
		}
		for _, id := range lists[i] {
			gone = append(gone, cache.Entry{User: user, Post: id})
		}
	}
	if len(gone) == 0 {
		return nil
	}
	s.log.Debug("rebuild: dropping the posts of accounts unfollowed meanwhile", "user", user, "entries", len(gone))
	return s.timelines.Remove(ctx, gone)
}

// awaitRebuild polls user's timeline until another instance's rebuild
// completes it, for at most ClaimWait, and reports whether it did.
func (s *Service) awaitRebuild(ctx context.Context, user string) bool {
	deadline := time.Now().Add(s.cfg.ClaimWait)
	for wait := 5 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 100*time.Millisecond) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		if _, ok, err := s.timelines.Range(ctx, user, 0, 1); err == nil && ok {
			return true
		}
	}
	return false
}

// durable computes up to n entries of user's home timeline below before
// from the durable store: a k-way merge of the posts of every account user
// follows.
func (s *Service) durable(ctx context.Context, user string, before feed.PostID, n int) ([]feed.PostID, error) {
	_, lists, err := s.durableLists(ctx, user, before, n)
	if err != nil {
		return nil, err
	}
	return Merge(n, lists...), nil
}

// durableLists returns the accounts user follows and, for each, up to n of
// its posts below before, newest first.
func (s *Service) durableLists(ctx context.Context, user string, before feed.PostID, n int) ([]string, [][]feed.PostID, error) {
	followees, err := s.following.Following(ctx, user, s.cfg.MaxFollowing)
	if err != nil {
		return nil, nil, err
	}
	lists := make([][]feed.PostID, len(followees))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.RebuildConcurrency)
	for i, f := range followees {
		g.Go(func() error {
			ps, err := s.posts.ListByAuthor(gctx, f, before, n)
			lists[i] = postIDs(ps)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return followees, lists, nil
}

// hydrate returns the live posts among ids, in the order of ids, for a
// read that began at start. Bodies come from the post cache, then the
// store; deleted posts are dropped. A cache that keeps bodies in process
// (cache.PostsAsOf) answers from them when the read's cache reads since
// start showed it every delete.
func (s *Service) hydrate(ctx context.Context, ids []feed.PostID, start time.Time) ([]feed.Post, error) {
	var hit map[feed.PostID]feed.Post
	var err error
	if pc, ok := s.postCache.(cache.PostsAsOf); ok {
		hit, err = pc.GetPostsAsOf(ctx, ids, start)
	} else {
		hit, err = s.postCache.GetPosts(ctx, ids)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.log.Warn("post cache read failed; reading the store", "err", err)
		hit = nil
	}
	var miss []feed.PostID
	for _, id := range ids {
		if _, ok := hit[id]; !ok {
			miss = append(miss, id)
		}
	}
	if len(miss) > 0 {
		found, err := s.posts.GetPosts(ctx, miss)
		if err != nil {
			return nil, err
		}
		if hit == nil {
			hit = make(map[feed.PostID]feed.Post, len(found))
		}
		for _, p := range found {
			hit[p.ID] = p
		}
		if err := s.postCache.PutPosts(ctx, found); err != nil {
			s.log.Warn("post cache fill failed", "err", err)
		}
	}
	out := make([]feed.Post, 0, len(ids))
	for _, id := range ids {
		if p, ok := hit[id]; ok && !p.Deleted {
			out = append(out, p)
		}
	}
	return out, nil
}

// hydrateRead is hydrate for a reader's page, in a span of its own that
// links to the traces of the posts this read is the first here to return
// (and adds a "first read" span to each of those traces).
func (s *Service) hydrateRead(ctx context.Context, ids []feed.PostID, start time.Time) ([]feed.Post, error) {
	if !tracing.Enabled() {
		return s.hydrate(ctx, ids, start) // the read path pays nothing for tracing off
	}
	ctx, span := tracing.Tracer().Start(ctx, "hydrate posts", trace.WithAttributes(attribute.Int("herald.posts", len(ids))))
	posts, err := s.hydrate(ctx, ids, start)
	if err == nil && s.origins != nil {
		read := make([]uint64, len(posts))
		for i, p := range posts {
			read[i] = uint64(p.ID)
		}
		for _, l := range s.origins.FirstReads(ctx, read) {
			span.AddLink(l)
		}
	}
	tracing.End(span, err)
	return posts, err
}

// Post returns one live post, or feed.ErrNotFound.
func (s *Service) Post(ctx context.Context, id feed.PostID) (feed.Post, error) {
	ps, err := s.hydrate(ctx, []feed.PostID{id}, time.Now())
	if err != nil {
		return feed.Post{}, err
	}
	if len(ps) == 0 {
		return feed.Post{}, feed.ErrNotFound
	}
	return ps[0], nil
}

func postIDs(ps []feed.Post) []feed.PostID {
	ids := make([]feed.PostID, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	return slices.Clip(ids)
}
