// Package cachetest is the contract suite for the cache ports in package
// cache. Every adapter runs it from its own tests, through one entry point
// that runs every part of the contract the adapter implements:
//
//	func TestContract(t *testing.T) {
//		cachetest.Run(t, cachetest.Adapter{
//			Timelines: func(t *testing.T, cap int) cache.Timelines { return newTestCache(t, cap) },
//			...
//		})
//	}
//
// The suite assumes only what the doc comments in package cache promise.
package cachetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// Adapter is an adapter as the suite opens it. Each opener returns an
// empty cache of its own and releases it with t.Cleanup; each field set is
// a part of the contract the adapter implements. Run fails an adapter
// whose caches implement a port it gave no opener for, so that none loses
// its coverage by being left out.
type Adapter struct {
	// Timelines opens capped timelines in which Add creates a missing
	// timeline (authors' recent lists).
	Timelines func(t *testing.T, cap int) cache.Timelines
	// Active opens home timelines of active users only, which expire when
	// not read for window.
	Active func(t *testing.T, cap int, window time.Duration) cache.Timelines
	// Recent opens authors' recent-post lists: capped timelines in which
	// Add creates a missing list, and which expire ttl after their last
	// write (see cache.Timelines).
	Recent      func(t *testing.T, cap int, ttl time.Duration) cache.Timelines
	Posts       func(t *testing.T) cache.Posts
	Celebrities func(t *testing.T) cache.Celebrities
	Unfollows   func(t *testing.T) cache.Unfollows
}

// Run runs every part of the contract that a has an opener for.
func Run(t *testing.T, a Adapter) {
	if a.Timelines == nil && a.Active == nil && a.Recent == nil && a.Posts == nil && a.Celebrities == nil && a.Unfollows == nil {
		t.Fatal("cachetest.Run: the Adapter has no opener")
	}
	if a.Timelines != nil {
		// An adapter whose one type implements several ports must test each.
		c := a.Timelines(t, 10)
		for name, missing := range map[string]bool{
			"cache.Posts":       implements[cache.Posts](c) && a.Posts == nil,
			"cache.Celebrities": implements[cache.Celebrities](c) && a.Celebrities == nil,
			"cache.Unfollows":   implements[cache.Unfollows](c) && a.Unfollows == nil,
		} {
			if missing {
				t.Errorf("cachetest.Run: %T implements %s, but the Adapter has no opener for it", c, name)
			}
		}
		t.Run("Timelines", func(t *testing.T) { runTimelines(t, a.Timelines) })
		t.Run("Full", func(t *testing.T) { runFull(t, a.Timelines) })
		t.Run("Claim", func(t *testing.T) { runClaim(t, a.Timelines) })
	}
	if a.Active != nil {
		t.Run("Active", func(t *testing.T) { runActive(t, a.Active) })
	}
	if a.Recent != nil {
		// A recent list is a timeline in every other respect; with a TTL
		// far beyond the test, the timelines' suite applies as it is.
		long := func(t *testing.T, cap int) cache.Timelines { return a.Recent(t, cap, time.Hour) }
		t.Run("RecentTimelines", func(t *testing.T) { runTimelines(t, long) })
		t.Run("Recent", func(t *testing.T) { runRecent(t, a.Recent) })
	}
	if a.Posts != nil {
		t.Run("Posts", func(t *testing.T) { runPosts(t, a.Posts) })
	}
	if a.Celebrities != nil {
		t.Run("Celebrities", func(t *testing.T) { runCelebrities(t, a.Celebrities) })
	}
	if a.Unfollows != nil {
		t.Run("Unfollows", func(t *testing.T) { runUnfollows(t, a.Unfollows(t)) })
	}
}

func implements[T any](v any) bool {
	_, ok := v.(T)
	return ok
}

