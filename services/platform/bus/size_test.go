package bus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/tracing"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestBytesPerEvent measures what the event stream keeps per event on the real nats-server
// (file storage): a post.created event, and a fan-out chunk of 1,000 followers (the
// fan-out's default chunk), by the stream's own byte count, headers and per-message overhead
// included, with tracing off and then on (each event then carries its trace context). The
// figures, in docs/benchmarks.md, size the event log's retention in docs/operations.md; the
// bounds only catch an encoding far larger than it should be.
func TestBytesPerEvent(t *testing.T) {
	t.Run("Untraced", func(t *testing.T) {
		tracing.Uninstall()
		bytesPerEvent(t, 0)
	})
	t.Run("Traced", func(t *testing.T) {
		tracing.Install(sdktrace.NewTracerProvider())
		t.Cleanup(tracing.Uninstall)
		// traceparent (55 characters) under its name; the bound allows
		// the stream's header block around it.
		bytesPerEvent(t, 128)
	})
}

// bytesPerEvent is TestBytesPerEvent's measure; headers bounds what the
// events' headers may add.
func bytesPerEvent(t *testing.T, headers float64) {
	const posts, chunks, chunkSize = 1000, 50, 1000
	nc, err := nats.Connect(testenv.NATS(t), testenv.NATSOptions(t)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b := newBusOn(t, nc, fmt.Sprintf("size%08x", rand.Uint32()), nil)
	t.Cleanup(func() {
		for _, s := range []string{b.Stream(), b.deadStream()} {
			_ = b.js.DeleteStream(context.Background(), s)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitfor.Deadline)
	defer cancel()
	streamBytes := func() (msgs, bytes uint64) {
		t.Helper()
		s, err := b.js.Stream(ctx, b.Stream())
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs, info.State.Bytes
	}

	created := time.Now()
	for i := range posts {
		ev := event.PostCreated{Post: feed.PostID(386288747064328192 + i), Author: fmt.Sprintf("author%04d", i%100), Created: created}
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	m1, b1 := streamBytes()
	followers := make([]string, chunkSize)
	for i := range followers {
		followers[i] = fmt.Sprintf("user%06d", i)
	}
	for i := range chunks {
		ev := event.FanoutChunk{Post: feed.PostID(386288747064328192 + i), Author: "author0001", Created: created, Index: uint32(i), Followers: followers}
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	m2, b2 := streamBytes()
	if m1 != posts || m2 != posts+chunks {
		t.Fatalf("the stream holds %d then %d messages; want %d then %d", m1, m2, posts, posts+chunks)
	}
	perPost := float64(b1) / posts
	perChunk := float64(b2-b1) / chunks
	t.Logf("post.created: %.0f B per event; fan-out chunk of %d followers (IDs of %d characters): %.0f B, %.1f B per follower", perPost, chunkSize, len(followers[0]), perChunk, perChunk/chunkSize)
	if perPost < 20 || perPost > 1024+headers {
		t.Errorf("post.created takes %.0f B in the stream; want 20 B to 1 KiB (and %.0f B of headers)", perPost, headers)
	}
	if perFollower := (perChunk - headers) / chunkSize; perFollower < float64(len(followers[0]))-1 || perFollower > 64 {
		t.Errorf("a fan-out chunk takes %.1f B per follower; want from the ID's %d B to 64 B", perFollower, len(followers[0]))
	}
}
