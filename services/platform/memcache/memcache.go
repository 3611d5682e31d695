// Package memcache is the in-process cache: home timelines, authors'
// recent-post lists, post bodies and the small sets beside them in memory,
// for a single-process Herald. It implements every port of package cache.
//
// Everything a call can create is bounded, since any caller can name any
// user: timelines expire (see NewActive and NewRecent) and each Cache
// keeps at most about MaxTimelines of them; the post cache holds at most
// MaxPosts bodies and tombstones; unfollow marks lapse after
// cache.UnfollowTTL and number at most MaxUnfollows. Past a bound an
// entry is evicted; each bound says which, and what that costs.
package memcache

import (
	"context"
	"hash/maphash"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
)

var (
	_ cache.Timelines = (*Cache)(nil)
	_ cache.Posts     = (*Cache)(nil)
)

const (
	// DefaultCap is the timeline cap New uses when given one below 1.
	DefaultCap = cache.DefaultCap
	// DefaultRecentTTL is the recent lists' TTL NewRecent uses when given
	// one below 1.
	DefaultRecentTTL = cache.DefaultRecentTTL
	// MaxPosts bounds the post cache. Past it, PutPosts drops arbitrary
	// entries to make room: every post can be read again from the store,
	// and a bound matters more than which bodies stay.
	MaxPosts = 100_000
	// MaxTimelines bounds the timelines one Cache keeps, about: each of
	// its shards keeps MaxTimelines/shards. Past it, creating a timeline
	// evicts the one of a few sampled that expires first, the least
	// recently read (active) or written (recent lists): its next reader
	// rebuilds it. A timeline under a rebuild's claim is never evicted,
	// so that a post pushed into it during the rebuild survives to the
	// Store; claims last seconds, so they exceed the bound only briefly.
	MaxTimelines = 100_000
	// MaxUnfollows bounds the unfollow marks. Past it, lapsed marks are
	// dropped, and then the mark of a few sampled that lapses first: a
	// mark evicted early can only let a push that was already under way
	// put one post of an unfollowed author back into a timeline.
	MaxUnfollows = 100_000

	shards       = 64
	shardMax     = MaxTimelines / shards
	evictSamples = 8
)

// Cache holds timelines and post bodies. It is safe for concurrent use.
//
// A Cache made by New keeps a timeline until it is evicted (see
// MaxTimelines). One made by NewActive keeps only timelines read within
// its window, and one made by NewRecent only lists written within its TTL
// (see cache.Timelines).
type Cache struct {
	cap int
	// window, if positive, makes an active-only cache: Add writes only
	// into a timeline that exists or is claimed, and a read renews it.
	// Otherwise Add creates timelines, and a write renews them for ttl
	// (0: they never expire).
	window time.Duration
	ttl    time.Duration
	now    func() time.Time
	seed   maphash.Seed
	// Timelines are sharded by user so that fan-out to many users does not
	// serialise on one lock.
	shards [shards]shard

	postsMu sync.RWMutex
	posts   map[feed.PostID]feed.Post
}

type shard struct {
	mu        sync.RWMutex
	timelines map[string]*timeline
	claims    map[string]time.Time // user -> when the rebuild claim lapses
	nextSweep time.Time
}

// timeline is one user's IDs, sorted newest (largest) first, no duplicates.
type timeline struct {
	ids      []feed.PostID
	complete bool
	expires  time.Time // zero: never
}

// New returns an empty cache whose timelines keep the newest cap entries.
// Add creates a timeline that does not exist, and timelines never expire,
// though they are evicted past MaxTimelines: the shape of authors'
// recent-post lists, without their TTL, for tests.
func New(cap int) *Cache { return newCache(cap, 0, 0, time.Now) }

// NewRecent returns an empty cache of authors' recent-post lists: Add
// creates a list that does not exist, every Add or Store renews it, and a
// list not written within ttl expires. A ttl below 1 is DefaultRecentTTL.
func NewRecent(cap int, ttl time.Duration) *Cache {
	return NewRecentClock(cap, ttl, time.Now)
}

// NewRecentClock is NewRecent on the clock now, so that a test can step
// through the TTL instead of sleeping through it.
func NewRecentClock(cap int, ttl time.Duration, now func() time.Time) *Cache {
	if ttl < 1 {
		ttl = DefaultRecentTTL
	}
	return newCache(cap, 0, ttl, now)
}

