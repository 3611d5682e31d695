package memcache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/cache/cachetest"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/memcache"
)

// TestContract runs the cache contract suite on every part of the
// in-process cache.
func TestContract(t *testing.T) {
	cachetest.Run(t, cachetest.Adapter{
		Timelines: func(t *testing.T, cap int) cache.Timelines { return memcache.New(cap) },
		Active: func(t *testing.T, cap int, window time.Duration) cache.Timelines {
			return memcache.NewActive(cap, window)
		},
		Recent: func(t *testing.T, cap int, ttl time.Duration) cache.Timelines {
			return memcache.NewRecent(cap, ttl)
		},
		Posts:       func(t *testing.T) cache.Posts { return memcache.New(10) },
		Celebrities: func(t *testing.T) cache.Celebrities { return memcache.NewCelebs() },
		Unfollows:   func(t *testing.T) cache.Unfollows { return memcache.NewUnfollows() },
	})
}

func TestNewDefaultCap(t *testing.T) {
	for _, in := range []int{0, -1} {
		if got := memcache.New(in).Cap(); got != memcache.DefaultCap {
			t.Errorf("New(%d).Cap() = %d; want %d", in, got, memcache.DefaultCap)
		}
	}
}

func TestPostsBounded(t *testing.T) {
	ctx := context.Background()
	c := memcache.New(10)
	const n = memcache.MaxPosts + 500
	ids := make([]feed.PostID, n)
	for i := range ids {
		ids[i] = feed.PostID(i + 1)
		if err := c.PutPosts(ctx, []feed.Post{{ID: ids[i], Author: "alice", Text: "x"}}); err != nil {
			t.Fatalf("PutPosts error: %v", err)
		}
	}
	got, err := c.GetPosts(ctx, ids)
	if err != nil || len(got) != memcache.MaxPosts {
		t.Errorf("after %d PutPosts, GetPosts(all) holds %d posts, %v; want %d", n, len(got), err, memcache.MaxPosts)
	}
	if _, ok := got[ids[n-1]]; !ok {
		t.Errorf("GetPosts(last put) missed; want the newest put kept")
	}
}

// clock is a test clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Step(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func present(t *testing.T, c cache.Timelines, user string) bool {
	t.Helper()
	_, ok, err := c.Range(context.Background(), user, 0, 1)
	if err != nil {
		t.Fatalf("Range(%q): %v", user, err)
	}
	return ok
}

// TestRecentTTL steps through a recent list's TTL: writes renew it, reads
// do not, and it is gone a TTL after the last write.
func TestRecentTTL(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Hour
	clk := newClock()
	c := memcache.NewRecentClock(10, ttl, clk.Now)
	if err := c.Store(ctx, "alice", []feed.PostID{1}); err != nil {
		t.Fatal(err)
	}
	clk.Step(ttl - time.Second)
	if !present(t, c, "alice") {
		t.Fatalf("Range(alice) %v after Store = missing; want it kept for %v", ttl-time.Second, ttl)
	}
	if err := c.Add(ctx, []cache.Entry{{User: "alice", Post: 2}}); err != nil {
		t.Fatal(err)
	}
	clk.Step(ttl - time.Second)
	if !present(t, c, "alice") {
		t.Errorf("Range(alice) %v after an Add = missing; want the Add to have renewed it", ttl-time.Second)
	}
	// The Range just now, and this one, renew nothing.
	clk.Step(time.Second)
	if present(t, c, "alice") {
		t.Errorf("Range(alice) a TTL after the last write = found; want it expired, reads do not renew")
	}
	if full, err := c.Full(ctx, "alice"); err != nil || full {
		t.Errorf("Full(alice) after expiry = %v, %v; want false", full, err)
	}
}

func TestNewRecentDefaultTTL(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	c := memcache.NewRecentClock(10, 0, clk.Now)
	if err := c.Store(ctx, "alice", nil); err != nil {
		t.Fatal(err)
	}
	clk.Step(memcache.DefaultRecentTTL - time.Second)
	if !present(t, c, "alice") {
		t.Errorf("NewRecentClock(10, 0): list gone before DefaultRecentTTL (%v)", memcache.DefaultRecentTTL)
	}
	clk.Step(time.Second)
	if present(t, c, "alice") {
		t.Errorf("NewRecentClock(10, 0): list kept past DefaultRecentTTL (%v)", memcache.DefaultRecentTTL)
	}
}

// TestTimelinesBounded: however many users calls name, a Cache keeps at
// most MaxTimelines timelines, and keeps the one just written.
func TestTimelinesBounded(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]*memcache.Cache{
		"New":       memcache.New(10),
		"NewRecent": memcache.NewRecent(10, time.Hour),
		"NewActive": memcache.NewActive(10, time.Hour),
	} {
		t.Run(name, func(t *testing.T) {
			const n = memcache.MaxTimelines + 500
			for u := range n {
				if err := c.Store(ctx, fmt.Sprintf("user_%d", u), []feed.PostID{feed.PostID(u + 1)}); err != nil {
					t.Fatalf("Store error: %v", err)
				}
			}
			kept := 0
			for u := range n {
				if present(t, c, fmt.Sprintf("user_%d", u)) {
					kept++
				}
			}
			if kept > memcache.MaxTimelines {
				t.Errorf("after Store for %d users, %d timelines kept; want at most %d", n, kept, memcache.MaxTimelines)
			}
			if last := fmt.Sprintf("user_%d", n-1); !present(t, c, last) {
				t.Errorf("Range(%s), the last stored = missing; want it kept", last)
			}
		})
	}
}

