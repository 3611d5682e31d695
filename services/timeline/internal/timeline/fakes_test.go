package timeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/memcache"
	"github.com/herald-feed/herald/services/platform/pagetoken"
	"github.com/herald-feed/herald/services/platform/pebblestore"
)

// errDown is the cause inside every injected backend failure.
var errDown = errors.New("connection refused")

// fakeFollowing is the graph: user -> followees. It counts its calls, can
// fail, can hold each call until gate is closed, and can run a function
// once, after a call has read the list and before it returns.
type fakeFollowing struct {
	mu    sync.Mutex
	m     map[string][]string
	err   error
	calls int
	gate  chan struct{}
	after func()
}

func newFollowing() *fakeFollowing { return &fakeFollowing{m: make(map[string][]string)} }

func (f *fakeFollowing) Following(ctx context.Context, user string, max int) ([]string, error) {
	f.mu.Lock()
	f.calls++
	err, gate, after := f.err, f.gate, f.after
	f.after = nil
	l := slices.Clip(slices.Clone(f.m[user]))
	f.mu.Unlock()
	if after != nil {
		after()
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	if len(l) > max {
		l = l[:max]
	}
	return l, nil
}

func (f *fakeFollowing) follow(follower string, followees ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[follower] = append(f.m[follower], followees...)
}

func (f *fakeFollowing) unfollow(follower, followee string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[follower] = slices.DeleteFunc(f.m[follower], func(s string) bool { return s == followee })
}

func (f *fakeFollowing) afterNext(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after = fn
}

func (f *fakeFollowing) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeFollowing) setGate(g chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate = g
}

func (f *fakeFollowing) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// spyTimelines wraps a Timelines, counts calls by method, and lets a test
// replace Claim (another instance holds the claim) or fail Range.
type spyTimelines struct {
	cache.Timelines

	mu       sync.Mutex
	calls    map[string]int
	claim    func(ctx context.Context, user string, ttl time.Duration) (bool, error)
	rangeErr error
}

func spy(tl cache.Timelines) *spyTimelines {
	return &spyTimelines{Timelines: tl, calls: make(map[string]int)}
}

