package allinone_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
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
	"github.com/herald-feed/herald/services/platform/rediscache"
	"github.com/herald-feed/herald/services/platform/testenv"
)

// BenchmarkFanoutLag measures the post→visible lag of a pushed post: from
// the post's create time to the moment its ID is at the top of a
// follower's cached home timeline, for 32 followers spread evenly over the
// author's follower list (so the first and the last chunk are both seen).
// Each of b.N posts is written after the previous one is fully visible.
//
// It runs the all-in-one in process: embedded etcd and NATS, Pebble for
// the graph and posts (fast to fill with 100,000 follows), and the memory
// cache, or Redis when HERALD_BENCH_CACHE=redis (`make bench-lag`). All
// followers are active: their timelines exist, as after a read, empty, or
// full to the cap (800 entries) when HERALD_LAG_FULL_TIMELINES=true.
//
// On Redis, once the posts are measured, it times the raw writes the same
// delivery needs on the same Redis (see zaddBaseline) and reports them as
// zadd-s, and ratio: all-visible-p50 over zadd-s, which is how far
// Herald's fan-out is from what Redis itself takes.
//
//	go test -run '^$' -bench FanoutLag -benchtime 20x ./services/herald/allinone
func BenchmarkFanoutLag(b *testing.B) {
	for _, followers := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("followers=%d", followers), func(b *testing.B) { benchLag(b, followers, b.N) })
	}
}

// BenchmarkFanoutMillion is BenchmarkFanoutLag for an author with
// 1,000,000 followers, all active: 3 posts, whatever b.N. Setting it up
// takes minutes, so run it once (-benchtime 1x), with the local Redis:
//
//	HERALD_BENCH_CACHE=redis go test -run '^$' -bench FanoutMillion -benchtime 1x -timeout 30m ./services/herald/allinone
//
// Its all-visible-p50-ms is deploy/local/bench-lag.sh's million_s (in
// seconds), its zadd-s million_zadd_s and its ratio million_ratio.
// HERALD_LAG_MILLION_FOLLOWERS, if set, replaces the 1,000,000 followers,
// for a quick check of the benchmark itself.
func BenchmarkFanoutMillion(b *testing.B) {
	benchLag(b, envInt(b, "HERALD_LAG_MILLION_FOLLOWERS", 1_000_000), 3)
}