// runTimelines runs the contract suite for cache.Timelines. open must
// return an empty cache whose timelines keep cap entries, and release it
// with t.Cleanup; it is called once per subtest.
func runTimelines(t *testing.T, open func(t *testing.T, cap int) cache.Timelines) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T, cap int) cache.Timelines)
	}{
		{"UnknownUserIsMissing", testUnknownUser},
		{"AddDoesNotComplete", testAddDoesNotComplete},
		{"StoreCompletes", testStoreCompletes},
		{"StoreEmptyCompletes", testStoreEmpty},
		{"StoreUnionsEarlierAdds", testStoreUnions},
		{"AddAfterStore", testAddAfterStore},
		{"IdempotentAdd", testIdempotentAdd},
		{"OrderIndependentAdd", testOrderIndependent},
		{"Cap", testCap},
		{"RangeBoundAndLimit", testRangeBoundAndLimit},
		{"RangePaging", testRangePaging},
		{"Remove", testRemove},
		{"BatchAddManyUsers", testBatchManyUsers},
		{"PrefixNamedUsers", testPrefixNamedUsers},
		{"LargeIDs", testLargeIDs},
		{"ConcurrentAdd", testConcurrentAdd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

// runPosts runs the contract suite for cache.Posts. open must return an
// empty cache and release it with t.Cleanup; it is called once per subtest.
func runPosts(t *testing.T, open func(t *testing.T) cache.Posts) {
	tests := []struct {
		name string
		fn   func(t *testing.T, c cache.Posts)
	}{
		{"PutGet", testPutGet},
		{"MissesLeftOut", testMisses},
		{"PutTwice", testPutTwice},
		{"Delete", testDeletePosts},
		{"TombstoneBlocksRefill", testTombstoneBlocksRefill},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// base is a realistic post ID (about 2^60: a Snowflake ID from 2025); IDs
// in these tests count up from it.
const base feed.PostID = 1 << 60

func seq(from feed.PostID, n int) []feed.PostID {
	out := make([]feed.PostID, n)
	for i := range out {
		out[i] = from + feed.PostID(i)
	}
	return out
}

func desc(ids []feed.PostID) []feed.PostID {
	out := slices.Clone(ids)
	slices.Sort(out)
	slices.Reverse(out)
	return slices.Compact(out)
}

func entries(user string, ids ...feed.PostID) []cache.Entry {
	out := make([]cache.Entry, len(ids))
	for i, id := range ids {
		out[i] = cache.Entry{User: user, Post: id}
	}
	return out
}

func add(t *testing.T, c cache.Timelines, es []cache.Entry) {
	t.Helper()
	if err := c.Add(context.Background(), es); err != nil {
		t.Fatalf("Add(%d entries) error: %v", len(es), err)
	}
}

func remove(t *testing.T, c cache.Timelines, es []cache.Entry) {
	t.Helper()
	if err := c.Remove(context.Background(), es); err != nil {
		t.Fatalf("Remove(%v) error: %v", es, err)
	}
}

func store(t *testing.T, c cache.Timelines, user string, ids []feed.PostID) {
	t.Helper()
	if err := c.Store(context.Background(), user, ids); err != nil {
		t.Fatalf("Store(%q, %d IDs) error: %v", user, len(ids), err)
	}
}

// wantRange fails unless Range(user, before, limit) is complete and holds
// exactly want.
func wantRange(t *testing.T, c cache.Timelines, user string, before feed.PostID, limit int, want []feed.PostID) {
	t.Helper()
	got, ok, err := c.Range(context.Background(), user, before, limit)
	if err != nil || !ok || !slices.Equal(got, want) {
		t.Errorf("Range(%q, %d, %d) = %v, %v, %v; want %v, true, nil", user, before, limit, got, ok, err, want)
	}
}

func wantMissing(t *testing.T, c cache.Timelines, user string) {
	t.Helper()
	got, ok, err := c.Range(context.Background(), user, 0, 100)
	if err != nil || ok || len(got) != 0 {
		t.Errorf("Range(%q, 0, 100) = %v, %v, %v; want [], false, nil", user, got, ok, err)
	}
}

func testUnknownUser(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 10)
	wantMissing(t, c, "nobody")
	if got := c.Cap(); got != 10 {
		t.Errorf("Cap() = %d; want 10", got)
	}
}

func testAddDoesNotComplete(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 10)
	add(t, c, entries("alice", base+1, base+2))
	wantMissing(t, c, "alice")
	remove(t, c, entries("alice", base+1))
	wantMissing(t, c, "alice")
	remove(t, c, entries("bob", base+1))
	wantMissing(t, c, "bob")
}

func testStoreCompletes(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 10)
	in := []feed.PostID{base + 3, base + 1, base + 7, base + 5}
	store(t, c, "alice", in)
	wantRange(t, c, "alice", 0, 100, desc(in))
	wantMissing(t, c, "bob")
}

func testStoreEmpty(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 10)
	// A user who follows nobody has an empty, but complete, timeline.
	store(t, c, "alice", nil)
	wantRange(t, c, "alice", 0, 100, nil)
	add(t, c, entries("alice", base+1))
	wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 1})
	remove(t, c, entries("alice", base+1))
	wantRange(t, c, "alice", 0, 100, nil)
}

