package memcache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
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