// NewActive returns an empty cache of active users' home timelines: Add
// writes only into a timeline that exists or is claimed, and a timeline
// not read (Range) within window expires. A window of 0 is New.
func NewActive(cap int, window time.Duration) *Cache {
	return NewActiveClock(cap, window, time.Now)
}

// NewActiveClock is NewActive on the clock now, so that a test can step
// through the active window instead of sleeping through it.
func NewActiveClock(cap int, window time.Duration, now func() time.Time) *Cache {
	return newCache(cap, window, 0, now)
}

func newCache(cap int, window, ttl time.Duration, now func() time.Time) *Cache {
	if cap < 1 {
		cap = DefaultCap
	}
	if now == nil {
		now = time.Now
	}
	c := &Cache{cap: cap, window: window, ttl: ttl, now: now, seed: maphash.MakeSeed(), posts: make(map[feed.PostID]feed.Post)}
	for i := range c.shards {
		c.shards[i].timelines = make(map[string]*timeline)
		c.shards[i].claims = make(map[string]time.Time)
	}
	return c
}

// Cap implements cache.Timelines.
func (c *Cache) Cap() int { return c.cap }

func (c *Cache) shard(user string) *shard {
	return &c.shards[maphash.String(c.seed, user)%shards]
}

// Add implements cache.Timelines.
func (c *Cache) Add(_ context.Context, entries []cache.Entry) error {
	now := c.now()
	c.byShard(entries, func(s *shard, es []cache.Entry) {
		c.sweepLocked(s, now)
		for _, e := range es {
			t := c.liveLocked(s, e.User, now)
			if t == nil {
				if c.window > 0 && !s.claimedLocked(e.User, now) {
					continue // an inactive user: the next read rebuilds
				}
				t = c.createLocked(s, e.User, now)
				if c.window > 0 {
					t.expires = now.Add(c.window)
				}
			}
			if c.ttl > 0 {
				t.expires = now.Add(c.ttl)
			}
			t.insert(e.Post, c.cap)
		}
	})
	return nil
}

// liveLocked returns user's timeline, or nil if there is none or it
// expired at now.
func (c *Cache) liveLocked(s *shard, user string, now time.Time) *timeline {
	t := s.timelines[user]
	if t != nil && !t.expires.IsZero() && !now.Before(t.expires) {
		return nil
	}
	return t
}

func (s *shard) claimedLocked(user string, now time.Time) bool {
	until, ok := s.claims[user]
	return ok && now.Before(until)
}

// createLocked puts a new, empty timeline for user into s, first evicting
// one if s is at its bound (see MaxTimelines).
func (c *Cache) createLocked(s *shard, user string, now time.Time) *timeline {
	delete(s.timelines, user) // an expired one, which makes room itself
	if len(s.timelines) >= shardMax {
		evict(s.timelines, func(u string, t *timeline) (time.Time, bool) {
			return t.expires, !s.claimedLocked(u, now)
		})
	}
	t := &timeline{}
	s.timelines[user] = t
	return t
}

// evict deletes from m, of up to evictSamples of its entries, the one
// that expires first among those rank says may go. Map iteration starts
// at a random place, so this is a sampled, approximate LRU in O(1), the
// way Redis evicts. It deletes nothing when no sampled entry may go.
func evict[K comparable, V any](m map[K]V, rank func(K, V) (expires time.Time, ok bool)) {
	var (
		victim  K
		soonest time.Time
		found   bool
		seen    int
	)
	for k, v := range m {
		if at, ok := rank(k, v); ok && (!found || at.Before(soonest)) {
			victim, soonest, found = k, at, true
		}
		if seen++; seen == evictSamples {
			break
		}
	}
	if found {
		delete(m, victim)
	}
}

// expiry is how long a timeline lasts untouched: the window, or the TTL.
func (c *Cache) expiry() time.Duration { return max(c.window, c.ttl) }

// sweepLocked drops s's expired timelines and lapsed claims, at most once
// per quarter of the expiry, so that memory tracks the users who read
// (active) or write (recent lists).
func (c *Cache) sweepLocked(s *shard, now time.Time) {
	if c.expiry() == 0 || now.Before(s.nextSweep) {
		return
	}
	s.nextSweep = now.Add(c.expiry() / 4)
	for u, t := range s.timelines {
		if !now.Before(t.expires) {
			delete(s.timelines, u)
		}
	}
	for u, until := range s.claims {
		if !now.Before(until) {
			delete(s.claims, u)
		}
	}
}