func testStoreUnions(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 10)
	// Fan-out raced a rebuild: the rebuild read the store before base+9
	// was written, and must not lose it.
	add(t, c, entries("alice", base+9, base+2))
	store(t, c, "alice", []feed.PostID{base + 5, base + 2, base + 1})
	wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 9, base + 5, base + 2, base + 1})
}

func testAddAfterStore(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 10)
	store(t, c, "alice", []feed.PostID{base + 5})
	add(t, c, entries("alice", base+9, base+1))
	wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 9, base + 5, base + 1})
	// Storing again adds and keeps what is there.
	store(t, c, "alice", []feed.PostID{base + 7})
	wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 9, base + 7, base + 5, base + 1})
}

func testIdempotentAdd(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 10)
	store(t, c, "alice", []feed.PostID{base + 5})
	want := []feed.PostID{base + 7, base + 5}
	add(t, c, entries("alice", base+7, base+7))
	wantRange(t, c, "alice", 0, 100, want)
	add(t, c, entries("alice", base+7, base+5))
	wantRange(t, c, "alice", 0, 100, want)
	store(t, c, "alice", []feed.PostID{base + 5, base + 7, base + 5})
	wantRange(t, c, "alice", 0, 100, want)
}

func testOrderIndependent(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	ids := seq(base, 20)
	want := desc(ids)
	r := rand.New(rand.NewPCG(1, 2))
	orders := []struct {
		name string
		ids  []feed.PostID
	}{
		{"ascending", ids},
		{"descending", want},
		{"shuffled", shuffled(r, ids)},
		{"shuffled again", shuffled(r, ids)},
	}
	for _, o := range orders {
		t.Run(o.name, func(t *testing.T) {
			for _, batch := range []int{1, 3, len(o.ids)} {
				c := open(t, 100)
				store(t, c, "alice", nil)
				for chunk := range slices.Chunk(o.ids, batch) {
					add(t, c, entries("alice", chunk...))
				}
				wantRange(t, c, "alice", 0, 100, want)
			}
		})
	}
}

func shuffled(r *rand.Rand, ids []feed.PostID) []feed.PostID {
	out := slices.Clone(ids)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func testCap(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	const cap = 10
	ids := seq(base, 25)
	newest := desc(ids)[:cap]
	r := rand.New(rand.NewPCG(3, 4))
	tests := []struct {
		name string
		fill func(t *testing.T, c cache.Timelines)
	}{
		{"Add one at a time", func(t *testing.T, c cache.Timelines) {
			store(t, c, "alice", nil)
			for _, id := range ids {
				add(t, c, entries("alice", id))
			}
		}},
		{"Add shuffled batch", func(t *testing.T, c cache.Timelines) {
			store(t, c, "alice", nil)
			add(t, c, entries("alice", shuffled(r, ids)...))
		}},
		{"Store all", func(t *testing.T, c cache.Timelines) { store(t, c, "alice", shuffled(r, ids)) }},
		{"Add then Store", func(t *testing.T, c cache.Timelines) {
			add(t, c, entries("alice", ids[:15]...))
			store(t, c, "alice", ids[10:])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, cap)
			tt.fill(t, c)
			wantRange(t, c, "alice", 0, 100, newest)
			// An entry older than a full timeline's oldest falls off at once.
			add(t, c, entries("alice", base-1))
			wantRange(t, c, "alice", 0, 100, newest)
			// A newer one pushes the oldest out.
			add(t, c, entries("alice", base+100))
			wantRange(t, c, "alice", 0, 100, append([]feed.PostID{base + 100}, newest[:cap-1]...))
		})
	}
}

func testRangeBoundAndLimit(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 100)
	ids := []feed.PostID{base + 50, base + 40, base + 30, base + 20, base + 10}
	store(t, c, "alice", ids)
	tests := []struct {
		before feed.PostID
		limit  int
		want   []feed.PostID
	}{
		{0, 100, ids},
		{0, 5, ids},
		{0, 2, ids[:2]},
		{0, 1, ids[:1]},
		{base + 40, 100, ids[2:]},
		{base + 41, 100, ids[1:]},
		{base + 39, 100, ids[2:]},
		{base + 40, 2, ids[2:4]},
		{base + 10, 100, nil},
		{base + 11, 100, ids[4:]},
		{base + 51, 100, ids},
		{1<<64 - 1, 100, ids},
		{1, 100, nil},
	}
	for _, tt := range tests {
		wantRange(t, c, "alice", tt.before, tt.limit, tt.want)
	}
}