// TestClaimedNotEvicted: a post pushed into a timeline while its rebuild
// runs must survive the rebuild's Store, even if the cache fills up
// meanwhile.
func TestClaimedNotEvicted(t *testing.T) {
	ctx := context.Background()
	c := memcache.NewActive(10, time.Hour)
	if ok, err := c.Claim(ctx, "alice", time.Minute); err != nil || !ok {
		t.Fatalf("Claim(alice) = %v, %v; want true", ok, err)
	}
	if err := c.Add(ctx, []cache.Entry{{User: "alice", Post: 9}}); err != nil {
		t.Fatal(err)
	}
	// Enough users that every timeline in alice's shard is sampled for
	// eviction many times over; alice's, the least recently read, would
	// go first.
	for u := range 3 * memcache.MaxTimelines {
		if err := c.Store(ctx, fmt.Sprintf("user_%d", u), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Store(ctx, "alice", []feed.PostID{5}); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := c.Range(ctx, "alice", 0, 10); err != nil || !ok || !slices.Equal(got, []feed.PostID{9, 5}) {
		t.Errorf("Range(alice) after the rebuild = %v, %v, %v; want [9 5], true, nil: the pushed post was evicted", got, ok, err)
	}
}

func TestUnfollowsLapse(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	u := memcache.NewUnfollowsClock(clk.Now)
	if err := u.MarkUnfollowed(ctx, "bob", "idol"); err != nil {
		t.Fatal(err)
	}
	clk.Step(cache.UnfollowTTL - time.Second)
	if got, err := u.Unfollowed(ctx, "idol", []string{"bob"}); err != nil || !got[0] {
		t.Errorf("Unfollowed(idol, bob) before UnfollowTTL = %v, %v; want [true]", got, err)
	}
	clk.Step(time.Second)
	if got, err := u.Unfollowed(ctx, "idol", []string{"bob"}); err != nil || got[0] {
		t.Errorf("Unfollowed(idol, bob) at UnfollowTTL = %v, %v; want [false]", got, err)
	}
}

// TestUnfollowsBounded: at most MaxUnfollows marks, lapsed ones going
// first, and the newest kept.
func TestUnfollowsBounded(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	u := memcache.NewUnfollowsClock(clk.Now)
	const n = memcache.MaxUnfollows + 500
	followers := make([]string, n)
	for i := range followers {
		followers[i] = fmt.Sprintf("f%d", i)
		if err := u.MarkUnfollowed(ctx, followers[i], "idol"); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		got, err := u.Unfollowed(ctx, "idol", followers)
		if err != nil {
			t.Fatal(err)
		}
		if !got[n-1] {
			t.Errorf("the newest mark was evicted; want it kept")
		}
		kept := 0
		for _, g := range got {
			if g {
				kept++
			}
		}
		return kept
	}
	if kept := count(); kept > memcache.MaxUnfollows {
		t.Errorf("after %d marks, %d held; want at most %d", n, kept, memcache.MaxUnfollows)
	}
	// Once the marks lapse, the sweep makes room, and a new mark lands.
	clk.Step(cache.UnfollowTTL)
	if err := u.MarkUnfollowed(ctx, "late", "idol"); err != nil {
		t.Fatal(err)
	}
	if got, err := u.Unfollowed(ctx, "idol", []string{"late"}); err != nil || !got[0] {
		t.Errorf("Unfollowed(idol, late) = %v, %v; want [true]", got, err)
	}
}

const benchUsers = 10_000

func benchEntries(r *rand.Rand, n int, next *feed.PostID) []cache.Entry {
	es := make([]cache.Entry, n)
	for i := range es {
		*next++
		es[i] = cache.Entry{User: fmt.Sprintf("user_%d", r.IntN(benchUsers)), Post: *next}
	}
	return es
}

// BenchmarkAdd measures fan-out: batches of 1000 entries over random users,
// with timelines filling to the cap.
func BenchmarkAdd(b *testing.B) {
	ctx := context.Background()
	c := memcache.New(800)
	r := rand.New(rand.NewPCG(1, 2))
	next := feed.PostID(1 << 60)
	batches := make([][]cache.Entry, 64)
	for i := range batches {
		batches[i] = benchEntries(r, 1000, &next)
	}
	b.ResetTimer()
	for i := range b.N {
		// Shift IDs so each batch is new, as fan-out of fresh posts is.
		batch := batches[i%len(batches)]
		for j := range batch {
			batch[j].Post += feed.PostID(len(batches) * 1000)
		}
		if err := c.Add(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkRange measures a home-timeline read of one page from full
// timelines.
func BenchmarkRange(b *testing.B) {
	ctx := context.Background()
	c := memcache.New(800)
	r := rand.New(rand.NewPCG(3, 4))
	const users = 1000
	for u := range users {
		ids := make([]feed.PostID, 800)
		for i := range ids {
			ids[i] = feed.PostID(1<<60 + r.Uint64N(1<<40))
		}
		if err := c.Store(ctx, fmt.Sprintf("user_%d", u), ids); err != nil {
			b.Fatal(err)
		}
	}
	names := make([]string, users)
	for u := range names {
		names[u] = fmt.Sprintf("user_%d", u)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			ids, ok, err := c.Range(ctx, names[i%users], 0, feed.DefaultPageSize)
			if err != nil || !ok || len(ids) != feed.DefaultPageSize {
				b.Errorf("Range = %d IDs, %v, %v; want %d IDs, true, nil", len(ids), ok, err, feed.DefaultPageSize)
				return
			}
		}
	})
}