// Claim implements cache.Timelines.
func (c *Cache) Claim(_ context.Context, user string, ttl time.Duration) (bool, error) {
	s := c.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := c.now()
	if s.claimedLocked(user, now) {
		return false, nil
	}
	if len(s.claims) >= shardMax {
		// A claim lasts until Store or its TTL, seconds; only failed
		// rebuilds leave lapsed ones behind. Live ones are never dropped:
		// the rebuild's lock and the fan-out's writes depend on them.
		for u, until := range s.claims {
			if !now.Before(until) {
				delete(s.claims, u)
			}
		}
	}
	s.claims[user] = now.Add(ttl)
	return true, nil
}

// Remove implements cache.Timelines.
func (c *Cache) Remove(_ context.Context, entries []cache.Entry) error {
	c.byShard(entries, func(s *shard, es []cache.Entry) {
		for _, e := range es {
			if t := s.timelines[e.User]; t != nil {
				t.remove(e.Post)
			}
		}
	})
	return nil
}

// byShard calls fn once per shard that entries touch, with that shard's
// entries and its lock held, so a fan-out batch takes each lock once.
func (c *Cache) byShard(entries []cache.Entry, fn func(s *shard, es []cache.Entry)) {
	var groups [shards][]cache.Entry
	for _, e := range entries {
		i := maphash.String(c.seed, e.User) % shards
		groups[i] = append(groups[i], e)
	}
	for i, es := range groups {
		if len(es) == 0 {
			continue
		}
		s := &c.shards[i]
		s.mu.Lock()
		fn(s, es)
		s.mu.Unlock()
	}
}

// Range implements cache.Timelines. In an active-only cache it keeps the
// timeline alive for another window.
func (c *Cache) Range(_ context.Context, user string, before feed.PostID, limit int) ([]feed.PostID, bool, error) {
	s := c.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := c.now()
	t := c.liveLocked(s, user, now)
	if t == nil || !t.complete {
		return nil, false, nil
	}
	if c.window > 0 {
		t.expires = now.Add(c.window)
	}
	i := 0
	if before != 0 {
		i = sort.Search(len(t.ids), func(i int) bool { return t.ids[i] < before })
	}
	end := i + max(0, min(limit, len(t.ids)-i))
	return slices.Clone(t.ids[i:end]), true, nil
}

// Full implements cache.Timelines.
func (c *Cache) Full(_ context.Context, user string) (bool, error) {
	s := c.shard(user)
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := c.liveLocked(s, user, c.now())
	return t != nil && len(t.ids) >= c.cap, nil
}

// Store implements cache.Timelines.
func (c *Cache) Store(_ context.Context, user string, ids []feed.PostID) error {
	s := c.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := c.now()
	t := c.liveLocked(s, user, now)
	if t == nil {
		c.sweepLocked(s, now)
		t = c.createLocked(s, user, now)
	}
	if e := c.expiry(); e > 0 {
		t.expires = now.Add(e)
	}
	delete(s.claims, user)
	t.ids = append(t.ids, ids...)
	slices.SortFunc(t.ids, func(a, b feed.PostID) int { return cmpDesc(a, b) })
	t.ids = slices.Compact(t.ids)
	t.trim(c.cap)
	// A rebuild may pass far more IDs than the cap; do not keep their array.
	t.ids = slices.Clip(t.ids)
	t.complete = true
	return nil
}

func cmpDesc(a, b feed.PostID) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// search returns where id is, or would be inserted, in t.ids.
func (t *timeline) search(id feed.PostID) (int, bool) {
	return slices.BinarySearchFunc(t.ids, id, cmpDesc)
}

func (t *timeline) insert(id feed.PostID, cap int) {
	i, found := t.search(id)
	if found || i >= cap {
		// Present already, or older than everything a full timeline keeps.
		return
	}
	t.ids = slices.Insert(t.ids, i, id)
	t.trim(cap)
}

func (t *timeline) remove(id feed.PostID) {
	if i, found := t.search(id); found {
		t.ids = slices.Delete(t.ids, i, i+1)
	}
}

func (t *timeline) trim(cap int) {
	if len(t.ids) > cap {
		// Keep the spare capacity: the next insert into a full timeline
		// reuses it instead of reallocating.
		t.ids = t.ids[:cap]
	}
}

// GetPosts implements cache.Posts.
func (c *Cache) GetPosts(_ context.Context, ids []feed.PostID) (map[feed.PostID]feed.Post, error) {
	c.postsMu.RLock()
	defer c.postsMu.RUnlock()
	out := make(map[feed.PostID]feed.Post, len(ids))
	for _, id := range ids {
		if p, ok := c.posts[id]; ok {
			out[id] = p
		}
	}
	return out, nil
}