func testRangePaging(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 1000)
	// Gaps between IDs, so a bound off by one would show.
	var ids []feed.PostID
	for i := range 250 {
		ids = append(ids, base+feed.PostID(i*3))
	}
	store(t, c, "alice", ids[:100])
	add(t, c, entries("alice", ids[100:]...))
	want := desc(ids)
	for _, limit := range []int{1, 7, 100, 250, 1000} {
		var got []feed.PostID
		var before feed.PostID
		for page := 0; ; page++ {
			if page > len(ids) {
				t.Fatalf("limit %d: paging did not end after %d pages", limit, page)
			}
			p, ok, err := c.Range(context.Background(), "alice", before, limit)
			if err != nil || !ok || len(p) > limit {
				t.Fatalf("Range(alice, %d, %d) = %d IDs, %v, %v; want at most %d, true, nil", before, limit, len(p), ok, err, limit)
			}
			if len(p) == 0 {
				break
			}
			got = append(got, p...)
			before = p[len(p)-1]
		}
		if !slices.Equal(got, want) {
			t.Errorf("paging Range(alice) by %d gave %d IDs %v; want all %d newest first", limit, len(got), got, len(want))
		}
	}
}

func testRemove(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 100)
	store(t, c, "alice", seq(base, 5))
	store(t, c, "bob", seq(base, 5))
	remove(t, c, append(entries("alice", base+1, base+3, base+99), cache.Entry{User: "nobody", Post: base}))
	wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 4, base + 2, base})
	wantRange(t, c, "bob", 0, 100, desc(seq(base, 5)))
	wantMissing(t, c, "nobody")
	remove(t, c, entries("alice", base+1))
	wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 4, base + 2, base})
	remove(t, c, nil)
}

func testBatchManyUsers(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	const users, per = 500, 3
	c := open(t, 100)
	name := func(u int) string { return fmt.Sprintf("user_%d", u) }
	for u := range users {
		store(t, c, name(u), nil)
	}
	var es []cache.Entry
	for i := range per {
		for u := range users {
			es = append(es, cache.Entry{User: name(u), Post: base + feed.PostID(u*10+i)})
		}
	}
	add(t, c, es)
	for u := range users {
		want := desc(seq(base+feed.PostID(u*10), per))
		wantRange(t, c, name(u), 0, 100, want)
	}
}

func testPrefixNamedUsers(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	c := open(t, 100)
	users := []string{"a", "al", "alice", "al_", "alicea"}
	for i, u := range users {
		store(t, c, u, []feed.PostID{base + feed.PostID(i)})
	}
	for i, u := range users {
		add(t, c, entries(u, base+100+feed.PostID(i)))
	}
	remove(t, c, entries("al", base+1))
	for i, u := range users {
		want := []feed.PostID{base + 100 + feed.PostID(i), base + feed.PostID(i)}
		if u == "al" {
			want = want[:1]
		}
		wantRange(t, c, u, 0, 100, want)
	}
}

func testLargeIDs(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	// A float64 score holds 53 bits: these IDs collide in one, and must
	// not in a timeline.
	ids := []feed.PostID{
		1,
		1<<53 - 1, 1 << 53, 1<<53 + 1,
		1<<62 + 1, 1<<62 + 2, 1<<62 + 3,
		1<<63 - 1, 1 << 63, 1<<63 + 1,
		1<<64 - 3, 1<<64 - 2, 1<<64 - 1,
	}
	want := desc(ids)
	c := open(t, 100)
	store(t, c, "alice", ids[:5])
	add(t, c, entries("alice", ids[5:]...))
	wantRange(t, c, "alice", 0, 100, want)

	tests := []struct {
		before feed.PostID
		limit  int
		want   []feed.PostID
	}{
		{1<<64 - 1, 100, want[1:]},
		{1<<64 - 2, 1, []feed.PostID{1<<64 - 3}},
		{1<<63 + 1, 1, []feed.PostID{1 << 63}},
		{1 << 63, 1, []feed.PostID{1<<63 - 1}},
		{1<<62 + 3, 100, []feed.PostID{1<<62 + 2, 1<<62 + 1, 1<<53 + 1, 1 << 53, 1<<53 - 1, 1}},
		{1<<53 + 1, 1, []feed.PostID{1 << 53}},
		{2, 100, []feed.PostID{1}},
	}
	for _, tt := range tests {
		wantRange(t, c, "alice", tt.before, tt.limit, tt.want)
	}

	remove(t, c, entries("alice", 1<<62+2, 1<<64-2))
	wantRange(t, c, "alice", 1<<64-1, 3, []feed.PostID{1<<64 - 3, 1<<63 + 1, 1 << 63})
	wantRange(t, c, "alice", 1<<62+3, 1, []feed.PostID{1<<62 + 1})
}

