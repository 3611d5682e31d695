package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/cache/cachetest"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/memcache"
	"github.com/herald-feed/herald/services/platform/rediscache"
	"github.com/herald-feed/herald/services/platform/testenv"
)

func TestMain(m *testing.M) {
	// TestUnavailable dials a dead port on purpose; go-redis would log
	// every failed dial.
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var run = rand.Uint64()
var seq atomic.Int64

// open returns a cache on the test Redis under a key prefix of its own, so
// tests never see each other's keys (or a cluster's sharing the server),
// and deletes its keys afterwards.
func open(t testing.TB, cap int) *rediscache.Cache {
	return openOpts(t, rediscache.Options{Cap: cap})
}

func openOpts(t testing.TB, opts rediscache.Options) *rediscache.Cache {
	rdb, prefix := client(t)
	opts.Prefix = prefix
	return rediscache.New(rdb, opts)
}

// client returns a client of the test Redis and a key prefix of its own,
// whose keys it deletes afterwards.
func client(t testing.TB) (redis.UniversalClient, string) {
	rdb := redis.NewClient(testenv.RedisOptions(t))
	prefix := fmt.Sprintf("test:%x:%d:", run, seq.Add(1))
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis %s: %v", testenv.Redis(t), err)
	}
	return rdb, prefix
}

// TestContract runs the cache contract suite on every port the Redis
// cache implements: with each read's own pipeline, and with reads through
// the auto-pipeliner and post bodies kept in process.
func TestContract(t *testing.T) { contract(t, openOpts) }

// contract runs the cache contract suite on the caches openCache returns (each
// under a key prefix of its own), in both ways of reading.
func contract(t *testing.T, openCache func(testing.TB, rediscache.Options) *rediscache.Cache) {
	for _, v := range []struct {
		name string
		with func(rediscache.Options) rediscache.Options
	}{
		{"pipelines", func(o rediscache.Options) rediscache.Options { return o }},
		{"autopipelined-local-posts", func(o rediscache.Options) rediscache.Options {
			// and Add reading every active mark, as before knownActive
			o.AutoPipelineReads, o.LocalPosts, o.KnownActive = true, 1000, -1
			return o
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			with := func(t *testing.T, o rediscache.Options) *rediscache.Cache { return openCache(t, v.with(o)) }
			cachetest.Run(t, cachetest.Adapter{
				Timelines: func(t *testing.T, cap int) cache.Timelines { return with(t, rediscache.Options{Cap: cap}) },
				Active: func(t *testing.T, cap int, window time.Duration) cache.Timelines {
					return with(t, rediscache.Options{Cap: cap, ActiveWindow: window})
				},
				Recent: func(t *testing.T, cap int, ttl time.Duration) cache.Timelines {
					return with(t, rediscache.Options{Cap: cap, Kind: "recent", TimelineTTL: ttl})
				},
				Posts:       func(t *testing.T) cache.Posts { return with(t, rediscache.Options{Cap: 10}) },
				Celebrities: func(t *testing.T) cache.Celebrities { return with(t, rediscache.Options{Cap: 10}) },
				Unfollows:   func(t *testing.T) cache.Unfollows { return with(t, rediscache.Options{Cap: 10}) },
			})
		})
	}
}

// TestUnavailable: a Redis that cannot be reached is feed.ErrUnavailable.
func TestUnavailable(t *testing.T) {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}, MaxRetries: -1})
	defer rdb.Close()
	c := rediscache.New(rdb, rediscache.Options{})
	ctx := context.Background()
	checks := map[string]error{
		"Add":      c.Add(ctx, []cache.Entry{{User: "a", Post: 1}}),
		"Store":    c.Store(ctx, "a", []feed.PostID{1}),
		"PutPosts": c.PutPosts(ctx, []feed.Post{{ID: 1}}),
	}
	_, _, checks["Range"] = c.Range(ctx, "a", 0, 10)
	_, checks["GetPosts"] = c.GetPosts(ctx, []feed.PostID{1})
	for name, err := range checks {
		if !errorsIsUnavailable(err) {
			t.Errorf("%s on a dead Redis = %v; want feed.ErrUnavailable", name, err)
		}
	}
}

