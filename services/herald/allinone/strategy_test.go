package allinone_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/herald/modelcheck"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

func startStrategy(t *testing.T, s feed.Strategy, threshold int64) (*systemtest.Client, *allinone.System) {
	t.Helper()
	cfg := testConfig(t, t.TempDir())
	cfg.Policy.Strategy, cfg.Policy.Threshold = s, threshold
	// Chunks of 4 followers: every author with more than 4 followers is
	// fanned out through chunk messages too.
	cfg.Fanout.ChunkSize = 4
	conn, sys, stop := startSystemWith(t, cfg)
	t.Cleanup(stop)
	return suiteClient(t, conn, cfg.DataDir), sys
}

// TestStrategies runs the whole behaviour suite under each fan-out
// strategy: what a client sees must not depend on it. Under hybrid the
// threshold is 2, so the suite's users are a mix of pushed and pulled
// authors, and some cross the threshold while it runs.
func TestStrategies(t *testing.T) {
	for _, s := range []feed.Strategy{feed.Push, feed.Pull, feed.Hybrid} {
		t.Run(string(s), func(t *testing.T) {
			c, _ := startStrategy(t, s, 2)
			systemtest.Run(t, c)
		})
	}
}

// pushed returns how many posts the fan-out pushed and pulled so far.
func pushed(t *testing.T, sys *allinone.System) (push, pull float64) {
	t.Helper()
	mfs, err := sys.Node.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herald_fanout_posts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch m.GetLabel()[0].GetValue() {
			case "push":
				push = m.GetCounter().GetValue()
			case "pull":
				pull = m.GetCounter().GetValue()
			}
		}
	}
	return push, pull
}

// TestCelebrity: a new follower of an author at the threshold sees the
// author's latest post on the first read, and the post was never fanned
// out: it was merged in at read time.
func TestCelebrity(t *testing.T) {
	c, n := startStrategy(t, feed.Hybrid, 3)
	const celeb = "celeb"
	for _, f := range []string{"fan_1", "fan_2", "fan_3"} {
		c.Follow(t, f, celeb)
	}
	p := c.CreatePost(t, celeb, "to all my fans", "")
	// Wait until the fan-out has handled the post, as a pull.
	if !waitfor.True(waitfor.Deadline, waitfor.Interval, func() bool { _, pull := pushed(t, n); return pull == 1 }) {
		push, pull := pushed(t, n)
		t.Fatalf("herald_fanout_posts_total = push %v, pull %v; want the celebrity's post pulled", push, pull)
	}
	if push, _ := pushed(t, n); push != 0 {
		t.Errorf("herald_fanout_posts_total{mode=push} = %v; want 0: nothing was pushed", push)
	}

	c.Follow(t, "new_fan", celeb)
	ctx, cancel := systemtest.RPCContext()
	defer cancel()
	resp, err := c.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: "new_fan"})
	if err != nil {
		t.Fatal(err)
	}
	if got := systemtest.IDs(resp.GetPosts()); len(got) != 1 || got[0] != p.GetPostId() {
		t.Errorf("first read of new_fan's home timeline = %v; want [%s], the celebrity's post", got, p.GetPostId())
	}
	// Existing followers see it too, merged at read time.
	for _, f := range []string{"fan_1", "fan_2", "fan_3"} {
		if got := c.Home(t, f); len(got) != 1 || got[0] != p.GetPostId() {
			t.Errorf("home timeline of %s = %v; want [%s]", f, got, p.GetPostId())
		}
	}
}

// TestModelCheckStrategies runs the fan-out model check under pull, and
// under hybrid with a threshold of 10 followers, so that the heavy tail's
// most-followed authors are pulled at read time while the rest are pushed,
// and follows and unfollows move authors across the threshold.
func TestModelCheckStrategies(t *testing.T) {
	for _, s := range []feed.Strategy{feed.Hybrid, feed.Pull} {
		for _, seed := range modelSeeds {
			t.Run(string(s)+"/"+fmtSeed(seed), func(t *testing.T) {
				c, _ := startStrategy(t, s, 10)
				modelcheck.Run(t, c, modelcheck.Config{Seed: seed, Users: 60, Ops: 400})
			})
		}
	}
	// A one-second active window: timelines expire and are rebuilt
	// throughout the run, racing the fan-out.
	t.Run("hybrid-active-1s", func(t *testing.T) {
		cfg := testConfig(t, t.TempDir())
		cfg.Policy.Threshold, cfg.Fanout.ChunkSize, cfg.Cache.ActiveWindow = 10, 4, time.Second
		conn, _, stop := startSystemWith(t, cfg)
		defer stop()
		modelcheck.Run(t, systemtest.NewClient(conn, conn, conn), modelcheck.Config{Seed: 7, Users: 60, Ops: 400})
	})
}

// TestHistoryPastCap: with caches capped at 10 entries, paging a home
// timeline of 25 posts returns all 25, newest first, with no duplicates:
// pages past the cap continue from the durable store, for pushed timelines
// and pulled recent lists alike.
func TestHistoryPastCap(t *testing.T) {
	for _, s := range []feed.Strategy{feed.Push, feed.Pull} {
		t.Run(string(s), func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			cfg.Policy.Strategy, cfg.Cache.Cap = s, 10
			conn, _, stop := startSystemWith(t, cfg)
			defer stop()
			c := systemtest.NewClient(conn, conn, conn)
			c.Follow(t, "reader", "writer")
			var want []string
			for i := range 25 {
				p := c.CreatePost(t, "writer", "post "+strconv.Itoa(i), "")
				want = append([]string{p.GetPostId()}, want...)
			}
			for _, user := range []string{"reader", "writer"} {
				var got []string
				token := ""
				ok := waitfor.True(waitfor.Deadline, waitfor.Interval, func() bool {
					got, token = nil, ""
					for page := 0; page < 10; page++ {
						ps, next := c.HomePage(t, user, 7, token)
						got = append(got, systemtest.IDs(ps)...)
						if token = next; token == "" {
							break
						}
					}
					return slices.Equal(got, want)
				})
				if !ok {
					t.Errorf("%s: paging %s's home timeline by 7 gave %d posts %v; want the 25 posts %v", s, user, len(got), got, want)
				}
			}
		})
	}
}
