package allinone_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
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
// followers are active: their timelines exist, as after a read.
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
func BenchmarkFanoutMillion(b *testing.B) { benchLag(b, 1_000_000, 3) }

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
	if redisAddr != "" {
		cfg.Cache.Kind, cfg.Cache.Addrs = "redis", []string{redisAddr}
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
	// What a first read does: the timeline exists, so fan-out writes it.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for _, u := range users {
		g.Go(func() error { return n.Backends.Timelines.Store(gctx, u, nil) })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d followers and active timelines set up in %v", followers, time.Since(setup).Round(time.Millisecond))

	const samples = 32
	var watch []string
	for i := range samples {
		watch = append(watch, users[i*followers/samples])
	}
	watch = append(watch, users[followers-1])

	pc := feedv1.NewPostServiceClient(conn)
	var lags, full []time.Duration
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
	}
	b.StopTimer()
	slices.Sort(lags)
	slices.Sort(full)
	b.ReportMetric(ms(quantile(lags, 0.50)), "p50-ms")
	b.ReportMetric(ms(quantile(lags, 0.99)), "p99-ms")
	b.ReportMetric(ms(quantile(full, 0.50)), "all-visible-p50-ms")
	b.ReportMetric(ms(slices.Max(full)), "all-visible-max-ms")
	b.ReportMetric(0, "ns/op")
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
				time.Sleep(time.Millisecond)
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