// TestMemoryPerEntry reports MEMORY USAGE of a full timeline. It asserts
// only that the figure is sane; docs/benchmarks.md records the number.
func TestMemoryPerEntry(t *testing.T) {
	c := open(t, 800)
	ctx := context.Background()
	ids := make([]feed.PostID, 800)
	for i := range ids {
		ids[i] = feed.PostID(1<<60 + uint64(i)*4096)
	}
	if err := c.Store(ctx, "mem", ids); err != nil {
		t.Fatal(err)
	}
	n, err := c.MemoryUsage(ctx, "mem")
	if err != nil || n <= 800*8 {
		t.Fatalf("MemoryUsage(800-entry timeline) = %d, %v; want more than the 6400 bytes of raw members", n, err)
	}
	t.Logf("MEMORY USAGE of an 800-entry timeline: %d bytes, %.1f bytes/entry", n, float64(n)/800)
}

// BenchmarkAddBatch measures fan-out inserts: batches of 1,000 entries
// for random users among 100,000, four batches in flight at once as
// several fan-out workers would have them.
func BenchmarkAddBatch(b *testing.B) {
	const users, batch = 100_000, 1000
	b.Run("active", func(b *testing.B) {
		// The fan-out's path: home timelines of active users.
		c := openOpts(b, rediscache.Options{Cap: 800, ActiveWindow: time.Hour})
		g, ctx := errgroup.WithContext(context.Background())
		g.SetLimit(32)
		for u := range users {
			g.Go(func() error { return c.Store(ctx, "u"+strconv.Itoa(u), nil) })
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		benchAdd(b, c, users, batch)
	})
	b.Run("script", func(b *testing.B) {
		// Recent-post lists' path: the insert script.
		benchAdd(b, open(b, 800), users, batch)
	})
}

func benchAdd(b *testing.B, c *rediscache.Cache, users, batch int) {
	var next atomic.Uint64
	next.Store(1 << 60)
	b.SetParallelism(2) // 2 × GOMAXPROCS(2) = 4 concurrent batches
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		r := rand.New(rand.NewPCG(next.Load(), 7))
		entries := make([]cache.Entry, batch)
		for pb.Next() {
			for i := range entries {
				entries[i] = cache.Entry{User: "u" + strconv.Itoa(r.IntN(users)), Post: feed.PostID(next.Add(1))}
			}
			if err := c.Add(ctx, entries); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "inserts/s")
}

func BenchmarkRange(b *testing.B) {
	c := open(b, 800)
	ctx := context.Background()
	ids := make([]feed.PostID, 800)
	for i := range ids {
		ids[i] = feed.PostID(1<<60 + uint64(i))
	}
	c.Store(ctx, "reader", ids)
	for b.Loop() {
		if _, ok, err := c.Range(ctx, "reader", 0, 20); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func errorsIsUnavailable(err error) bool { return errors.Is(err, feed.ErrUnavailable) }

// TestRangeBatch: a batch over two Caches sharing a client, and one list
// of another adapter, gives what each Range gives alone.
func TestRangeBatch(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewClient(testenv.RedisOptions(t))
	defer rdb.Close()
	prefix := fmt.Sprintf("test:%x:%d:", run, seq.Add(1))
	t.Cleanup(func() {
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	home := rediscache.New(rdb, rediscache.Options{Cap: 10, Prefix: prefix, ActiveWindow: time.Hour})
	recent := rediscache.New(rdb, rediscache.Options{Cap: 10, Prefix: prefix, Kind: "recent"})
	other := memcache.New(10)
	const base feed.PostID = 1 << 60
	for _, s := range []struct {
		c    cache.Timelines
		user string
		ids  []feed.PostID
	}{{home, "alice", []feed.PostID{base + 1, base + 2, base + 3}}, {recent, "bob", []feed.PostID{base + 4, base + 5}}, {other, "carol", []feed.PostID{base + 6}}} {
		if err := s.c.Store(ctx, s.user, s.ids); err != nil {
			t.Fatal(err)
		}
	}
	reqs := []*cache.RangeReq{
		{List: home, User: "alice", Limit: 2},
		{List: home, User: "alice", Before: base + 3, Limit: 10},
		{List: recent, User: "bob", Limit: 10},
		{List: home, User: "nobody", Limit: 10},
		{List: recent, User: "alice", Limit: 10},
		{List: other, User: "carol", Limit: 10},
	}
	home.RangeBatch(ctx, reqs)
	for _, r := range reqs {
		ids, ok, err := r.List.Range(ctx, r.User, r.Before, r.Limit)
		if err != nil || r.Err != nil || ok != r.OK || !slices.Equal(ids, r.IDs) {
			t.Errorf("batched Range(%s, %d, %d) = %v, %v, %v; alone = %v, %v, %v", r.User, r.Before, r.Limit, r.IDs, r.OK, r.Err, ids, ok, err)
		}
	}
	if !reqs[0].OK || len(reqs[0].IDs) != 2 || reqs[3].OK {
		t.Errorf("batched results %+v, %+v; want alice's two newest, and nobody missing", *reqs[0], *reqs[3])
	}
}

// pttl returns key's remaining TTL; it fails the test unless the key
// exists and has one.
func pttl(t *testing.T, rdb redis.UniversalClient, key string) time.Duration {
	t.Helper()
	d, err := rdb.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("PTTL %s: %v", key, err)
	}
	switch {
	case d == -2:
		t.Fatalf("PTTL %s: no such key; want a key with a TTL", key)
	case d <= 0:
		t.Fatalf("PTTL %s: the key has no TTL; want one", key)
	}
	return d
}

// TestRecentTTLRenewedByWrites: a recent list with the default options
// lives cache.DefaultRecentTTL after each write, and reads do not renew
// it. The TTL is read, not waited for.
func TestRecentTTLRenewedByWrites(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := client(t)
	c := rediscache.New(rdb, rediscache.Options{Cap: 10, Prefix: prefix, Kind: "recent"})
	key := prefix + "recent.v2:{alice}"
	const short = 10 * time.Second
	writes := []struct {
		name  string
		write func() error
	}{
		{"Add creating the list", func() error { return c.Add(ctx, []cache.Entry{{User: "alice", Post: 1}}) }},
		{"Store", func() error { return c.Store(ctx, "alice", []feed.PostID{1}) }},
		{"Add", func() error { return c.Add(ctx, []cache.Entry{{User: "alice", Post: 2}}) }},
	}
	for _, w := range writes {
		if err := w.write(); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		if d := pttl(t, rdb, key); d <= short || d > cache.DefaultRecentTTL {
			t.Errorf("PTTL after %s = %v; want in (%v, %v]: the write renews the list for DefaultRecentTTL", w.name, d, short, cache.DefaultRecentTTL)
		}
		// Shorten it, so that the next write's renewal shows.
		if err := rdb.PExpire(ctx, key, short).Err(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Range(ctx, "alice", 0, 10); err != nil {
			t.Fatal(err)
		}
		if d := pttl(t, rdb, key); d > short {
			t.Errorf("PTTL after a Range = %v; want at most %v: reads do not renew a recent list", d, short)
		}
	}
}

// TestMadeUpUserKeysExpire calls every port the way requests for a
// made-up user would, including a rebuild that fails after the fan-out
// wrote into the claimed timeline, and checks that every key they leave
// behind has a TTL within its bound. Only the celebrity set has none: it
// is sticky by design.
func TestMadeUpUserKeysExpire(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := client(t)
	const window, claimTTL = time.Hour, 5 * time.Second
	home := rediscache.New(rdb, rediscache.Options{Cap: 10, Prefix: prefix, ActiveWindow: window})
	recent := rediscache.New(rdb, rediscache.Options{Cap: 10, Prefix: prefix, Kind: "recent"})
	const base feed.PostID = 1 << 60
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// A read of a missing timeline, its rebuild's claim, a push that
	// lands in it, and no Store: the rebuild failed.
	_, _, err := home.Range(ctx, "ghost", 0, 10)
	must("Range", err)
	_, err = home.Claim(ctx, "ghost", claimTTL)
	must("Claim", err)
	must("Add", home.Add(ctx, []cache.Entry{{User: "ghost", Post: base + 1}}))
	// A rebuilt timeline, which gets its mark.
	_, err = home.Claim(ctx, "wraith", claimTTL)
	must("Claim", err)
	must("Store", home.Store(ctx, "wraith", []feed.PostID{base + 2}))
	// A post, its recent list, a reader's refill of another's, a delete.
	must("recent Add", recent.Add(ctx, []cache.Entry{{User: "ghost", Post: base + 1}}))
	must("recent Store", recent.Store(ctx, "phantom", nil))
	must("PutPosts", home.PutPosts(ctx, []feed.Post{{ID: base + 1, Author: "ghost", Text: "boo"}}))
	must("DeletePosts", home.DeletePosts(ctx, []feed.PostID{base + 3}))
	must("MarkUnfollowed", home.MarkUnfollowed(ctx, "ghost", "wraith"))
	must("AddCelebrity", home.AddCelebrity(ctx, "ghost"))

	bounds := []struct {
		kind string
		max  time.Duration
	}{
		{"tl.v2:", window + time.Minute},
		{"tl.active:", window},
		{"tl.claim:", claimTTL},
		{"recent.v2:", cache.DefaultRecentTTL},
		{"post:", 24 * time.Hour},
		{"unf:", cache.UnfollowTTL},
		{"post.deleted", time.Hour},
	}
	seen := map[string]int{}
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		name := key[len(prefix):]
		if name == "celebs" {
			seen[name]++
			continue
		}
		d := pttl(t, rdb, key)
		known := false
		for _, b := range bounds {
			if len(name) >= len(b.kind) && name[:len(b.kind)] == b.kind {
				known = true
				seen[b.kind]++
				if d > b.max {
					t.Errorf("PTTL %s = %v; want at most %v", name, d, b.max)
				}
			}
		}
		if !known {
			t.Errorf("key %s: of no kind this test knows the bound of", name)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	// tl: ghost and wraith; tl.active: both; tl.claim: ghost's (Store
	// released wraith's); recent: ghost and phantom; post: two; unf: one;
	// the delete log.
	want := map[string]int{"tl.v2:": 2, "tl.active:": 2, "tl.claim:": 1, "recent.v2:": 2, "post:": 2, "unf:": 1, "post.deleted": 1, "celebs": 1}
	if !maps.Equal(seen, want) {
		t.Errorf("keys by kind = %v; want %v", seen, want)
	}
}

// TestClaimPlaceholderHidden: the member Claim puts into a timeline is
// never shown, does not complete it, and is gone after Store.
func TestClaimPlaceholderHidden(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := client(t)
	c := rediscache.New(rdb, rediscache.Options{Cap: 3, Prefix: prefix, ActiveWindow: time.Hour})
	const base feed.PostID = 1 << 60
	key := rediscache.HomeTimelineKey(prefix, "alice")
	if _, err := c.Claim(ctx, "alice", time.Minute); err != nil {
		t.Fatal(err)
	}
	pttl(t, rdb, key)
	if _, ok, err := c.Range(ctx, "alice", 0, 10); err != nil || ok {
		t.Errorf("Range of a claimed timeline = %v, %v; want missing", ok, err)
	}
	if err := c.Add(ctx, []cache.Entry{{User: "alice", Post: base + 9}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(ctx, "alice", []feed.PostID{base + 1, base + 2}); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.ZCard(ctx, key).Result(); err != nil || n != 4 {
		t.Errorf("ZCARD after Store = %d, %v; want 4: three IDs and the completeness marker", n, err)
	}
	got, ok, err := c.Range(ctx, "alice", 0, 10)
	if want := []feed.PostID{base + 9, base + 2, base + 1}; err != nil || !ok || !slices.Equal(got, want) {
		t.Errorf("Range after Store = %v, %v, %v; want %v, true, nil", got, ok, err, want)
	}
	if full, err := c.Full(ctx, "alice"); err != nil || !full {
		t.Errorf("Full at the cap = %v, %v; want true", full, err)
	}
}

// TestReadsRenewOncePerFraction: a user who reads often renews the
// active mark and the timeline's TTL once per ActiveWindow/16 through one
// Cache, and between renewals a read only checks the mark; a mark that
// vanished meanwhile still makes the timeline missing.
func TestReadsRenewOncePerFraction(t *testing.T) {
	const window = time.Hour
	rdb, prefix := client(t)
	now := time.Unix(1_000_000, 0)
	c := rediscache.New(rdb, rediscache.Options{Prefix: prefix, ActiveWindow: window, Clock: func() time.Time { return now }})
	ctx := context.Background()
	mark := prefix + "tl.active:{alice}"
	if err := c.Store(ctx, "alice", []feed.PostID{1 << 60}); err != nil {
		t.Fatal(err)
	}
	rangeOK := func(what string) bool {
		t.Helper()
		_, ok, err := c.Range(ctx, "alice", 0, 10)
		if err != nil {
			t.Fatalf("Range %s: %v", what, err)
		}
		return ok
	}
	if !rangeOK("first") {
		t.Fatal("Range after Store: timeline missing")
	}
	// Shorten the mark's TTL behind the Cache's back: a read soon after
	// must leave it, and one after window/16 must renew it.
	rdb.PExpire(ctx, mark, 10*time.Second)
	now = now.Add(window / 32)
	if !rangeOK("within window/16") {
		t.Fatal("Range within window/16: timeline missing")
	}
	if d := pttl(t, rdb, mark); d > 10*time.Second {
		t.Errorf("mark TTL after a read within window/16 = %v; want it left at 10s or less (no renewal)", d)
	}
	now = now.Add(window / 16)
	if !rangeOK("after window/16") {
		t.Fatal("Range after window/16: timeline missing")
	}
	if d := pttl(t, rdb, mark); d < window-time.Minute {
		t.Errorf("mark TTL after a read past window/16 = %v; want it renewed to about %v", d, window)
	}
	// The mark gone (evicted, say): the next read reports the timeline
	// missing even though this Cache renewed it lately; the rebuild that
	// follows (Store) marks the user again, and reads find it.
	rdb.Del(ctx, mark)
	if rangeOK("without the mark") {
		t.Error("Range with the mark deleted: timeline found; want it missing, to be rebuilt")
	}
	if err := c.Store(ctx, "alice", []feed.PostID{1 << 60}); err != nil {
		t.Fatal(err)
	}
	if !rangeOK("after the rebuild") {
		t.Error("Range after the rebuild: timeline missing")
	}
	if d := pttl(t, rdb, mark); d < window-time.Minute {
		t.Errorf("mark TTL after the rebuild = %v; want about %v", d, window)
	}
}

// BenchmarkRangeActive reads a warm timeline of an active user, renewing
// the active mark on every read (as before renewFraction) beside once per
// window/16.
func BenchmarkRangeActive(b *testing.B) {
	for _, each := range []bool{true, false} {
		name := "renew=every-read"
		if !each {
			name = "renew=per-window/16"
		}
		b.Run(name, func(b *testing.B) {
			rdb, prefix := client(b)
			now := time.Now()
			clock := func() time.Time {
				if each {
					now = now.Add(time.Hour) // every read finds its last renewal stale
				}
				return now
			}
			c := rediscache.New(rdb, rediscache.Options{Prefix: prefix, ActiveWindow: time.Hour, Clock: clock})
			ctx := context.Background()
			ids := make([]feed.PostID, 800)
			for i := range ids {
				ids[i] = feed.PostID(1<<60 + uint64(i))
			}
			c.Store(ctx, "reader", ids)
			cpu := redisCPU(b, rdb)
			for b.Loop() {
				if _, ok, err := c.Range(ctx, "reader", 0, 20); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
			b.ReportMetric((redisCPU(b, rdb)-cpu).Seconds()*1e6/float64(b.N), "redis-µs/op")
		})
	}
}

// redisCPU returns the CPU time the Redis server has used (INFO cpu),
// so a benchmark can report the server's work per operation.
func redisCPU(b *testing.B, rdb redis.UniversalClient) time.Duration {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// mgetCounter counts the MGETs a client sends.
type mgetCounter struct{ n atomic.Int64 }

func (h *mgetCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *mgetCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h *mgetCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.count(cmd)
		}
		return next(ctx, cmds)
	}
}
func (h *mgetCounter) count(cmd redis.Cmder) {
	if cmd.Name() == "mget" {
		h.n.Add(1)
	}
}

// TestKnownActiveSkipsMarkReads: the fan-out reads an active user's mark
// once, and writes the next posts without reading it; a user found
// inactive is asked about again, so a Claim in between is seen at once.
func TestKnownActiveSkipsMarkReads(t *testing.T) {
	rdb, prefix := client(t)
	var mgets mgetCounter
	rdb.AddHook(&mgets)
	c := rediscache.New(rdb, rediscache.Options{Prefix: prefix, ActiveWindow: time.Hour})
	ctx := context.Background()
	add := func(user string, id feed.PostID) {
		t.Helper()
		if err := c.Add(ctx, []cache.Entry{{User: user, Post: id}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Store(ctx, "alice", nil); err != nil {
		t.Fatal(err)
	}
	add("alice", 1<<60+1)
	add("alice", 1<<60+2)
	add("bob", 1<<60+1) // bob is inactive: skipped
	if n := mgets.n.Load(); n != 2 {
		t.Errorf("MGETs for two posts to alice, then one to bob = %d; want 2 (alice's mark once, bob's)", n)
	}
	if ok, err := c.Claim(ctx, "bob", time.Minute); err != nil || !ok {
		t.Fatalf("Claim(bob) = %v, %v", ok, err)
	}
	add("bob", 1<<60+2) // bob's mark is read again, and the post lands
	if n := mgets.n.Load(); n != 3 {
		t.Errorf("MGETs after bob's claim and a post = %d; want 3", n)
	}
	if err := c.Store(ctx, "bob", nil); err != nil {
		t.Fatal(err)
	}
	ids, ok, err := c.Range(ctx, "bob", 0, 10)
	if err != nil || !ok || !slices.Equal(ids, []feed.PostID{1<<60 + 2}) {
		t.Errorf("bob's timeline = %v, %v, %v; want the post pushed after his claim", ids, ok, err)
	}
	ids, ok, err = c.Range(ctx, "alice", 0, 10)
	if err != nil || !ok || !slices.Equal(ids, []feed.PostID{1<<60 + 2, 1<<60 + 1}) {
		t.Errorf("alice's timeline = %v, %v, %v; want both posts", ids, ok, err)
	}
}

// BenchmarkStoreFull stores a full timeline, 800 IDs newest first, as a
// rebuild does, into a fresh key each time, and reports Redis's CPU per
// Store: each insert into a listpack scans it, so the order the members
// go in decides the cost.
func BenchmarkStoreFull(b *testing.B) {
	rdb, prefix := client(b)
	c := rediscache.New(rdb, rediscache.Options{Prefix: prefix, ActiveWindow: time.Hour})
	ctx := context.Background()
	ids := make([]feed.PostID, c.Cap())
	for i := range ids {
		ids[i] = feed.PostID(1<<60 + len(ids) - i)
	}
	cpu := redisCPU(b, rdb)
	for i := 0; b.Loop(); i++ {
		if err := c.Store(ctx, "u"+strconv.Itoa(i), ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((redisCPU(b, rdb)-cpu).Seconds()*1e6/float64(b.N), "redis-µs/op")
}
