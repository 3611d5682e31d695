package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-feed/herald/services/fanout/internal/fanout"
	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/memcache"
	"github.com/herald-feed/herald/services/platform/pebblestore"
)

// errBoom is the failure the fakes inject.
var errBoom = errors.New("boom")

// created is the creation time of every post in these tests.
var created = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// fakeFollowers pages over fixed follower lists, in the order given.
type fakeFollowers struct {
	mu        sync.Mutex
	lists     map[string][]string
	pageSizes []int
	err       error
}

func (f *fakeFollowers) EachFollowerPage(ctx context.Context, user string, pageSize int, fn func([]string) error) error {
	f.mu.Lock()
	list := slices.Clone(f.lists[user])
	f.pageSizes = append(f.pageSizes, pageSize)
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if pageSize <= 0 {
		return fmt.Errorf("fakeFollowers: page size %d", pageSize)
	}
	for i := 0; i < len(list); i += pageSize {
		if err := fn(list[i:min(i+pageSize, len(list))]); err != nil {
			return err
		}
	}
	return nil
}

// fakePublisher records what it is asked to publish. With err set, the
// failAt-th call (1-based; 0: every call) fails and records nothing. With
// dedupe set it drops, as JetStream does within its window, an event whose
// DedupeID it has stored before, and reports success.
type fakePublisher struct {
	mu      sync.Mutex
	events  []event.Event
	calls   int
	err     error
	failAt  int
	dedupe  bool
	seen    map[string]bool
	dropped []event.Event
}

func (p *fakePublisher) Publish(_ context.Context, ev event.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.err != nil && (p.failAt == 0 || p.failAt == p.calls) {
		return p.err
	}
	if id := ev.DedupeID(); p.dedupe && id != "" {
		if p.seen[id] {
			p.dropped = append(p.dropped, ev)
			return nil
		}
		if p.seen == nil {
			p.seen = map[string]bool{}
		}
		p.seen[id] = true
	}
	p.events = append(p.events, ev)
	return nil
}

// take returns the events published so far and forgets them.
func (p *fakePublisher) take() []event.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	evs := p.events
	p.events = nil
	return evs
}

// faultyTimelines passes calls through unless told to fail. beforeAdd, if
// set, runs once at the start of the next Add: another instance's work
// landing between the engine's checks and its write.
type faultyTimelines struct {
	fanout.Timelines
	addErr, removeErr error
	adds              int
	beforeAdd         func()
	beforeRemove      func() // as beforeAdd, for Remove
}

func (f *faultyTimelines) Add(ctx context.Context, es []cache.Entry) error {
	f.adds++
	if hook := f.beforeAdd; hook != nil {
		f.beforeAdd = nil
		hook()
	}
	if f.addErr != nil {
		return f.addErr
	}
	return f.Timelines.Add(ctx, es)
}

func (f *faultyTimelines) Remove(ctx context.Context, es []cache.Entry) error {
	if hook := f.beforeRemove; hook != nil {
		f.beforeRemove = nil
		hook()
	}
	if f.removeErr != nil {
		return f.removeErr
	}
	return f.Timelines.Remove(ctx, es)
}

// faultyGraph passes calls through unless told to fail; count, if set,
// overrides the follower count.
type faultyGraph struct {
	fanout.Graph
	countErr, followingErr error
	count                  map[string]int64
	countCalls             int
}

func (g *faultyGraph) FollowerCount(ctx context.Context, user string) (int64, error) {
	g.countCalls++
	if g.countErr != nil {
		return 0, g.countErr
	}
	if n, ok := g.count[user]; ok {
		return n, nil
	}
	return g.Graph.FollowerCount(ctx, user)
}

func (g *faultyGraph) IsFollowing(ctx context.Context, follower, followee string) (bool, error) {
	if g.followingErr != nil {
		return false, g.followingErr
	}
	return g.Graph.IsFollowing(ctx, follower, followee)
}

// faultyPosts records the limits asked for and can fail.
type faultyPosts struct {
	fanout.Posts
	err    error
	limits []int
}

