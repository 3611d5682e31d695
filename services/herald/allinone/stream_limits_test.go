package allinone_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestStreamLimitFlags: the timeline's stream limits are flags of the
// all-in-one, each with its variable, and a limit below 1 is refused.
func TestStreamLimitFlags(t *testing.T) {
	for _, tc := range []struct {
		name             string
		env              map[string]string
		args             []string
		perUser, overall int
		wantErr          string
	}{
		{"defaults", nil, nil, 8, 10000, ""},
		{"variable and flag", map[string]string{"HERALD_MAX_STREAMS_PER_USER": "3"}, []string{"-max-streams", "50"}, 3, 50, ""},
		{"flag over variable", map[string]string{"HERALD_MAX_STREAMS": "7"}, []string{"-max-streams", "9", "-max-streams-per-user", "2"}, 2, 9, ""},
		{"negative", nil, []string{"-max-streams-per-user", "-1"}, 0, 0, "-max-streams-per-user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flagenv.New("herald", func(k string) string { return tc.env[k] }, io.Discard)
			c := allinone.Bind(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := c.Check()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Check() = %v; want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Timeline.MaxStreamsPerUser != tc.perUser || c.Timeline.MaxStreams != tc.overall {
				t.Errorf("max streams per user, per instance = %d, %d; want %d, %d", c.Timeline.MaxStreamsPerUser, c.Timeline.MaxStreams, tc.perUser, tc.overall)
			}
		})
	}
}

// TestStreamPerUserLimit: past -max-streams-per-user, StreamHomeTimeline
// fails with RESOURCE_EXHAUSTED naming the limit; closing a stream frees
// its slot.
func TestStreamPerUserLimit(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Timeline.MaxStreamsPerUser = 2
	conn, sys, _ := startSystemWith(t, cfg)
	c := systemtest.NewClient(conn, conn, conn)
	tl := feedv1.NewTimelineServiceClient(conn)
	openGauge := func() (bool, any) {
		mfs, err := sys.Node.Metrics.Gather()
		if err != nil {
			return false, err
		}
		for _, mf := range mfs {
			if mf.GetName() == "herald_timeline_streams_open" {
				return true, mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return false, "no herald_timeline_streams_open"
	}
	waitOpen := func(n float64) {
		t.Helper()
		waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("%v streams open", n), func() (bool, any) {
			ok, v := openGauge()
			return ok && v == n, v
		})
	}
	const user = "limit_a"
	type stream struct {
		posts  chan *feedv1.Post
		err    chan error
		cancel context.CancelFunc
	}
	open := func() *stream {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		st, err := tl.StreamHomeTimeline(ctx, &feedv1.StreamHomeTimelineRequest{UserId: user})
		if err != nil {
			t.Fatalf("StreamHomeTimeline(%s): %v", user, err)
		}
		s := &stream{posts: make(chan *feedv1.Post, 64), err: make(chan error, 1), cancel: cancel}
		go func() {
			for {
				resp, err := st.Recv()
				if err != nil {
					s.err <- err
					return
				}
				s.posts <- resp.GetPost()
			}
		}()
		return s
	}

	first, second := open(), open()
	waitOpen(2)
	third := open()
	select {
	case err := <-third.err:
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "per-user stream limit") || !strings.Contains(err.Error(), "2 open streams") {
			t.Errorf("third stream of %s = %v; want RESOURCE_EXHAUSTED naming the per-user stream limit, 2", user, err)
		}
	case p := <-third.posts:
		t.Fatalf("third stream of %s sent %v; want RESOURCE_EXHAUSTED", user, p)
	case <-time.After(waitfor.Deadline):
		t.Fatalf("third stream of %s not refused within %v", user, waitfor.Deadline)
	}

	first.cancel()
	waitOpen(1)
	again := open()
	waitOpen(2)
	// The new stream is live: one of the user's own posts reaches it.
	deadline := time.Now().Add(waitfor.Deadline)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the stream opened in the freed slot delivered nothing within %v", waitfor.Deadline)
		}
		c.CreatePost(t, user, fmt.Sprintf("ping %d", i), "")
		select {
		case err := <-again.err:
			t.Fatalf("the stream opened in the freed slot ended with %v; want it open", err)
		case <-again.posts:
			return
		case <-second.err:
			t.Fatalf("the second stream ended; want it open")
		case <-time.After(200 * time.Millisecond):
		}
	}
}