// PutPosts implements cache.Posts. Past MaxPosts it evicts arbitrary posts.
func (c *Cache) PutPosts(_ context.Context, posts []feed.Post) error {
	c.postsMu.Lock()
	defer c.postsMu.Unlock()
	for _, p := range posts {
		if old, ok := c.posts[p.ID]; ok && old.Deleted {
			continue
		}
		c.setPostLocked(p)
	}
	return nil
}

func (c *Cache) setPostLocked(p feed.Post) {
	if _, ok := c.posts[p.ID]; !ok && len(c.posts) >= MaxPosts {
		// Map iteration starts at a random place, so this evicts an
		// arbitrary post in O(1).
		for id := range c.posts {
			delete(c.posts, id)
			break
		}
	}
	c.posts[p.ID] = p
}

// DeletePosts implements cache.Posts. Tombstones count toward MaxPosts
// and are evicted like posts; the store has the final word after that.
func (c *Cache) DeletePosts(_ context.Context, ids []feed.PostID) error {
	c.postsMu.Lock()
	defer c.postsMu.Unlock()
	for _, id := range ids {
		c.setPostLocked(feed.Post{ID: id, Deleted: true})
	}
	return nil
}

// Celebs is the in-memory cache.Celebrities. Like every such set it is
// sticky and unbounded by design; see cache.Celebrities for what bounds it.
type Celebs struct {
	mu sync.Mutex
	m  map[string]bool
}

var _ cache.Celebrities = (*Celebs)(nil)

// NewCelebs returns an empty set.
func NewCelebs() *Celebs { return &Celebs{m: make(map[string]bool)} }

// AddCelebrity implements cache.Celebrities.
func (c *Celebs) AddCelebrity(_ context.Context, author string) error {
	c.mu.Lock()
	c.m[author] = true
	c.mu.Unlock()
	return nil
}

// Celebrities implements cache.Celebrities.
func (c *Celebs) Celebrities(context.Context) (map[string]bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m), nil
}

// Unfollows is the in-memory cache.Unfollows. Marks lapse after
// cache.UnfollowTTL, and there are at most MaxUnfollows of them.
type Unfollows struct {
	mu        sync.Mutex
	m         map[[2]string]time.Time // follower, followee -> when the mark lapses
	now       func() time.Time
	nextSweep time.Time
}

var _ cache.Unfollows = (*Unfollows)(nil)

// NewUnfollows returns an empty set of marks.
func NewUnfollows() *Unfollows { return NewUnfollowsClock(time.Now) }

// NewUnfollowsClock is NewUnfollows on the clock now, so that a test can
// step through cache.UnfollowTTL.
func NewUnfollowsClock(now func() time.Time) *Unfollows {
	if now == nil {
		now = time.Now
	}
	return &Unfollows{m: make(map[[2]string]time.Time), now: now}
}

// MarkUnfollowed implements cache.Unfollows. At MaxUnfollows marks it
// drops the lapsed ones, scanning at most once per quarter TTL so that a
// full set of live marks does not cost a scan per call, and then, if need
// be, evicts one.
func (u *Unfollows) MarkUnfollowed(_ context.Context, follower, followee string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	k := [2]string{follower, followee}
	if _, ok := u.m[k]; !ok && len(u.m) >= MaxUnfollows {
		if !now.Before(u.nextSweep) {
			u.nextSweep = now.Add(cache.UnfollowTTL / 4)
			for k, until := range u.m {
				if !now.Before(until) {
					delete(u.m, k)
				}
			}
		}
		if len(u.m) >= MaxUnfollows {
			evict(u.m, func(_ [2]string, until time.Time) (time.Time, bool) { return until, true })
		}
	}
	u.m[k] = now.Add(cache.UnfollowTTL)
	return nil
}

// ClearUnfollowed implements cache.Unfollows.
func (u *Unfollows) ClearUnfollowed(_ context.Context, follower, followee string) error {
	u.mu.Lock()
	delete(u.m, [2]string{follower, followee})
	u.mu.Unlock()
	return nil
}

// Unfollowed implements cache.Unfollows.
func (u *Unfollows) Unfollowed(_ context.Context, followee string, followers []string) ([]bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	out := make([]bool, len(followers))
	for i, f := range followers {
		until, ok := u.m[[2]string{f, followee}]
		out[i] = ok && now.Before(until)
	}
	return out, nil
}
