package systemtest

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

func openStream(t *testing.T, c *Client, user string) <-chan *feedv1.Post {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := c.Timeline.StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: user})
	if err != nil {
		t.Fatalf("StreamHomeTimeline(%s) error = %v; want nil", user, err)
	}
	out := make(chan *feedv1.Post, 64)
	go func() {
		defer close(out)
		for {
			resp, err := st.Recv()
			if err != nil {
				if err != io.EOF && status.Code(err) != codes.Canceled {
					out <- &feedv1.Post{Text: "stream error: " + err.Error()}
				}
				return
			}
			out <- resp.GetPost()
		}
	}()
	return out
}

// awaitPost reads posts from ch until one has id, for up to d, and returns
// the posts it skipped on the way.
func awaitPost(t *testing.T, ch <-chan *feedv1.Post, id string, d time.Duration) (*feedv1.Post, []*feedv1.Post) {
	t.Helper()
	timeout := time.After(d)
	var skipped []*feedv1.Post
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended before post %s arrived; got %v first", id, skipped)
			}
			if p.GetPostId() == id {
				return p, skipped
			}
			skipped = append(skipped, p)
		case <-timeout:
			t.Fatalf("stream did not deliver post %s within %v; got %v", id, d, skipped)
		}
	}
}

func testLiveStream(t *testing.T, c *Client) {
	const a, b, stranger, late = "live_a", "live_b", "live_stranger", "live_late"
	c.Follow(t, b, a)
	ch := openStream(t, c, b)

	// The server subscribes the stream after the call returns; post until
	// one arrives, which shows the stream is live.
	live := false
	deadline := time.Now().Add(waitfor.Deadline)
	for i := 0; !live && time.Now().Before(deadline); i++ {
		c.CreatePost(t, a, fmt.Sprintf("ping %d", i), "")
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatalf("stream of %s ended while waiting for it to go live", b)
			}
			if got.GetAuthorId() != a {
				t.Fatalf("stream of %s delivered %v while only %s posted; want a post by %s", b, got, a, a)
			}
			live = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !live {
		t.Fatalf("stream of %s delivered no post by %s within %v", b, a, waitfor.Deadline)
	}

	t.Run("FolloweePost", func(t *testing.T) {
		noise := c.CreatePost(t, stranger, "not followed", "")
		want := c.CreatePost(t, a, "live post", "")
		got, skipped := awaitPost(t, ch, want.GetPostId(), waitfor.Deadline)
		if got.GetText() != "live post" || got.GetAuthorId() != a || !got.GetCreateTime().AsTime().Equal(want.GetCreateTime().AsTime()) {
			t.Errorf("streamed post = %v; want %v", got, want)
		}
		for _, p := range skipped {
			if p.GetPostId() == noise.GetPostId() || p.GetAuthorId() != a {
				t.Errorf("stream of %s delivered %v; want only posts by accounts it follows", b, p)
			}
		}
	})

	t.Run("OwnPost", func(t *testing.T) {
		want := c.CreatePost(t, b, "my own live post", "")
		got, _ := awaitPost(t, ch, want.GetPostId(), waitfor.Deadline)
		if got.GetText() != want.GetText() || got.GetAuthorId() != b {
			t.Errorf("streamed own post = %v; want %v", got, want)
		}
	})

	t.Run("FollowWhileStreaming", func(t *testing.T) {
		c.Follow(t, b, late)
		want := c.CreatePost(t, late, "followed after the stream opened", "")
		got, _ := awaitPost(t, ch, want.GetPostId(), waitfor.Deadline)
		if got.GetAuthorId() != late {
			t.Errorf("streamed post = %v; want %v", got, want)
		}
	})
}
