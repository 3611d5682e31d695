package allinone_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/testenv"
)

// BenchmarkCeiling measures Herald's sustained fan-out deliveries per
// second and warm GetHomeTimeline reads per second on the local Redis, for
// deploy/local/bench-ceiling.sh, which sets them beside redis-benchmark's
// raw ZADD, ZREVRANGEBYLEX and MGET on the same Redis in the same run.
// Run it once (-benchtime 1x); sizes come from the environment:
//
//	HERALD_CEILING_USERS      users, all active (default 20000)
//	HERALD_CEILING_AUTHORS    authors (default 4)
//	HERALD_CEILING_FOLLOWERS  followers of each author, drawn from the users (default 9000)
//	HERALD_CEILING_POSTS      posts, spread over the authors (default 100)
//	HERALD_CEILING_READS      seconds of reads (default 10)
//
// The all-in-one runs in process under -strategy push, with embedded etcd
// and NATS, Pebble for posts and the graph, and Redis for timelines.
func BenchmarkCeiling(b *testing.B) {
	addr := testenv.Redis(b)
	users, authors := envInt(b, "HERALD_CEILING_USERS", 20000), envInt(b, "HERALD_CEILING_AUTHORS", 4)
	followers, posts := envInt(b, "HERALD_CEILING_FOLLOWERS", 9000), envInt(b, "HERALD_CEILING_POSTS", 100)
	readFor := time.Duration(envInt(b, "HERALD_CEILING_READS", 10)) * time.Second
	if followers > users {
		b.Fatalf("HERALD_CEILING_FOLLOWERS=%d exceeds HERALD_CEILING_USERS=%d", followers, users)
	}
	ctx := context.Background()
	conn, n, stop := startBenchNode(b, "ceil", addr)
	defer stop()
	opts := testenv.RedisOptions(b)
	opts.Addr = addr
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	// Setup: every user active (an empty, complete timeline, as after a
	// first read); each author followed by a random subset of them.
	rng := rand.New(rand.NewPCG(1, 2))
	user := func(i int) string { return fmt.Sprintf("u%07d", i) }
	type edge struct{ follower, author string }
	var edges []edge
	for a := range authors {
		for _, i := range rng.Perm(users)[:followers] {
			edges = append(edges, edge{user(i), fmt.Sprintf("author%d", a)})
		}
	}
	setup := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i := range users {
		g.Go(func() error { return n.Backends.Timelines.Store(gctx, user(i), nil) })
	}
	for _, e := range edges {
		g.Go(func() error { _, err := n.Backends.Graph.Follow(gctx, e.follower, e.author); return err })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d active users, %d authors × %d followers in %v", users, authors, followers, time.Since(setup).Round(time.Millisecond))

	b.Run("fanout", func(b *testing.B) {
		want := counter(b, n, "herald_fanout_deliveries_total") + float64(posts*followers)
		pc := feedv1.NewPostServiceClient(conn)
		redisCPU, selfCPU := redisCPUSeconds(b, rdb), processCPUSeconds()
		start := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		for i := range posts {
			g.Go(func() error {
				_, err := pc.CreatePost(gctx, &feedv1.CreatePostRequest{AuthorId: fmt.Sprintf("author%d", i%authors), Text: "ceiling " + strconv.Itoa(i)})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		for counter(b, n, "herald_fanout_deliveries_total") < want {
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("deliveries did not reach %v within 5 minutes", want)
			}
			// Gathering runs every collector, /proc reads included: poll
			// rarely enough not to weigh on what is measured.
			time.Sleep(25 * time.Millisecond)
		}
		elapsed := time.Since(start)
		total := float64(posts * followers)
		b.ReportMetric(total/elapsed.Seconds(), "deliveries/s")
		b.ReportMetric(redisCPUSeconds(b, rdb)-redisCPU, "redis-cpu-s")
		b.ReportMetric(processCPUSeconds()-selfCPU, "herald-cpu-s")
		b.ReportMetric(elapsed.Seconds(), "wall-s")
		b.ReportMetric(0, "ns/op")
	})

	b.Run("reads", func(b *testing.B) {
		tc := feedv1.NewTimelineServiceClient(conn)
		const workers = 32
		var (
			mu    sync.Mutex
			lat   []time.Duration
			fails atomic.Int64
			first atomic.Value
		)
		redisCPU, selfCPU := redisCPUSeconds(b, rdb), processCPUSeconds()
		start := time.Now()
		end := start.Add(readFor)
		// Reads start until end; the context only bounds a stuck one.
		rctx, cancel := context.WithDeadline(ctx, end.Add(10*time.Second))
		defer cancel()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 7))
				var mine []time.Duration
				for time.Now().Before(end) {
					t0 := time.Now()
					_, err := tc.GetHomeTimeline(rctx, &feedv1.GetHomeTimelineRequest{UserId: user(r.IntN(users)), PageSize: 20})
					if err != nil {
						fails.Add(1)
						first.CompareAndSwap(nil, err.Error())
						continue
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		if f := fails.Load(); f > 0 {
			b.Errorf("%d reads failed; the first: %v", f, first.Load())
		}
		slices.Sort(lat)
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "reads/s")
		b.ReportMetric(ms(quantile(lat, 0.50)), "p50-ms")
		b.ReportMetric(ms(quantile(lat, 0.99)), "p99-ms")
		b.ReportMetric(redisCPUSeconds(b, rdb)-redisCPU, "redis-cpu-s")
		b.ReportMetric(processCPUSeconds()-selfCPU, "herald-cpu-s")
		b.ReportMetric(0, "ns/op")
	})
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// redisCPUSeconds is Redis's used_cpu_user + used_cpu_sys from INFO cpu.
func redisCPUSeconds(b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return sum
}

// processCPUSeconds is this process's user + system CPU time: the whole
// all-in-one and the benchmark's own client.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