func testConcurrentAdd(t *testing.T, open func(*testing.T, int) cache.Timelines) {
	const writers, per = 8, 200
	c := open(t, writers*per)
	users := []string{"alice", "bob", "carol"}
	for _, u := range users {
		store(t, c, u, nil)
	}
	g, ctx := errgroup.WithContext(context.Background())
	for w := range writers {
		g.Go(func() error {
			for i := range per {
				id := base + feed.PostID(i*writers+w)
				var es []cache.Entry
				for _, u := range users {
					es = append(es, cache.Entry{User: u, Post: id})
				}
				if err := c.Add(ctx, es); err != nil {
					return err
				}
				if _, _, err := c.Range(ctx, users[i%len(users)], 0, 10); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent Add error: %v", err)
	}
	want := desc(seq(base, writers*per))
	for _, u := range users {
		wantRange(t, c, u, 0, writers*per, want)
	}
}

func post(id feed.PostID, author, text string) feed.Post {
	return feed.Post{ID: id, Author: author, Text: text, Created: time.Date(2025, 6, 1, 12, 30, 15, 123456789, time.UTC)}
}

func getPosts(t *testing.T, c cache.Posts, ids ...feed.PostID) map[feed.PostID]feed.Post {
	t.Helper()
	got, err := c.GetPosts(context.Background(), ids)
	if err != nil {
		t.Fatalf("GetPosts(%v) error: %v", ids, err)
	}
	return got
}

// wantPosts fails unless got holds exactly want, with Created kept to the
// millisecond at least.
func wantPosts(t *testing.T, call string, got map[feed.PostID]feed.Post, want ...feed.Post) {
	t.Helper()
	ok := len(got) == len(want)
	for _, w := range want {
		g, found := got[w.ID]
		d := g.Created.Sub(w.Created)
		ok = ok && found && g.ID == w.ID && g.Author == w.Author && g.Text == w.Text && d > -time.Millisecond && d < time.Millisecond
	}
	if !ok {
		t.Errorf("%s = %v; want %v", call, got, want)
	}
}

func putPosts(t *testing.T, c cache.Posts, ps ...feed.Post) {
	t.Helper()
	if err := c.PutPosts(context.Background(), ps); err != nil {
		t.Fatalf("PutPosts(%v) error: %v", ps, err)
	}
}

func testPutGet(t *testing.T, c cache.Posts) {
	ps := []feed.Post{
		post(base+1, "alice", "hello"),
		post(base+2, "bob", "héllo, 世界 👋🏽\nsecond line"),
		post(1<<64-1, "al", "max ID"),
		post(1<<64-2, "al", "max ID - 1"),
	}
	putPosts(t, c, ps...)
	wantPosts(t, "GetPosts(all)", getPosts(t, c, base+1, base+2, 1<<64-1, 1<<64-2), ps...)
	wantPosts(t, "GetPosts(one)", getPosts(t, c, base+2), ps[1])
	wantPosts(t, "GetPosts()", getPosts(t, c))
	putPosts(t, c)
}

func testMisses(t *testing.T, c cache.Posts) {
	p := post(base+1, "alice", "hello")
	putPosts(t, c, p)
	wantPosts(t, "GetPosts(hit, misses)", getPosts(t, c, base, base+1, base+2), p)
	wantPosts(t, "GetPosts(misses)", getPosts(t, c, base, base+2))
}

func testPutTwice(t *testing.T, c cache.Posts) {
	// Posts never change, so a second put of one ID may keep either copy;
	// it must not lose the post.
	p := post(base+1, "alice", "text")
	putPosts(t, c, p)
	putPosts(t, c, p)
	wantPosts(t, "GetPosts after a second put", getPosts(t, c, base+1), p)
}

func testDeletePosts(t *testing.T, c cache.Posts) {
	a, b, d := post(base+1, "alice", "a"), post(base+2, "alice", "b"), post(base+3, "bob", "d")
	putPosts(t, c, a, b, d)
	if err := c.DeletePosts(context.Background(), []feed.PostID{a.ID, d.ID, base + 99}); err != nil {
		t.Fatalf("DeletePosts error: %v", err)
	}
	ta, td := feed.Post{ID: a.ID, Deleted: true}, feed.Post{ID: d.ID, Deleted: true}
	tx := feed.Post{ID: base + 99, Deleted: true}
	wantPosts(t, "GetPosts after delete", getPosts(t, c, a.ID, b.ID, d.ID, base+99), ta, b, td, tx)
	if err := c.DeletePosts(context.Background(), []feed.PostID{a.ID}); err != nil {
		t.Errorf("DeletePosts(already deleted) error: %v", err)
	}
	if err := c.DeletePosts(context.Background(), nil); err != nil {
		t.Errorf("DeletePosts(nil) error: %v", err)
	}
}

// testTombstoneBlocksRefill: a reader that loaded a post from the store
// just before it was deleted must not put it back into the cache.
func testTombstoneBlocksRefill(t *testing.T, c cache.Posts) {
	a := post(base+1, "alice", "a")
	putPosts(t, c, a)
	if err := c.DeletePosts(context.Background(), []feed.PostID{a.ID}); err != nil {
		t.Fatalf("DeletePosts error: %v", err)
	}
	putPosts(t, c, a) // the racing refill
	wantPosts(t, "GetPosts after delete then refill", getPosts(t, c, a.ID), feed.Post{ID: a.ID, Deleted: true})
}

// runCelebrities runs the contract suite for cache.Celebrities. open must
// return an empty set.
func runCelebrities(t *testing.T, open func(t *testing.T) cache.Celebrities) {
	ctx := context.Background()
	c := open(t)
	got, err := c.Celebrities(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("Celebrities() of a new set = %v, %v; want empty", got, err)
	}
	for _, a := range []string{"al", "alice", "alice"} {
		if err := c.AddCelebrity(ctx, a); err != nil {
			t.Fatalf("AddCelebrity(%s) error: %v", a, err)
		}
	}
	got, err = c.Celebrities(ctx)
	if err != nil || len(got) != 2 || !got["al"] || !got["alice"] {
		t.Errorf("Celebrities() = %v, %v; want al and alice", got, err)
	}
}

// runFull checks Timelines.Full: false below the cap, true at it. open
// must return an empty cache with the given cap.
func runFull(t *testing.T, open func(t *testing.T, cap int) cache.Timelines) {
	ctx := context.Background()
	c := open(t, 10)
	ids := make([]feed.PostID, 9)
	for i := range ids {
		ids[i] = base + feed.PostID(i)
	}
	if err := c.Store(ctx, "alice", ids); err != nil {
		t.Fatal(err)
	}
	if full, err := c.Full(ctx, "alice"); err != nil || full {
		t.Errorf("Full with 9 of 10 entries = %v, %v; want false", full, err)
	}
	if err := c.Add(ctx, []cache.Entry{{User: "alice", Post: base + 100}, {User: "alice", Post: base + 101}}); err != nil {
		t.Fatal(err)
	}
	if full, err := c.Full(ctx, "alice"); err != nil || !full {
		t.Errorf("Full at the cap = %v, %v; want true", full, err)
	}
	if full, err := c.Full(ctx, "nobody"); err != nil || full {
		t.Errorf("Full of a missing timeline = %v, %v; want false", full, err)
	}
}

// runClaim checks Timelines.Claim, the cross-instance rebuild lock: one
// claimant at a time, until Store or the claim's TTL.
func runClaim(t *testing.T, open func(t *testing.T, cap int) cache.Timelines) {
	ctx := context.Background()
	c := open(t, 10)
	claim := func(user string, ttl time.Duration) bool {
		t.Helper()
		ok, err := c.Claim(ctx, user, ttl)
		if err != nil {
			t.Fatalf("Claim(%q): %v", user, err)
		}
		return ok
	}
	if !claim("alice", time.Minute) {
		t.Fatal("first Claim(alice) = false; want true")
	}
	if claim("alice", time.Minute) {
		t.Error("second Claim(alice) = true; want false while the first holds")
	}
	if !claim("bob", time.Minute) {
		t.Error("Claim(bob) = false; want true: claims are per user")
	}
	store(t, c, "alice", nil)
	if !claim("alice", time.Minute) {
		t.Error("Claim(alice) after Store = false; want true: Store releases the claim")
	}
	if !claim("carol", 100*time.Millisecond) {
		t.Fatal("Claim(carol) = false; want true")
	}
	waitfor.Until(t, waitfor.Deadline, "a 100ms claim to lapse", func() (bool, any) {
		return claim("carol", time.Minute), "Claim(carol) = false: the first claim still holds"
	})
}

// runActive runs the contract suite of an active-only cache of home
// timelines. open must return an empty cache with the given cap whose
// timelines expire when not read for window.
func runActive(t *testing.T, open func(t *testing.T, cap int, window time.Duration) cache.Timelines) {
	ctx := context.Background()
	t.Run("AddSkipsMissing", func(t *testing.T) {
		c := open(t, 10, time.Hour)
		add(t, c, entries("alice", base+9))
		store(t, c, "alice", []feed.PostID{base + 1})
		wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 1})
	})
	t.Run("AddLandsInClaimed", func(t *testing.T) {
		c := open(t, 10, time.Hour)
		if ok, err := c.Claim(ctx, "alice", time.Minute); err != nil || !ok {
			t.Fatalf("Claim = %v, %v; want true", ok, err)
		}
		// A post pushed while the rebuild reads the store must survive
		// the rebuild's Store.
		add(t, c, entries("alice", base+9))
		wantMissing(t, c, "alice")
		store(t, c, "alice", []feed.PostID{base + 5, base + 1})
		wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 9, base + 5, base + 1})
		add(t, c, entries("alice", base+10))
		wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 10, base + 9, base + 5, base + 1})
	})
	t.Run("Expires", func(t *testing.T) {
		// At cap 1 a one-entry timeline is Full, and Full does not renew
		// it as Range would: it tells when the timeline is gone.
		c := open(t, 1, 300*time.Millisecond)
		store(t, c, "alice", []feed.PostID{base + 1})
		waitfor.Until(t, waitfor.Deadline, "an unread timeline to expire", func() (bool, any) {
			full, err := c.Full(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			return !full, "Full(alice) = true"
		})
		// Fan-out skips the inactive user; the rebuild starts afresh.
		// (A Range counts as a read, which may make the user active
		// again, so it comes after the Add.)
		add(t, c, entries("alice", base+9))
		wantMissing(t, c, "alice")
		store(t, c, "alice", nil)
		wantRange(t, c, "alice", 0, 100, nil)
	})
	t.Run("MissingOnceInactive", func(t *testing.T) {
		// A user who has not read for a window gets no fan-out writes, so
		// their timeline, if an adapter still keeps it, may lack posts:
		// the first read after the window must report it missing (and
		// so have it rebuilt), not serve it. Load can only stretch the
		// sleep, and past the window the answer is the same.
		const window = 300 * time.Millisecond
		c := open(t, 10, window)
		store(t, c, "alice", []feed.PostID{base + 1})
		time.Sleep(window + window/3)
		add(t, c, entries("alice", base+2)) // skipped: alice is inactive
		wantMissing(t, c, "alice")
		store(t, c, "alice", []feed.PostID{base + 2, base + 1})
		wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 2, base + 1})
	})
	t.Run("Cap", func(t *testing.T) {
		// However an adapter trims, readers see exactly the newest cap
		// entries, page by page, and the timeline is Full.
		c := open(t, 10, time.Hour)
		store(t, c, "alice", nil)
		var all []feed.PostID
		for i := range 50 {
			id := base + feed.PostID(i)
			add(t, c, entries("alice", id))
			all = append([]feed.PostID{id}, all...)
		}
		wantRange(t, c, "alice", 0, 100, all[:10])
		wantRange(t, c, "alice", 0, 4, all[:4])
		wantRange(t, c, "alice", all[3], 100, all[4:10])
		wantRange(t, c, "alice", all[9], 100, nil)
		wantRange(t, c, "alice", all[20], 100, nil)
		if full, err := c.Full(ctx, "alice"); err != nil || !full {
			t.Errorf("Full = %v, %v; want true", full, err)
		}
	})
	t.Run("ReadsRenew", func(t *testing.T) {
		// Read every window/5 for three windows: each read must find the
		// timeline, since the one before renewed it. A loaded machine can
		// stretch a gap past the window, and then the timeline rightly
		// expires: that attempt proves nothing and starts again, so only
		// an expiry within the window fails the test.
		const window = 500 * time.Millisecond
		c := open(t, 10, window)
		renewed := false
		for attempt := 0; attempt < 5 && !renewed; attempt++ {
			store(t, c, "alice", []feed.PostID{base + 1})
			prev := time.Now() // when the last renewal (the Store) began
			renewed = true
			for i := range 15 {
				time.Sleep(window / 5)
				start := time.Now()
				ok := ranged(t, c, "alice")
				// The server saw the two calls at most this far apart.
				gap := time.Since(prev)
				prev = start
				if ok {
					continue
				}
				if gap < window {
					t.Fatalf("read %d: timeline expired although the call before it began %v earlier; want it renewed for %v", i, gap.Round(time.Millisecond), window)
				}
				t.Logf("attempt %d, read %d: %v between calls, past the %v window, so the expiry is right; starting again", attempt, i, gap.Round(time.Millisecond), window)
				renewed = false
				break
			}
		}
		if !renewed {
			t.Fatalf("in 5 attempts the gap between reads passed the %v window each time: the machine stalled too often to check renewal", window)
		}
		add(t, c, entries("alice", base+2))
		wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 2, base + 1})
	})
}

