package allinone_test

import (
	"context"
	"log/slog"
	"testing"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/ratelimit"
)

// BenchmarkAuthOverhead sets a warm GetHomeTimeline and a CreatePost of
// the all-in-one with authentication on beside the same calls with
// -auth=off, in one run: the cost of verifying a token on every call
// (and, for the client, of sending one). Rate limits are off on both, so
// that only authentication differs.
//
//	go test -run '^$' -bench AuthOverhead -benchtime 3000x ./services/herald/allinone
func BenchmarkAuthOverhead(b *testing.B) {
	for _, mode := range []string{"off", "on", "off", "on"} {
		cfg := allinone.Config{
			Node:    node.Config{Name: "bench", ListenAddr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)},
			DataDir: b.TempDir(),
		}
		cfg.Node.Guard.Auth = mode
		cfg.Node.Guard.Limits = map[guard.Class]ratelimit.Limit{} // none
		benchCalls(b, cfg, "auth="+mode)
	}
}

// benchCalls starts the all-in-one with cfg and benchmarks, one call at a
// time, a warm GetHomeTimeline of 20 posts and a CreatePost, as
// GetHomeTimeline/<label> and CreatePost/<label>; then it stops it.
func benchCalls(b *testing.B, cfg allinone.Config, label string) {
	conn, _, stop := startSystemWith(b, cfg)
	defer stop()
	c := systemtest.NewClient(conn, conn, conn)
	c.Follow(b, "bench_reader", "bench_author")
	for range 20 {
		c.CreatePost(b, "bench_author", "a post to read", "")
	}
	c.Home(b, "bench_reader")
	ctx := context.Background()
	b.Run("GetHomeTimeline/"+label, func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: "bench_reader"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CreatePost/"+label, func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "bench_writer", Text: "bench"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