func (p *faultyPosts) ListByAuthor(ctx context.Context, author string, before feed.PostID, limit int) ([]feed.Post, error) {
	p.limits = append(p.limits, limit)
	if p.err != nil {
		return nil, p.err
	}
	return p.Posts.ListByAuthor(ctx, author, before, limit)
}

type faultyUnfollows struct {
	cache.Unfollows
	markErr, clearErr, queryErr error
}

func (u *faultyUnfollows) MarkUnfollowed(ctx context.Context, follower, followee string) error {
	if u.markErr != nil {
		return u.markErr
	}
	return u.Unfollows.MarkUnfollowed(ctx, follower, followee)
}

func (u *faultyUnfollows) ClearUnfollowed(ctx context.Context, follower, followee string) error {
	if u.clearErr != nil {
		return u.clearErr
	}
	return u.Unfollows.ClearUnfollowed(ctx, follower, followee)
}

func (u *faultyUnfollows) Unfollowed(ctx context.Context, followee string, followers []string) ([]bool, error) {
	if u.queryErr != nil {
		return nil, u.queryErr
	}
	return u.Unfollows.Unfollowed(ctx, followee, followers)
}

type faultyCelebs struct {
	inner           cache.Celebrities
	listErr, addErr error
}

func (c *faultyCelebs) AddCelebrity(ctx context.Context, author string) error {
	if c.addErr != nil {
		return c.addErr
	}
	return c.inner.AddCelebrity(ctx, author)
}

func (c *faultyCelebs) Celebrities(ctx context.Context) (map[string]bool, error) {
	if c.listErr != nil {
		return nil, c.listErr
	}
	return c.inner.Celebrities(ctx)
}

// rig is an engine over real in-process adapters, each behind a wrapper
// that a test can make fail.
type rig struct {
	t   *testing.T
	ctx context.Context

	store     *pebblestore.Store
	home      *memcache.Cache // home timelines
	recent    *memcache.Cache // authors' recent posts
	celebs    *memcache.Celebs
	unfollows *memcache.Unfollows
	followers *fakeFollowers
	pub       *fakePublisher
	reg       *prometheus.Registry

	homeW   *faultyTimelines
	recentW *faultyTimelines
	graphW  *faultyGraph
	postsW  *faultyPosts
	unfW    *faultyUnfollows
	celebW  *faultyCelebs

	eng *fanout.Engine
}

// newRig returns a rig whose home timelines are home (nil: memcache.New,
// which creates any timeline it is written to).
func newRig(t *testing.T, cfg fanout.Config, home *memcache.Cache) *rig {
	t.Helper()
	s, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatalf("pebblestore.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if home == nil {
		home = memcache.New(0)
	}
	r := &rig{
		t: t, ctx: context.Background(),
		store: s, home: home, recent: memcache.New(0),
		celebs: memcache.NewCelebs(), unfollows: memcache.NewUnfollows(),
		followers: &fakeFollowers{lists: map[string][]string{}},
		pub:       &fakePublisher{},
		reg:       prometheus.NewRegistry(),
	}
	r.homeW = &faultyTimelines{Timelines: r.home}
	r.recentW = &faultyTimelines{Timelines: r.recent}
	r.graphW = &faultyGraph{Graph: s}
	r.postsW = &faultyPosts{Posts: s}
	r.unfW = &faultyUnfollows{Unfollows: r.unfollows}
	r.celebW = &faultyCelebs{inner: r.celebs}
	r.eng = fanout.New(cfg, r.deps(), r.reg)
	return r
}

func (r *rig) deps() fanout.Deps {
	return fanout.Deps{
		Publisher:   r.pub,
		Followers:   r.followers,
		Timelines:   r.homeW,
		Recent:      r.recentW,
		Posts:       r.postsW,
		Graph:       r.graphW,
		Celebrities: r.celebW,
		Unfollows:   r.unfW,
	}
}