// runRecent runs the contract suite of a cache of recent-post lists. open
// must return an empty cache with the given cap whose lists expire ttl
// after their last write.
func runRecent(t *testing.T, open func(t *testing.T, cap int, ttl time.Duration) cache.Timelines) {
	t.Run("ExpiresUnwrittenThoughRead", func(t *testing.T) {
		// A list nobody writes expires however often it is read: the
		// reads below, every few milliseconds, must not keep it alive.
		const ttl = 300 * time.Millisecond
		c := open(t, 10, ttl)
		start := time.Now()
		store(t, c, "alice", []feed.PostID{base + 1})
		if !ranged(t, c, "alice") && time.Since(start) < ttl {
			t.Fatalf("Range(alice) right after Store = missing, %v after the Store began; want it kept for %v", time.Since(start).Round(time.Millisecond), ttl)
		}
		waitfor.Until(t, waitfor.Deadline, "an unwritten recent list to expire", func() (bool, any) {
			return !ranged(t, c, "alice"), "Range(alice) still finds the list"
		})
		// What comes after is a new list, incomplete until a reader's
		// refill from the durable store.
		add(t, c, entries("alice", base+2))
		wantMissing(t, c, "alice")
		store(t, c, "alice", []feed.PostID{base + 1})
		wantRange(t, c, "alice", 0, 100, []feed.PostID{base + 2, base + 1})
	})
	t.Run("AddsRenew", func(t *testing.T) {
		// Add every ttl/5 for three TTLs: each must find the list still
		// complete, since the Add before renewed it. As in ReadsRenew, a
		// gap that a loaded machine stretched past the TTL makes the
		// expiry right, and the attempt starts again.
		const ttl = 500 * time.Millisecond
		c := open(t, 100, ttl)
		renewed := false
		for attempt := 0; attempt < 5 && !renewed; attempt++ {
			user := fmt.Sprintf("alice%d", attempt)
			want := []feed.PostID{base}
			prev := time.Now() // when the last write (the Store) began
			store(t, c, user, want)
			renewed = true
			for i := range 15 {
				time.Sleep(ttl / 5)
				start := time.Now()
				id := base + feed.PostID(i+1)
				add(t, c, entries(user, id))
				want = append([]feed.PostID{id}, want...)
				got, ok, err := c.Range(context.Background(), user, 0, 100)
				if err != nil {
					t.Fatalf("Range(%q): %v", user, err)
				}
				gap := time.Since(prev)
				prev = start
				if ok {
					if !slices.Equal(got, want) {
						t.Fatalf("Range(%q, 0, 100) after Add %d = %v; want %v", user, i, got, want)
					}
					continue
				}
				if gap < ttl {
					t.Fatalf("Add %d: the list expired although the write before it began %v earlier; want it renewed for %v", i, gap.Round(time.Millisecond), ttl)
				}
				t.Logf("attempt %d, Add %d: %v between writes, past the %v TTL, so the expiry is right; starting again", attempt, i, gap.Round(time.Millisecond), ttl)
				renewed = false
				break
			}
		}
		if !renewed {
			t.Fatalf("in 5 attempts the gap between writes passed the %v TTL each time: the machine stalled too often to check renewal", ttl)
		}
	})
}