// startBenchNode starts the all-in-one in process for a benchmark: push,
// embedded etcd and NATS, Pebble, and the memory cache, or Redis at
// redisAddr under a namespace of its own, whose keys go at cleanup.
// Active timelines outlive the setup and the run.
func startBenchNode(b *testing.B, name, redisAddr string) (*grpc.ClientConn, *allinone.System, func()) {
	cfg := allinone.Config{
		Node:    node.Config{Name: name, ListenAddr: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		DataDir: b.TempDir(),
		Policy:  backend.Policy{Strategy: feed.Push},
		Cache:   backend.CacheConfig{ActiveWindow: time.Hour},
	}
	// The benchmarks measure fan-out, not the per-user rate limits: one
	// author posts faster than a person may. Authentication stays on.
	cfg.Node.Guard.Limits = map[guard.Class]ratelimit.Limit{}
	// HERALD_BENCH_FANOUT_WORKERS and HERALD_BENCH_CHUNK_SIZE are
	// -fanout-workers and -fanout-chunk-size, for tuning them; unset,
	// the defaults.
	if os.Getenv("HERALD_BENCH_FANOUT_WORKERS") != "" {
		cfg.Fanout.Workers = envInt(b, "HERALD_BENCH_FANOUT_WORKERS", 0)
	}
	if os.Getenv("HERALD_BENCH_CHUNK_SIZE") != "" {
		cfg.Fanout.ChunkSize = envInt(b, "HERALD_BENCH_CHUNK_SIZE", 0)
	}
	if redisAddr != "" {
		cfg.Cache.Kind, cfg.Cache.Addrs = "redis", []string{redisAddr}
		cfg.Cache.LocalPosts = backend.DefaultLocalPosts // -local-posts' default
		// HERALD_BENCH_KNOWN_ACTIVE is -known-active (0: none); unset,
		// its default.
		if os.Getenv("HERALD_BENCH_KNOWN_ACTIVE") != "0" {
			cfg.Cache.KnownActive = envInt(b, "HERALD_BENCH_KNOWN_ACTIVE", rediscache.DefaultKnownActive)
		}
		// HERALD_BENCH_AUTOPIPELINE=1 is -redis-autopipeline-reads.
		cfg.Cache.AutoPipelineReads = os.Getenv("HERALD_BENCH_AUTOPIPELINE") == "1"
		cfg.Cache.Login.User, cfg.Cache.Login.PasswordFile = testenv.RedisLogin(b)
		cfg.Node.Namespace = fmt.Sprintf("%s%d", name, time.Now().UnixNano())
		b.Cleanup(func() { dropRedisPrefix(b, redisAddr, cfg.Node.Namespace+":") })
	}
	return startSystemWith(b, cfg)
}

// importer is the Pebble store's bulk graph load.
type importer interface {
	ImportFollows(ctx context.Context, followee string, followers []string) (int, error)
}

func benchLag(b *testing.B, followers, posts int) {
	ctx := context.Background()
	redisAddr := ""
	if os.Getenv("HERALD_BENCH_CACHE") == "redis" {
		redisAddr = testenv.Redis(b)
	}
	conn, n, stop := startBenchNode(b, "bench", redisAddr)
	defer stop()

	const author = "author"
	users := make([]string, followers)
	for i := range users {
		users[i] = fmt.Sprintf("f%07d", i)
	}
	setup := time.Now()
	if imp, ok := n.Backends.Graph.(importer); ok {
		if _, err := imp.ImportFollows(ctx, author, users); err != nil {
			b.Fatal(err)
		}
	} else {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(64)
		for _, u := range users {
			g.Go(func() error { _, err := n.Backends.Graph.Follow(gctx, u, author); return err })
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	// What a first read does: the timeline exists, so fan-out writes it;
	// with HERALD_LAG_FULL_TIMELINES, full to the cap, as a reader's who
	// follows many. The IDs sort below every real post's.
	var history []feed.PostID
	if fullTimelines(b) {
		history = make([]feed.PostID, n.Backends.Timelines.Cap())
		for i := range history {
			history[i] = feed.PostID(len(history) - i)
		}
	}
	// On Redis the full timelines are copied (storeByCopy) once every
	// user is active.
	first := history
	if redisAddr != "" {
		first = nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for _, u := range users {
		g.Go(func() error { return n.Backends.Timelines.Store(gctx, u, first) })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	if redisAddr != "" && len(history) > 0 {
		opts := testenv.RedisOptions(b)
		opts.Addr = redisAddr
		rdb := redis.NewClient(opts)
		storeByCopy(b, n, rdb, users, history)
		rdb.Close()
	}
	b.Logf("%d followers and active timelines of %d entries set up in %v", followers, len(history), time.Since(setup).Round(time.Millisecond))

	const samples = 32
	var watch []string
	for i := range samples {
		watch = append(watch, users[i*followers/samples])
	}
	watch = append(watch, users[followers-1])

	pc := feedv1.NewPostServiceClient(conn)
	var lags, full, delivered []time.Duration
	base := counter(b, n, "herald_fanout_deliveries_total")
	b.ResetTimer()
	for i := range posts {
		resp, err := pc.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: author, Text: fmt.Sprintf("post %d", i)})
		if err != nil {
			b.Fatal(err)
		}
		id, err := feed.ParsePostID(resp.GetPost().GetPostId())
		if err != nil {
			b.Fatal(err)
		}
		created := resp.GetPost().GetCreateTime().AsTime()
		seen, err := waitVisible(ctx, n, watch, id, created, 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		lags = append(lags, seen...)
		full = append(full, slices.Max(seen))
		// Every follower's delivery, not only the watched ones': the
		// fan-out's counter reaches this post's share. Polled every
		// 25 ms (gathering runs every collector), so it is late by up
		// to that.
		awaitFanout(b, n, 0, base+float64((i+1)*followers), 5*time.Minute)
		delivered = append(delivered, time.Since(created))
		if followers >= 100_000 {
			b.Logf("post %d: all %d delivered %v after its creation", i+1, followers, delivered[len(delivered)-1].Round(time.Millisecond))
		}
	}
	b.StopTimer()
	slices.Sort(delivered)
	slices.Sort(lags)
	slices.Sort(full)
	b.ReportMetric(ms(quantile(lags, 0.50)), "p50-ms")
	b.ReportMetric(ms(quantile(lags, 0.99)), "p99-ms")
	b.ReportMetric(ms(quantile(full, 0.50)), "all-visible-p50-ms")
	b.ReportMetric(ms(slices.Max(full)), "all-visible-max-ms")
	b.ReportMetric(ms(quantile(delivered, 0.50)), "all-delivered-p50-ms")
	if redisAddr != "" {
		// Herald's figure is a post's all-delivered time: until the
		// fan-out had written it to every follower (the watched ones
		// may see it sooner, since chunks land in any order); its
		// median over the posts is what million_s is in bench-lag.sh.
		// The baseline starts once every delivery is in, so the two
		// never overlap. backend.OpenCache prefixes every key with the
		// namespace and a colon (but for the default namespace, which
		// the benchmark node never has).
		raw := zaddBaseline(b, redisAddr, n.Node.Namespace()+":", users, watch)
		b.ReportMetric(raw.Seconds(), "zadd-s")
		b.ReportMetric(quantile(delivered, 0.50).Seconds()/raw.Seconds(), "ratio")
	}
	b.ReportMetric(0, "ns/op")
}

// baselineMember is the k-th member zaddBaseline writes: 8 bytes like a
// post ID's member (its complement, see rediscache), but below every one
// Herald writes, where a new post goes (a post ID is a positive int64,
// whose complement starts with a set bit), so that it is a new member of
// every timeline, inserted where each post was.
func baselineMember(k int) string { return "\x00\x00\x00\x00\x00\x00\x00" + string(rune(k)) }

// zaddBaseline times the raw Redis writes that delivering one post to
// users takes: ZADD <timeline> 0 <member> into each user's timeline key
// under prefix (rediscache.HomeTimelineKey), the very
// keys Herald wrote, so they have the same size and encoding. The keys go
// in random order, pipelined 4,000 to a pipeline (as Twitter pipelined
// 4,000 destinations at a time), and it returns the fastest of three
// rounds, with 4, 8 and 16 pipelines at once (each round a new member):
// with one, Redis would sit idle while the client encodes the next
// pipeline and reads the replies, and which number is best depends on how
// busy the client's core is. It first checks that the watched users' keys
// exist, which says the key names are Herald's. The members stay in the
// timelines until the namespace's keys go at cleanup.
func zaddBaseline(b *testing.B, addr, prefix string, users, watch []string) time.Duration {
	ctx := context.Background()
	opts := testenv.RedisOptions(b)
	// The same client and protocol as Herald's (backend.OpenCache).
	opts.Addr, opts.Protocol = addr, 2
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	key := func(u string) string { return rediscache.HomeTimelineKey(prefix, u) }

	watched := make([]string, len(watch))
	for i, u := range watch {
		watched[i] = key(u)
	}
	if got, err := rdb.Exists(ctx, watched...).Result(); err != nil {
		b.Fatalf("redis %s: exists: %v", addr, err)
	} else if got != int64(len(watched)) {
		b.Fatalf("%d of the %d watched timelines exist under %q; want all: the baseline's keys are not Herald's", got, len(watched), rediscache.HomeTimelineKey(prefix, "..."))
	}

	keys := make([]string, len(users))
	for i, j := range rand.New(rand.NewPCG(1, 2)).Perm(len(users)) {
		keys[i] = key(users[j])
	}
	const perPipeline = 4000
	best := time.Duration(0)
	for k, pipelines := range []int{4, 8, 16} {
		member := baselineMember(k)
		start := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(pipelines)
		for batch := range slices.Chunk(keys, perPipeline) {
			g.Go(func() error {
				pipe := rdb.Pipeline()
				for _, key := range batch {
					pipe.ZAdd(gctx, key, redis.Z{Member: member})
				}
				_, err := pipe.Exec(gctx)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatalf("redis %s: baseline ZADDs: %v", addr, err)
		}
		elapsed := time.Since(start)
		b.Logf("raw ZADD baseline: %d timelines, %d a pipeline, %d pipelines at once, in %v", len(keys), perPipeline, pipelines, elapsed.Round(time.Millisecond))
		if best == 0 || elapsed < best {
			best = elapsed
		}
	}
	return best
}

// fullTimelines says whether HERALD_LAG_FULL_TIMELINES (a boolean, as
// strconv.ParseBool reads it; default false) asks for the followers'
// timelines full to the cap before the posts, rather than empty.
func fullTimelines(b *testing.B) bool {
	s := os.Getenv("HERALD_LAG_FULL_TIMELINES")
	if s == "" {
		return false
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		b.Fatalf("HERALD_LAG_FULL_TIMELINES=%q: want a boolean", s)
	}
	return v
}

// waitVisible polls the watched users' cached timelines until each has id
// at the top, and returns each one's lag from created.
func waitVisible(ctx context.Context, n *allinone.System, watch []string, id feed.PostID, created time.Time, limit time.Duration) ([]time.Duration, error) {
	lags := make([]time.Duration, len(watch))
	var wg sync.WaitGroup
	errs := make([]error, len(watch))
	for i, u := range watch {
		wg.Go(func() {
			deadline := time.Now().Add(limit)
			for time.Now().Before(deadline) {
				ids, ok, err := n.Backends.Timelines.Range(ctx, u, 0, 1)
				if err != nil {
					errs[i] = err
					return
				}
				if ok && len(ids) > 0 && ids[0] >= id {
					lags[i] = time.Since(created)
					return
				}
				time.Sleep(pollGap(time.Since(created)))
			}
			errs[i] = fmt.Errorf("post %d not in %s's timeline after %v", id, u, limit)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return lags, nil
}

// pollGap is how long waitVisible sleeps between two reads of a watched
// timeline, a post's age after its creation: a hundredth of it, from 1 ms
// to 20 ms, so each lag is read to about 1 %. Polling every millisecond
// throughout, the watchers of a 1,000,000-follower post read Redis some
// 30,000 times a second while the fan-out wrote, and slowed what they
// measured.
func pollGap(age time.Duration) time.Duration {
	return min(max(age/100, time.Millisecond), 20*time.Millisecond)
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func dropRedisPrefix(tb testing.TB, addr, prefix string) {
	opts := testenv.RedisOptions(tb)
	opts.Addr = addr
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 10_000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			rdb.Unlink(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		rdb.Unlink(ctx, keys...)
	}
	if err := iter.Err(); err != nil {
		tb.Logf("drop redis keys %s*: %v", prefix, err)
	}
}
