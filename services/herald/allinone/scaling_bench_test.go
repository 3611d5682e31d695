package allinone_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/ratelimit"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// BenchmarkScaling measures how Herald's costs grow with the two sizes the
// celebrity threshold trades against each other, for
// deploy/local/bench-scaling.sh, which turns its output into tables and
// charts (docs/scaling/). Run it once (-benchtime 1x), with
// HERALD_BENCH_CACHE=redis for the Redis figures:
//
//	HERALD_BENCH_CACHE=redis go test -run '^$' -bench '^BenchmarkScaling$' -benchtime 1x -timeout 30m ./services/herald/allinone
//
// fanout/followers=N is the write side: one author with N followers, all
// active, posts (see scalingPosts for how many), and the sub-benchmark
// waits until every delivery reached the cache (the fan-out's
// herald_fanout_deliveries_total). It reports deliveries/s and the Redis
// and Herald CPU each delivery took, from the first post to the last
// delivery. N is 1,000, 10,000 and 100,000, and 1,000,000 too when
// HERALD_SCALING_MILLION=1 (its setup takes minutes).
//
// reads/strategy=S/following=F is the read side: under push, pull and
// hybrid, each on a node of its own, readers who follow F authors (10 to
// 5,000, feed.DefaultMaxFollowing) read their home timeline, a page of
// 20, closed loop, scalingReaders of them at once, for
// HERALD_SCALING_READ_SECONDS (default 3). Every author has three recent
// posts. Under hybrid every other author (the even-numbered half) is a
// celebrity from before its first post, so a hybrid read pulls F/2 authors
// and reads the pushed timeline for the rest; a pull read pulls all F, a
// push read none. Each reports the latency quantiles and the Redis and
// Herald CPU per read; pulled-authors is how many authors one read pulls.
//
// Redis CPU is the server's own (INFO cpu), so other clients of the same
// Redis count in it; Herald CPU is this whole process's: the all-in-one
// with its embedded etcd and NATS, and the benchmark's own gRPC client.
func BenchmarkScaling(b *testing.B) {
	redisAddr := ""
	if os.Getenv("HERALD_BENCH_CACHE") == "redis" {
		redisAddr = testenv.Redis(b)
	}
	sizes := []int{1000, 10_000, 100_000}
	if million, _ := strconv.ParseBool(os.Getenv("HERALD_SCALING_MILLION")); million {
		sizes = append(sizes, 1_000_000)
	}
	b.Run("fanout", func(b *testing.B) { benchScalingFanout(b, redisAddr, sizes) })

	readFor := time.Duration(envInt(b, "HERALD_SCALING_READ_SECONDS", 3)) * time.Second
	b.Run("reads", func(b *testing.B) {
		for _, s := range []feed.Strategy{feed.Push, feed.Pull, feed.Hybrid} {
			b.Run("strategy="+string(s), func(b *testing.B) {
				benchScalingReads(b, redisAddr, s, []int{10, 100, 1000, feed.DefaultMaxFollowing}, readFor)
			})
		}
	})
}

// scalingReaders is how many readers follow each following count, and how
// many read at once in its sub-benchmark, one each.
const scalingReaders = 4

// scalingPosts is how many posts the author with followers followers
// writes in the fan-out benchmark: enough that the smaller authors make
// 200,000 to 500,000 deliveries, a few seconds of work, and at least two
// for the largest.
func scalingPosts(followers int) int {
	return min(200, max(2, 500_000/followers))
}

