package clustertest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
)

// These benchmarks measure single-call latency through the etcd resolver
// against a cluster of two instances per service over real Redis and
// Cassandra. Besides ns/op they report p50 and p99, since a mean hides the
// tail. Run them with `make bench-cluster`; docs/benchmarks.md has figures.

// latencies collects per-call durations and reports percentiles.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	slices.Sort(l)
	if len(l) == 0 {
		return
	}
	at := func(q float64) float64 { return float64(l[int(q*float64(len(l)-1))].Microseconds()) / 1000 }
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkGetHomeTimelineWarm reads the first page (20 posts) of a home
// timeline whose cache entry is warm: 20 followed authors, 5 posts each.
func BenchmarkGetHomeTimelineWarm(b *testing.B) {
	c := startCluster(b)
	post := feedv1.NewPostServiceClient(c.Dial(b, "post"))
	graph := feedv1.NewGraphServiceClient(c.Dial(b, "graph"))
	tl := feedv1.NewTimelineServiceClient(c.Dial(b, "timeline"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const reader = "bench_reader"
	for a := range 20 {
		author := fmt.Sprintf("bench_author_%d", a)
		if _, err := graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: reader, FolloweeId: author}); err != nil {
			b.Fatal(err)
		}
		for i := range 5 {
			if _, err := post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: author, Text: fmt.Sprintf("post %d", i)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Wait until fan-out has filled the timeline, which also warms it.
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := tl.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: reader, PageSize: 100})
		if err == nil && len(resp.Posts) == 100 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("timeline not filled after 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lat latencies
	for b.Loop() {
		start := time.Now()
		resp, err := tl.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: reader})
		lat = append(lat, time.Since(start))
		if err != nil || len(resp.Posts) != 20 {
			b.Fatalf("GetHomeTimeline = %d posts, %v; want 20", len(resp.GetPosts()), err)
		}
	}
	lat.report(b)
}

// BenchmarkCreatePost creates posts one at a time, each durable in
// Cassandra (LOCAL_QUORUM) and published to JetStream before it returns.
func BenchmarkCreatePost(b *testing.B) {
	c := startCluster(b)
	post := feedv1.NewPostServiceClient(c.Dial(b, "post"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "bench_writer", Text: "warm-up"}); err != nil {
		b.Fatal(err)
	}
	var lat latencies
	i := 0
	for b.Loop() {
		i++
		start := time.Now()
		// Round-robin over 200 authors: one author at this rate would
		// run into the per-user rate limit on posts.
		author := fmt.Sprintf("bench_writer_%d", i%200)
		_, err := post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: author, Text: "benchmark post", IdempotencyKey: fmt.Sprintf("k%d", i)})
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	lat.report(b)
}
