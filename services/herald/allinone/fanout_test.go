package allinone_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

func startFanout(t *testing.T, tune func(*allinone.Config)) (*systemtest.Client, *allinone.System) {
	t.Helper()
	cfg := testConfig(t, t.TempDir())
	cfg.Policy.Strategy = feed.Push
	tune(&cfg)
	conn, sys, stop := startSystemWith(t, cfg)
	t.Cleanup(stop)
	return systemtest.NewClient(conn, conn, conn), sys
}

// counter returns the value of the node's counter name (summed over
// labels).
func counter(t testing.TB, sys *allinone.System, name string) float64 {
	t.Helper()
	mfs, err := sys.Node.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

// TestChunkedFanout: a post whose author has more followers than a chunk
// is split into chunk messages, and every follower gets it.
func TestChunkedFanout(t *testing.T) {
	const followers, chunk = 30, 4
	c, n := startFanout(t, func(cfg *allinone.Config) { cfg.Fanout.ChunkSize, cfg.Fanout.Workers = chunk, 4 })
	var fans []string
	for i := range followers {
		fan := fmt.Sprintf("fan_%02d", i)
		fans = append(fans, fan)
		c.Follow(t, fan, "star")
		c.Home(t, fan) // an active user gets pushed writes
	}
	p := c.CreatePost(t, "star", "to every chunk", "")
	for _, fan := range fans {
		c.WaitHome(t, fan, waitfor.Deadline, "the star's post", func(ids []string) bool { return slices.Contains(ids, p.GetPostId()) })
	}
	// 30 followers in chunks of 4 are 8 chunks: the first written by the
	// instance that took the post, 7 published for any instance.
	if got, want := counter(t, n, "herald_fanout_chunks_published_total"), float64((followers+chunk-1)/chunk-1); got != want {
		t.Errorf("herald_fanout_chunks_published_total = %v; want %v", got, want)
	}
	if got := counter(t, n, "herald_fanout_deliveries_total"); got != followers {
		t.Errorf("herald_fanout_deliveries_total = %v; want %d, one per follower", got, followers)
	}
	if got := counter(t, n, "herald_timeline_rebuilds_total"); got != followers {
		t.Errorf("herald_timeline_rebuilds_total = %v; want %d: each follower's first read, and no more", got, followers)
	}
}

// TestActiveWindow: only users who read their timeline within the window
// get pushed writes; the others' timelines are rebuilt on their next read,
// with nothing missing. The cache runs on a clock the test steps, so the
// window passes exactly when the test says, however loaded the machine.
func TestActiveWindow(t *testing.T) {
	const window = time.Hour
	clock := newStepClock()
	c, n := startFanout(t, func(cfg *allinone.Config) { cfg.Cache.ActiveWindow, cfg.CacheClock = window, clock.Now })
	ctx := context.Background()
	c.Follow(t, "reader", "author")
	c.Follow(t, "lurker", "author")
	c.Home(t, "reader") // reader is active; lurker has never read

	waitPushed := func(posts float64) {
		t.Helper()
		waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("fan-out to handle %v posts for 2 followers", posts), func() (bool, any) {
			got := counter(t, n, "herald_fanout_deliveries_total")
			return got >= 2*posts, fmt.Sprintf("herald_fanout_deliveries_total = %v", got)
		})
	}
	cached := func(user string) ([]feed.PostID, bool) {
		t.Helper()
		ids, ok, err := n.Backends.Timelines.Range(ctx, user, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		return ids, ok
	}

	p1 := c.CreatePost(t, "author", "one", "")
	waitPushed(1)
	if ids, ok := cached("reader"); !ok || len(ids) != 1 || ids[0].String() != p1.GetPostId() {
		t.Errorf("reader's cached timeline = %v, %v; want [%s]: an active user gets the push", ids, ok, p1.GetPostId())
	}
	if ids, ok := cached("lurker"); ok {
		t.Errorf("lurker's cached timeline = %v; want none: fan-out must not write an inactive user's timeline", ids)
	}
	if got := c.Home(t, "lurker"); !slices.Equal(got, []string{p1.GetPostId()}) {
		t.Errorf("lurker's first read = %v; want [%s], rebuilt from the store", got, p1.GetPostId())
	}

	// Nobody reads for longer than the window: both timelines expire, and
	// the next post is written to neither.
	clock.Advance(window + time.Second)
	p2 := c.CreatePost(t, "author", "two", "")
	waitPushed(2)
	for _, u := range []string{"reader", "lurker"} {
		if ids, ok := cached(u); ok {
			t.Errorf("%s's cached timeline after a window without reads = %v; want expired", u, ids)
		}
		if got, want := c.Home(t, u), []string{p2.GetPostId(), p1.GetPostId()}; !slices.Equal(got, want) {
			t.Errorf("%s's read after expiry = %v; want %v", u, got, want)
		}
	}
}

// stepClock is a clock that moves only when told to.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func newStepClock() *stepClock { return &stepClock{now: time.Now()} }

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