// follow makes each of followers follow followee, in the store and in the
// follower list the engine pages through.
func (r *rig) follow(followee string, followers ...string) {
	r.t.Helper()
	if _, err := r.store.ImportFollows(r.ctx, followee, followers); err != nil {
		r.t.Fatalf("ImportFollows(%s): %v", followee, err)
	}
	r.followers.mu.Lock()
	r.followers.lists[followee] = append(r.followers.lists[followee], followers...)
	r.followers.mu.Unlock()
}

// unfollow removes follower from followee's followers, in the store and
// in the follower list.
func (r *rig) unfollow(follower, followee string) {
	r.t.Helper()
	if _, err := r.store.Unfollow(r.ctx, follower, followee); err != nil {
		r.t.Fatalf("Unfollow(%s, %s): %v", follower, followee, err)
	}
	r.followers.mu.Lock()
	r.followers.lists[followee] = slices.DeleteFunc(slices.Clone(r.followers.lists[followee]), func(u string) bool { return u == follower })
	r.followers.mu.Unlock()
}

// post stores posts by author in the durable store.
func (r *rig) post(author string, ids ...feed.PostID) {
	r.t.Helper()
	for _, id := range ids {
		p := feed.Post{ID: id, Author: author, Text: "post " + id.String(), Created: created}
		if _, _, err := r.store.CreatePost(r.ctx, p, ""); err != nil {
			r.t.Fatalf("CreatePost(%d): %v", id, err)
		}
	}
}

// handle handles ev and fails the test on an error.
func (r *rig) handle(ev event.Event) {
	r.t.Helper()
	if err := r.eng.Handle(r.ctx, ev); err != nil {
		r.t.Fatalf("Handle(%#v) = %v; want nil", ev, err)
	}
}

// postCreated returns the PostCreated event of post id by author.
func postCreated(author string, id feed.PostID) event.PostCreated {
	return event.PostCreated{Post: id, Author: author, Created: created}
}

// timeline returns user's timeline in c, newest first. It first marks the
// timeline complete, as a reader's rebuild would (Store with no IDs adds
// none), since memcache reports a timeline built only by Adds as missing.
func timeline(t *testing.T, c *memcache.Cache, user string) []feed.PostID {
	t.Helper()
	ctx := context.Background()
	if err := c.Store(ctx, user, nil); err != nil {
		t.Fatalf("Store(%s): %v", user, err)
	}
	ids, ok, err := c.Range(ctx, user, 0, c.Cap())
	if err != nil || !ok {
		t.Fatalf("Range(%s) = %v, %v, %v; want a complete timeline", user, ids, ok, err)
	}
	return ids
}

// timelines returns the home timelines of users.
func (r *rig) timelines(users ...string) map[string][]feed.PostID {
	r.t.Helper()
	out := make(map[string][]feed.PostID, len(users))
	for _, u := range users {
		out[u] = timeline(r.t, r.home, u)
	}
	return out
}

// want asserts that user's home timeline is exactly ids, newest first.
func (r *rig) want(user string, ids ...feed.PostID) {
	r.t.Helper()
	if got := timeline(r.t, r.home, user); !slices.Equal(got, ids) {
		r.t.Errorf("timeline(%s) = %v; want %v", user, got, ids)
	}
}

// wantRecent asserts that author's recent-post list is exactly ids.
func (r *rig) wantRecent(author string, ids ...feed.PostID) {
	r.t.Helper()
	if got := timeline(r.t, r.recent, author); !slices.Equal(got, ids) {
		r.t.Errorf("recent(%s) = %v; want %v", author, got, ids)
	}
}

func (r *rig) isCeleb(author string) bool {
	r.t.Helper()
	set, err := r.celebs.Celebrities(r.ctx)
	if err != nil {
		r.t.Fatalf("Celebrities: %v", err)
	}
	return set[author]
}

// metric returns the value of the counter named name (with label
// mode=mode if mode != ""), or of the sample count of the histogram of
// that name; 0 if absent.
func (r *rig) metric(name, mode string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if mode != "" {
				match := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "mode" && lp.GetValue() == mode {
						match = true
					}
				}
				if !match {
					continue
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// users returns n user IDs prefix0, prefix1, ...
func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