// startScalingNode starts the all-in-one in process for BenchmarkScaling,
// as startBenchNode does, but under strategy s (at the default celebrity
// threshold) and with its own namespace, whose Redis keys go at cleanup.
// It also returns a client of that Redis for its CPU figures, or nil on
// the memory cache.
func startScalingNode(b *testing.B, name string, s feed.Strategy, redisAddr string) (*grpc.ClientConn, *allinone.System, *redis.Client) {
	cfg := allinone.Config{
		Node:    node.Config{Name: name, ListenAddr: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		DataDir: b.TempDir(),
		Policy:  backend.Policy{Strategy: s},
		Cache:   backend.CacheConfig{ActiveWindow: time.Hour},
	}
	// One author posts, and one reader reads, far faster than the per-user
	// rate limits allow a person to. Authentication stays on.
	cfg.Node.Guard.Limits = map[guard.Class]ratelimit.Limit{}
	var rdb *redis.Client
	if redisAddr != "" {
		cfg.Cache.Kind, cfg.Cache.Addrs = "redis", []string{redisAddr}
		cfg.Cache.Login.User, cfg.Cache.Login.PasswordFile = testenv.RedisLogin(b)
		cfg.Node.Namespace = fmt.Sprintf("%s%d", name, time.Now().UnixNano())
		b.Cleanup(func() { dropRedisPrefix(b, redisAddr, cfg.Node.Namespace+":") })
		opts := testenv.RedisOptions(b)
		opts.Addr = redisAddr
		rdb = redis.NewClient(opts)
		b.Cleanup(func() { rdb.Close() })
	}
	conn, n, _ := startSystemWith(b, cfg)
	return conn, n, rdb
}

// cpuMeter takes the CPU figures of one measured stretch: Redis's (when
// there is a Redis) and this process's.
type cpuMeter struct {
	b               *testing.B
	rdb             *redis.Client
	redis0, herald0 float64
}

// startCPU starts a measured stretch; rdb is nil on the memory cache.
func startCPU(b *testing.B, rdb *redis.Client) *cpuMeter {
	m := &cpuMeter{b: b, rdb: rdb, herald0: processCPUSeconds()}
	if rdb != nil {
		m.redis0 = redisCPUSeconds(b, rdb)
	}
	return m
}

// report reports the CPU spent since startCPU in microseconds per op, ops
// of unit (delivery, read).
func (m *cpuMeter) report(ops float64, unit string) {
	if m.rdb != nil {
		m.b.ReportMetric(1e6*(redisCPUSeconds(m.b, m.rdb)-m.redis0)/ops, "redis-cpu-us/"+unit)
	}
	m.b.ReportMetric(1e6*(processCPUSeconds()-m.herald0)/ops, "herald-cpu-us/"+unit)
}

// awaitFanout waits until the fan-out has handled posts posts in all and
// sent deliveries timeline entries, for at most limit; posts 0 waits for
// the deliveries alone.
func awaitFanout(b *testing.B, n *allinone.System, posts, deliveries float64, limit time.Duration) {
	b.Helper()
	// Gathering runs every collector, /proc reads included: poll rarely
	// enough not to weigh on what is measured (and skip the posts'
	// counter when the caller waits for deliveries only, posts 0).
	var gotPosts, gotDeliveries float64
	if !waitfor.True(limit, 25*time.Millisecond, func() bool {
		if posts > 0 {
			gotPosts = counter(b, n, "herald_fanout_posts_total")
		}
		gotDeliveries = counter(b, n, "herald_fanout_deliveries_total")
		return gotPosts >= posts && gotDeliveries >= deliveries
	}) {
		b.Fatalf("after %v the fan-out handled %v posts and made %v deliveries; want %v and %v", limit, gotPosts, gotDeliveries, posts, deliveries)
	}
}

// benchScalingFanout runs fanout/followers=N for each of sizes, in
// ascending order, on one push node. The author of size N ("a" N) is
// followed by the first N users, so each size activates only the users
// the one before it did not.
func benchScalingFanout(b *testing.B, redisAddr string, sizes []int) {
	ctx := context.Background()
	conn, n, rdb := startScalingNode(b, "scalefan", feed.Push, redisAddr)
	imp, ok := n.Backends.Graph.(importer)
	if !ok {
		b.Fatalf("the all-in-one's graph store %T has no ImportFollows", n.Backends.Graph)
	}
	users := make([]string, slices.Max(sizes))
	for i := range users {
		users[i] = fmt.Sprintf("f%07d", i)
	}
	active := 0
	ready := map[int]bool{}
	pc := feedv1.NewPostServiceClient(conn)
	for _, followers := range sizes {
		author := fmt.Sprintf("a%d", followers)
		b.Run(fmt.Sprintf("followers=%d", followers), func(b *testing.B) {
			if !ready[followers] {
				setup := time.Now()
				if _, err := imp.ImportFollows(ctx, author, users[:followers]); err != nil {
					b.Fatal(err)
				}
				// What a first read does: the timeline exists, empty, so
				// fan-out writes it.
				g, gctx := errgroup.WithContext(ctx)
				g.SetLimit(64)
				for _, u := range users[active:max(active, followers)] {
					g.Go(func() error { return n.Backends.Timelines.Store(gctx, u, nil) })
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
				active = max(active, followers)
				ready[followers] = true
				b.Logf("%d followers of %s, all active, set up in %v", followers, author, time.Since(setup).Round(time.Millisecond))
			}

			posts := scalingPosts(followers)
			handled := counter(b, n, "herald_fanout_posts_total") + float64(posts)
			want := counter(b, n, "herald_fanout_deliveries_total") + float64(posts*followers)
			cpu := startCPU(b, rdb)
			start := time.Now()
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(16)
			for i := range posts {
				g.Go(func() error {
					_, err := pc.CreatePost(gctx, &feedv1.CreatePostRequest{AuthorId: author, Text: "scaling " + strconv.Itoa(i)})
					return err
				})
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
			awaitFanout(b, n, handled, want, 10*time.Minute)
			elapsed := time.Since(start)
			deliveries := float64(posts * followers)
			b.ReportMetric(deliveries/elapsed.Seconds(), "deliveries/s")
			cpu.report(deliveries, "delivery")
			b.ReportMetric(float64(posts), "posts")
			b.ReportMetric(elapsed.Seconds(), "wall-s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchScalingReads runs reads/strategy=s/following=F for each F of
// followings on a node of its own, set up as BenchmarkScaling describes.
func benchScalingReads(b *testing.B, redisAddr string, s feed.Strategy, followings []int, readFor time.Duration) {
	const postsEach = 3
	ctx := context.Background()
	conn, n, rdb := startScalingNode(b, "scale"+string(s), s, redisAddr)
	authors := make([]string, slices.Max(followings))
	for i := range authors {
		authors[i] = fmt.Sprintf("a%04d", i)
	}
	celebrity := func(i int) bool { return s == feed.Hybrid && i%2 == 0 }
	reader := func(following, i int) string { return fmt.Sprintf("r%dx%d", following, i) }

	setup := time.Now()
	// Celebrities first: an author's posts are pulled only if the author
	// was one when they were written.
	for i, a := range authors {
		if celebrity(i) {
			if err := n.Backends.Celebrities.AddCelebrity(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Readers follow, and are active (their timelines exist, as after a
	// first read), before the posts, so that pushed posts land in their
	// timelines as they would in a live system.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for _, f := range followings {
		for r := range scalingReaders {
			u := reader(f, r)
			g.Go(func() error { return n.Backends.Timelines.Store(gctx, u, nil) })
			for _, a := range authors[:f] {
				g.Go(func() error { _, err := n.Backends.Graph.Follow(gctx, u, a); return err })
			}
		}
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	// Every author posts; each pushed post goes to the readers who follow
	// its author: those of every following count above the author's index.
	var deliveries int
	for i := range authors {
		if s != feed.Pull && !celebrity(i) {
			for _, f := range followings {
				if i < f {
					deliveries += postsEach * scalingReaders
				}
			}
		}
	}
	handled := counter(b, n, "herald_fanout_posts_total") + float64(len(authors)*postsEach)
	want := counter(b, n, "herald_fanout_deliveries_total") + float64(deliveries)
	pc := feedv1.NewPostServiceClient(conn)
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(32)
	for p := range postsEach {
		for _, a := range authors {
			g.Go(func() error {
				_, err := pc.CreatePost(gctx, &feedv1.CreatePostRequest{AuthorId: a, Text: "recent " + strconv.Itoa(p)})
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	awaitFanout(b, n, handled, want, 5*time.Minute)

	// Warm-up, unmeasured: every reader reads once, so that the token is
	// verified, the following list memoized and every recent list cached.
	// A full page says the posts reached the reader, pushed or pulled.
	tc := feedv1.NewTimelineServiceClient(conn)
	read := func(ctx context.Context, u string) (int, error) {
		resp, err := tc.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: u, PageSize: 20})
		return len(resp.GetPosts()), err
	}
	for _, f := range followings {
		for r := range scalingReaders {
			got, err := read(ctx, reader(f, r))
			if err != nil {
				b.Fatal(err)
			}
			if got != 20 {
				b.Fatalf("%s, following %d authors of %d posts each, read %d posts; want a full page of 20", reader(f, r), f, postsEach, got)
			}
		}
	}
	b.Logf("%s: %d authors, %d posts each, readers of %v authors set up and read once in %v",
		s, len(authors), postsEach, followings, time.Since(setup).Round(time.Millisecond))

	for _, f := range followings {
		pulled := 0
		switch s {
		case feed.Pull:
			pulled = f
		case feed.Hybrid:
			pulled = (f + 1) / 2 // the even-numbered of authors[:f]
		}
		b.Run(fmt.Sprintf("following=%d", f), func(b *testing.B) {
			cpu := startCPU(b, rdb)
			start := time.Now()
			end := start.Add(readFor)
			// Reads start until end; the context only bounds a stuck one.
			rctx, cancel := context.WithDeadline(ctx, end.Add(30*time.Second))
			defer cancel()
			lat, fails, first := closedLoop(rctx, scalingReaders, end, func(r int) func() string {
				u := reader(f, r)
				return func() string { return u }
			}, func(ctx context.Context, u string) error { _, err := read(ctx, u); return err })
			elapsed := time.Since(start)
			if fails > 0 {
				b.Fatalf("%d reads failed; the first: %v", fails, first)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "reads/s")
			b.ReportMetric(ms(quantile(lat, 0.50)), "p50-ms")
			b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
			cpu.report(float64(len(lat)), "read")
			b.ReportMetric(float64(pulled), "pulled-authors")
			b.ReportMetric(0, "ns/op")
		})
	}
}