func ranged(t *testing.T, c cache.Timelines, user string) bool {
	t.Helper()
	_, ok, err := c.Range(context.Background(), user, 0, 1)
	if err != nil {
		t.Fatalf("Range(%q): %v", user, err)
	}
	return ok
}

// runUnfollows checks cache.Unfollows: a mark holds per pair until cleared.
func runUnfollows(t *testing.T, u cache.Unfollows) {
	ctx := context.Background()
	check := func(want ...bool) {
		t.Helper()
		got, err := u.Unfollowed(ctx, "idol", []string{"ann", "bob", "cy"})
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Unfollowed(idol, [ann bob cy]) = %v, %v; want %v", got, err, want)
		}
	}
	check(false, false, false)
	if err := u.MarkUnfollowed(ctx, "bob", "idol"); err != nil {
		t.Fatal(err)
	}
	if err := u.MarkUnfollowed(ctx, "ann", "other"); err != nil {
		t.Fatal(err)
	}
	check(false, true, false)
	if err := u.ClearUnfollowed(ctx, "bob", "idol"); err != nil {
		t.Fatal(err)
	}
	check(false, false, false)
	if got, err := u.Unfollowed(ctx, "idol", nil); err != nil || len(got) != 0 {
		t.Errorf("Unfollowed(idol, none) = %v, %v; want []", got, err)
	}
}
