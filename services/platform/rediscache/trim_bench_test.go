package rediscache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/testenv"
)

// BenchmarkAddFullTrims compares, on the same Redis in one run, the
// fan-out's inserts into full 800-entry timelines with a trim for one
// insert in trimEvery (today's) and in four times as many: the Redis CPU
// per delivery (redis-µs/delivery) and the bytes per visible entry the
// timelines hold at the end (B/entry).
func BenchmarkAddFullTrims(b *testing.B) {
	const users, chunk = 2000, 1000
	for _, every := range []int{trimEvery, 4 * trimEvery} {
		b.Run(fmt.Sprintf("trim-every=%d", every), func(b *testing.B) {
			ctx := context.Background()
			rdb := redis.NewClient(testenv.RedisOptions(b))
			prefix := fmt.Sprintf("benchtrim:%d:%d:", time.Now().UnixNano(), every)
			b.Cleanup(func() {
				iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
				for iter.Next(ctx) {
					rdb.Unlink(ctx, iter.Val())
				}
				rdb.Close()
			})
			c := New(rdb, Options{Prefix: prefix, ActiveWindow: time.Hour})
			c.trimEvery = every
			old := make([]feed.PostID, c.Cap())
			for i := range old {
				old[i] = feed.PostID(i + 1)
			}
			for u := range users {
				if err := c.Store(ctx, fmt.Sprint("u", u), old); err != nil {
					b.Fatal(err)
				}
			}
			post := feed.PostID(1 << 40)
			entries := make([]cache.Entry, 0, chunk)
			next := 0
			cpu := serverCPU(b, rdb)
			for b.Loop() {
				entries = append(entries, cache.Entry{User: fmt.Sprint("u", next%users), Post: post})
				if next++; next%users == 0 {
					post++
				}
				if len(entries) == chunk {
					if err := c.Add(ctx, entries); err != nil {
						b.Fatal(err)
					}
					entries = entries[:0]
				}
			}
			b.ReportMetric((serverCPU(b, rdb)-cpu)*1e6/float64(b.N), "redis-µs/delivery")
			var bytes int64
			for u := range 100 {
				n, err := c.MemoryUsage(ctx, fmt.Sprint("u", u))
				if err != nil {
					b.Fatal(err)
				}
				bytes += n
			}
			b.ReportMetric(float64(bytes)/float64(100*c.Cap()), "B/entry")
		})
	}
}

// serverCPU is Redis's used_cpu_user + used_cpu_sys, in seconds.
func serverCPU(b *testing.B, rdb *redis.Client) float64 {
	b.Helper()
	info, err := rdb.InfoMap(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, k := range []string{"used_cpu_user", "used_cpu_sys"} {
		var f float64
		fmt.Sscan(info["CPU"][k], &f)
		total += f
	}
	return total
}