func (s *spyTimelines) count(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func (s *spyTimelines) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

func (s *spyTimelines) note(method string) {
	s.mu.Lock()
	s.calls[method]++
	s.mu.Unlock()
}

func (s *spyTimelines) Add(ctx context.Context, es []cache.Entry) error {
	s.note("Add")
	return s.Timelines.Add(ctx, es)
}

func (s *spyTimelines) Claim(ctx context.Context, user string, ttl time.Duration) (bool, error) {
	s.note("Claim")
	s.mu.Lock()
	claim := s.claim
	s.mu.Unlock()
	if claim != nil {
		return claim(ctx, user, ttl)
	}
	return s.Timelines.Claim(ctx, user, ttl)
}

func (s *spyTimelines) Range(ctx context.Context, user string, before feed.PostID, limit int) ([]feed.PostID, bool, error) {
	s.note("Range")
	s.mu.Lock()
	err := s.rangeErr
	s.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	return s.Timelines.Range(ctx, user, before, limit)
}

func (s *spyTimelines) Store(ctx context.Context, user string, ids []feed.PostID) error {
	s.note("Store")
	return s.Timelines.Store(ctx, user, ids)
}

func (s *spyTimelines) Full(ctx context.Context, user string) (bool, error) {
	s.note("Full")
	return s.Timelines.Full(ctx, user)
}

// batchTimelines is a spyTimelines that also implements cache.BatchRanger,
// as rediscache does: it runs each request against the list's underlying
// cache, so that the spies count only unbatched Ranges.
type batchTimelines struct {
	*spyTimelines
	mu      sync.Mutex
	batches int
	reqs    int
}

func (b *batchTimelines) RangeBatch(ctx context.Context, reqs []*cache.RangeReq) {
	b.mu.Lock()
	b.batches++
	b.reqs += len(reqs)
	b.mu.Unlock()
	for _, r := range reqs {
		list := r.List
		switch l := list.(type) {
		case *batchTimelines:
			list = l.spyTimelines.Timelines
		case *spyTimelines:
			list = l.Timelines
		}
		r.IDs, r.OK, r.Err = list.Range(ctx, r.User, r.Before, r.Limit)
	}
}

func (b *batchTimelines) counts() (batches, reqs int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.batches, b.reqs
}

// flakyPosts is a post cache whose reads or writes fail.
type flakyPosts struct {
	cache.Posts
	getErr, putErr error
}

func (f *flakyPosts) GetPosts(ctx context.Context, ids []feed.PostID) (map[feed.PostID]feed.Post, error) {
	if f.getErr != nil {
		return nil, f.getErr
	}
	return f.Posts.GetPosts(ctx, ids)
}

func (f *flakyPosts) PutPosts(ctx context.Context, ps []feed.Post) error {
	if f.putErr != nil {
		return f.putErr
	}
	return f.Posts.PutPosts(ctx, ps)
}

// spyStore wraps the durable store, counts ListByAuthor calls by author,
// and can fail them.
type spyStore struct {
	Posts

	mu      sync.Mutex
	lists   map[string]int
	listErr error
	getErr  error
}

func (s *spyStore) ListByAuthor(ctx context.Context, author string, before feed.PostID, limit int) ([]feed.Post, error) {
	s.mu.Lock()
	if s.lists == nil {
		s.lists = make(map[string]int)
	}
	s.lists[author]++
	err := s.listErr
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.Posts.ListByAuthor(ctx, author, before, limit)
}

func (s *spyStore) GetPosts(ctx context.Context, ids []feed.PostID) ([]feed.Post, error) {
	if s.getErr != nil {
		return nil, s.getErr
	}
	return s.Posts.GetPosts(ctx, ids)
}

func (s *spyStore) listed(author string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists[author]
}

// failingCelebs is a celebrity set that cannot be read.
type failingCelebs struct{}

func (failingCelebs) AddCelebrity(context.Context, string) error {
	return feed.Unavailable("redis", errDown)
}
func (failingCelebs) Celebrities(context.Context) (map[string]bool, error) {
	return nil, feed.Unavailable("redis", errDown)
}

// stepClock is a clock that moves only when told to.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) step(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a Service on in-process backends: Pebble for the durable store,
// memcache for the caches, a fake graph.
type env struct {
	t         *testing.T
	store     *pebblestore.Store
	home      *memcache.Cache // home timelines (active-only, on clock)
	recent    *memcache.Cache
	postCache *memcache.Cache
	celebs    *memcache.Celebs
	follows   *fakeFollowing
	clock     *stepClock
	tokens    *pagetoken.Codec
	reg       *prometheus.Registry
	svc       *Service

	mu     sync.Mutex
	nextID feed.PostID
}

type envOpts struct {
	cfg       Config
	homeCap   int // default 800
	recentCap int // default 800
	window    time.Duration
	// wrap edits the Deps before New, to put fakes around the backends.
	wrap func(e *env, d *Deps)
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	st, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatalf("pebblestore.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if o.window == 0 {
		o.window = cache.DefaultActiveWindow
	}
	e := &env{
		t:         t,
		store:     st,
		recent:    memcache.New(o.recentCap),
		postCache: memcache.New(0),
		celebs:    memcache.NewCelebs(),
		follows:   newFollowing(),
		clock:     &stepClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		tokens:    pagetoken.New([]byte("0123456789abcdef0123456789abcdef")),
		reg:       prometheus.NewRegistry(),
		nextID:    1000,
	}
	e.home = memcache.NewActiveClock(o.homeCap, o.window, e.clock.Now)
	d := Deps{
		Timelines: e.home, Recent: e.recent, PostCache: e.postCache, Posts: st,
		Following: e.follows, Celebrities: e.celebs, Tokens: e.tokens,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if o.wrap != nil {
		o.wrap(e, &d)
	}
	e.svc = New(o.cfg, d, e.reg)
	return e
}

// post writes a new post by author to the durable store, newer than every
// post before it, and returns it.
func (e *env) post(author string) feed.Post {
	e.t.Helper()
	e.mu.Lock()
	e.nextID++
	id := e.nextID
	e.mu.Unlock()
	p := feed.Post{ID: id, Author: author, Text: fmt.Sprintf("%s says %d", author, id), Created: time.Unix(int64(id), 0).UTC()}
	if _, _, err := e.store.CreatePost(context.Background(), p, ""); err != nil {
		e.t.Fatalf("CreatePost: %v", err)
	}
	return p
}

// posts writes n posts, cycling through authors, and returns them oldest
// first.
func (e *env) posts(n int, authors ...string) []feed.Post {
	e.t.Helper()
	out := make([]feed.Post, n)
	for i := range out {
		out[i] = e.post(authors[i%len(authors)])
	}
	return out
}

// storeHome makes user's cached home timeline hold exactly ids, as a
// completed rebuild leaves it.
func (e *env) storeHome(user string, ps ...feed.Post) {
	e.t.Helper()
	if err := e.home.Store(context.Background(), user, postIDs(ps)); err != nil {
		e.t.Fatalf("Store: %v", err)
	}
}

// push adds ps to user's cached home timeline, as fan-out does.
func (e *env) push(user string, ps ...feed.Post) {
	e.t.Helper()
	es := make([]cache.Entry, len(ps))
	for i, p := range ps {
		es[i] = cache.Entry{User: user, Post: p.ID}
	}
	if err := e.home.Add(context.Background(), es); err != nil {
		e.t.Fatalf("Add: %v", err)
	}
}

// homeIDs returns user's cached home timeline, and whether it is there.
func (e *env) homeIDs(user string) ([]feed.PostID, bool) {
	e.t.Helper()
	ids, ok, err := e.home.Range(context.Background(), user, 0, 1<<20)
	if err != nil {
		e.t.Fatalf("Range: %v", err)
	}
	return ids, ok
}

// page reads one page of user's home timeline and fails the test on error.
func (e *env) page(user string, size int32, token string) ([]feed.PostID, string) {
	e.t.Helper()
	ps, next, err := e.svc.Home(context.Background(), user, size, token)
	if err != nil {
		e.t.Fatalf("Home(%q, %d, %q): %v", user, size, token, err)
	}
	return postIDs(ps), next
}

// walk pages through user's whole home timeline and returns every ID and
// the length of each page.
func (e *env) walk(user string, size int32) (all []feed.PostID, pages []int) {
	e.t.Helper()
	token := ""
	for range 1000 {
		ids, next := e.page(user, size, token)
		all = append(all, ids...)
		pages = append(pages, len(ids))
		if next == "" {
			return all, pages
		}
		token = next
	}
	e.t.Fatalf("Home(%q) did not end after 1000 pages", user)
	return nil, nil
}

func (e *env) rebuilds(outcome string) float64 {
	return testutil.ToFloat64(e.svc.rebuildCount.WithLabelValues(outcome))
}

func (e *env) lookups(result string) float64 {
	return testutil.ToFloat64(e.svc.lookups.WithLabelValues(result))
}

// newestFirst returns the IDs of ps, newest first.
func newestFirst(ps ...feed.Post) []feed.PostID {
	out := postIDs(ps)
	slices.SortFunc(out, func(a, b feed.PostID) int { return cmpID(b, a) })
	return slices.Compact(out)
}

func cmpID(a, b feed.PostID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// by returns the posts in ps by any of authors.
func by(ps []feed.Post, authors ...string) []feed.Post {
	var out []feed.Post
	for _, p := range ps {
		if slices.Contains(authors, p.Author) {
			out = append(out, p)
		}
	}
	return out
}

// goroutinesIn counts the goroutines whose stacks hold every one of frames.
func goroutinesIn(frames ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		all := true
		for _, f := range frames {
			if !strings.Contains(g, f) {
				all = false
				break
			}
		}
		if all {
			count++
		}
	}
	return count
}
