package posts_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/memcache"
	"github.com/herald-feed/herald/services/platform/pagetoken"
	"github.com/herald-feed/herald/services/platform/pebblestore"
	"github.com/herald-feed/herald/services/post/internal/posts"
)

// base is the mint time of the first post ID in these tests. It is a fixed
// instant in the past: no test reads the wall clock.
var base = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

var errInjected = errors.New("injected failure")

// unavailable is the error a backend adapter returns when it is away.
func unavailable(backend string) error { return feed.Unavailable(backend, errInjected) }

// --- fakes ---------------------------------------------------------------

// recordingPublisher records the events it accepts. With err set it
// refuses every publish from the (failAfter+1)th accepted one on.
type recordingPublisher struct {
	mu        sync.Mutex
	events    []event.Event
	attempts  int
	err       error
	failAfter int
}

func (p *recordingPublisher) Publish(ctx context.Context, ev event.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if p.err != nil && len(p.events) >= p.failAfter {
		return p.err
	}
	p.events = append(p.events, ev)
	return nil
}

// fail makes every publish fail, as a disconnected NATS would.
func (p *recordingPublisher) fail() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err, p.failAfter = unavailable("nats"), len(p.events)
}

// restore makes publishes succeed again.
func (p *recordingPublisher) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = nil
}

func (p *recordingPublisher) published() []event.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

// seqIDs mints one ID per millisecond from base: the nth ID (from 0) was
// minted at base + n ms.
type seqIDs struct {
	mu  sync.Mutex
	n   int
	err error
}

func (s *seqIDs) Next() (feed.PostID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	id := idAt(s.n)
	s.n++
	return id, nil
}

func (s *seqIDs) minted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// idAt is the nth ID seqIDs mints.
func idAt(n int) feed.PostID { return idgen.MinID(base.Add(time.Duration(n)*time.Millisecond)) + 1 }

// faultyStore wraps the real store; a set error makes that method fail.
type faultyStore struct {
	posts.Store
	createErr, getErr, deleteErr, listErr, markErr error

	mu        sync.Mutex
	listLimit int // the limit of the last ListByAuthor
}

func (s *faultyStore) CreatePost(ctx context.Context, p feed.Post, key string) (feed.Post, bool, error) {
	if s.createErr != nil {
		return feed.Post{}, false, s.createErr
	}
	return s.Store.CreatePost(ctx, p, key)
}

func (s *faultyStore) GetPosts(ctx context.Context, ids []feed.PostID) ([]feed.Post, error) {
	if s.getErr != nil {
		return nil, s.getErr
	}
	return s.Store.GetPosts(ctx, ids)
}

func (s *faultyStore) DeletePost(ctx context.Context, id feed.PostID) (feed.Post, error) {
	if s.deleteErr != nil {
		return feed.Post{}, s.deleteErr
	}
	return s.Store.DeletePost(ctx, id)
}

func (s *faultyStore) ListByAuthor(ctx context.Context, author string, before feed.PostID, limit int) ([]feed.Post, error) {
	s.mu.Lock()
	s.listLimit = limit
	s.mu.Unlock()
	if s.listErr != nil {
		return nil, s.listErr
	}
	return s.Store.ListByAuthor(ctx, author, before, limit)
}

func (s *faultyStore) MarkPublished(ctx context.Context, id feed.PostID) error {
	if s.markErr != nil {
		return s.markErr
	}
	return s.Store.MarkPublished(ctx, id)
}

// faultyCache wraps the real post cache.
type faultyCache struct {
	posts.Cache
	getErr, putErr, deleteErr error
}

func (c *faultyCache) GetPosts(ctx context.Context, ids []feed.PostID) (map[feed.PostID]feed.Post, error) {
	if c.getErr != nil {
		return nil, c.getErr
	}
	return c.Cache.GetPosts(ctx, ids)
}

func (c *faultyCache) PutPosts(ctx context.Context, ps []feed.Post) error {
	if c.putErr != nil {
		return c.putErr
	}
	return c.Cache.PutPosts(ctx, ps)
}

func (c *faultyCache) DeletePosts(ctx context.Context, ids []feed.PostID) error {
	if c.deleteErr != nil {
		return c.deleteErr
	}
	return c.Cache.DeletePosts(ctx, ids)
}

// faultyRecent wraps the real recent-posts cache.
type faultyRecent struct {
	posts.Recent
	addErr, removeErr error
}

func (r *faultyRecent) Add(ctx context.Context, es []cache.Entry) error {
	if r.addErr != nil {
		return r.addErr
	}
	return r.Recent.Add(ctx, es)
}

func (r *faultyRecent) Remove(ctx context.Context, es []cache.Entry) error {
	if r.removeErr != nil {
		return r.removeErr
	}
	return r.Recent.Remove(ctx, es)
}

// faultyOutbox wraps the store's outbox.
// With drained set, it signals there each time it returns an empty page.
type faultyOutbox struct {
	posts.Outbox
	err     error
	drained chan struct{}
}

func (o *faultyOutbox) ListUnpublished(ctx context.Context, before feed.PostID, limit int) ([]feed.Post, error) {
	if o.err != nil {
		return nil, o.err
	}
	ps, err := o.Outbox.ListUnpublished(ctx, before, limit)
	if err == nil && len(ps) == 0 && o.drained != nil {
		select {
		case o.drained <- struct{}{}:
		default:
		}
	}
	return ps, err
}

// --- fixture -------------------------------------------------------------

type fixture struct {
	svc    *posts.Service
	db     *pebblestore.Store // the real store, under store
	store  *faultyStore
	posts  *memcache.Cache // the real post cache, under cache
	cache  *faultyCache
	recent *memcache.Cache // the real recent lists, under rec
	rec    *faultyRecent
	pub    *recordingPublisher
	ids    *seqIDs
	tokens *pagetoken.Codec
	log    *slog.Logger
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatalf("pebblestore.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	f := &fixture{
		db:     db,
		posts:  memcache.New(0),
		recent: memcache.New(0),
		pub:    &recordingPublisher{},
		ids:    &seqIDs{},
		tokens: pagetoken.New([]byte("0123456789abcdef0123456789abcdef")),
		log:    slog.New(slog.DiscardHandler),
	}
	f.store = &faultyStore{Store: db}
	f.cache = &faultyCache{Cache: f.posts}
	f.rec = &faultyRecent{Recent: f.recent}
	f.svc = posts.New(f.store, f.cache, f.rec, f.pub, f.ids, f.tokens, f.log)
	return f
}

func (f *fixture) relay(timeout time.Duration) *posts.Relay {
	return &posts.Relay{Outbox: f.db, Service: f.svc, Timeout: timeout, Interval: time.Millisecond, Log: f.log}
}

// create calls Create and fails the test on an error.
func (f *fixture) create(t *testing.T, author, text, key string) feed.Post {
	t.Helper()
	p, err := f.svc.Create(context.Background(), author, text, key)
	if err != nil {
		t.Fatalf("Create(%q, %q, %q) = %v; want no error", author, text, key, err)
	}
	return p
}

// pending returns the IDs whose outbox marker is set.
func (f *fixture) pending(t *testing.T) []feed.PostID {
	t.Helper()
	ps, err := f.db.ListUnpublished(context.Background(), 0, 1000)
	if err != nil {
		t.Fatalf("ListUnpublished: %v", err)
	}
	return postIDs(ps)
}

// stored returns author's posts in the durable store, newest first.
func (f *fixture) stored(t *testing.T, author string) []feed.PostID {
	t.Helper()
	ps, err := f.db.ListByAuthor(context.Background(), author, 0, 1000)
	if err != nil {
		t.Fatalf("ListByAuthor(%q): %v", author, err)
	}
	return postIDs(ps)
}

// trackRecent marks author's recent list complete, so that recentIDs can
// read it.
func (f *fixture) trackRecent(t *testing.T, author string) {
	t.Helper()
	if err := f.recent.Store(context.Background(), author, nil); err != nil {
		t.Fatalf("recent.Store: %v", err)
	}
}

func (f *fixture) recentIDs(t *testing.T, author string) []feed.PostID {
	t.Helper()
	ids, ok, err := f.recent.Range(context.Background(), author, 0, 1000)
	if err != nil || !ok {
		t.Fatalf("recent.Range(%q) = %v, %v, %v; want a complete list", author, ids, ok, err)
	}
	return ids
}

func postIDs(ps []feed.Post) []feed.PostID {
	ids := make([]feed.PostID, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	return ids
}

func samePost(a, b feed.Post) bool {
	return a.ID == b.ID && a.Author == b.Author && a.Text == b.Text && a.Created.Equal(b.Created) && a.Deleted == b.Deleted
}

func wantInvalid(t *testing.T, call string, err error, field string) {
	t.Helper()
	var inv *feed.InvalidError
	if !errors.As(err, &inv) {
		t.Errorf("%s = %v; want an *feed.InvalidError naming %s", call, err, field)
		return
	}
	if inv.Field != field {
		t.Errorf("%s = %v (field %q); want field %q", call, err, inv.Field, field)
	}
	// The status names one field, not every bad one.
	if n := strings.Count(err.Error(), "invalid "); n != 1 {
		t.Errorf("%s = %q, which names %d fields; want only %s", call, err, n, field)
	}
}

// --- Create --------------------------------------------------------------

func TestCreateRejectsBadInput(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name, author, text, key string
		field                   string
	}{
		{"empty author", "", "hello", "", "author_id"},
		{"upper-case author", "Alice", "hello", "", "author_id"},
		{"author with a dash", "al-ice", "hello", "", "author_id"},
		{"author too long", long(65), "hello", "", "author_id"},
		{"empty text", "alice", "", "", "text"},
		{"blank text", "alice", " \n\t ", "", "text"},
		{"text too long", "alice", strings.Repeat("é", 501), "", "text"},
		{"control character", "alice", "bell\a", "", "text"},
		{"invalid UTF-8 text", "alice", "bad \xff", "", "text"},
		{"key too long", "alice", "hello", long(129), "idempotency_key"},
		{"invalid UTF-8 key", "alice", "hello", "k\xff", "idempotency_key"},
		{"bad author and text: author first", "", "", "", "author_id"},
		{"bad text and key: text first", "alice", "", long(129), "text"},
		{"all bad: author first", "A", "\x00", "\xff", "author_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			p, err := f.svc.Create(context.Background(), tt.author, tt.text, tt.key)
			call := fmt.Sprintf("Create(%q, %q, %q)", tt.author, tt.text, tt.key)
			wantInvalid(t, call, err, tt.field)
			if p != (feed.Post{}) {
				t.Errorf("%s returned post %+v; want the zero post", call, p)
			}
			if n := f.ids.minted(); n != 0 {
				t.Errorf("%s minted %d IDs; want 0", call, n)
			}
			if evs := f.pub.published(); len(evs) != 0 {
				t.Errorf("%s published %v; want nothing", call, evs)
			}
			if got := f.pending(t); len(got) != 0 {
				t.Errorf("%s left outbox markers %v; want none", call, got)
			}
			if got := f.stored(t, "alice"); len(got) != 0 {
				t.Errorf("%s stored posts %v for alice; want none", call, got)
			}
		})
	}
}

func TestCreateAcceptsEdgeInput(t *testing.T) {
	tests := []struct{ author, text, key string }{
		{strings.Repeat("a", 64), "x", ""},
		{"user_42", strings.Repeat("é", 500), ""},
		{"bob", "line one\nline two", strings.Repeat("k", 128)},
	}
	for _, tt := range tests {
		f := newFixture(t)
		if _, err := f.svc.Create(context.Background(), tt.author, tt.text, tt.key); err != nil {
			t.Errorf("Create(%q, %q, %q) = %v; want no error", tt.author, tt.text, tt.key, err)
		}
	}
}

func TestCreateStoresAndPublishes(t *testing.T) {
	f := newFixture(t)
	f.trackRecent(t, "alice")
	ctx := context.Background()

	p := f.create(t, "alice", "hello, world", "")
	want := feed.Post{ID: idAt(0), Author: "alice", Text: "hello, world", Created: idgen.Time(idAt(0))}
	if !samePost(p, want) {
		t.Fatalf("Create = %+v; want %+v", p, want)
	}
	if !p.Created.Equal(base) {
		t.Errorf("Create: Created = %v; want the ID's mint time %v", p.Created, base)
	}

	got, err := f.db.GetPosts(ctx, []feed.PostID{p.ID})
	if err != nil || len(got) != 1 || !samePost(got[0], want) {
		t.Errorf("store.GetPosts(%d) = %+v, %v; want [%+v]", p.ID, got, err, want)
	}
	hit, _ := f.posts.GetPosts(ctx, []feed.PostID{p.ID})
	if c, ok := hit[p.ID]; !ok || !samePost(c, want) {
		t.Errorf("post cache holds %+v (present %v); want %+v", c, ok, want)
	}
	if ids := f.recentIDs(t, "alice"); !slices.Equal(ids, []feed.PostID{p.ID}) {
		t.Errorf("recent list of alice = %v; want [%d]", ids, p.ID)
	}

	evs := f.pub.published()
	if len(evs) != 1 {
		t.Fatalf("Create published %d events (%v); want exactly 1", len(evs), evs)
	}
	pc, ok := evs[0].(event.PostCreated)
	if !ok {
		t.Fatalf("Create published %T; want event.PostCreated", evs[0])
	}
	if pc.Post != p.ID || pc.Author != "alice" || !pc.Created.Equal(p.Created) {
		t.Errorf("PostCreated = %+v; want {Post:%d Author:alice Created:%v}", pc, p.ID, p.Created)
	}
	if ids := f.pending(t); len(ids) != 0 {
		t.Errorf("outbox after a successful publish = %v; want empty", ids)
	}
}

func TestCreateWithoutKeyMakesNewPosts(t *testing.T) {
	f := newFixture(t)
	a := f.create(t, "alice", "same", "")
	b := f.create(t, "alice", "same", "")
	if a.ID == b.ID {
		t.Fatalf("two keyless Creates returned the same ID %d; want two posts", a.ID)
	}
	if got, want := f.stored(t, "alice"), []feed.PostID{b.ID, a.ID}; !slices.Equal(got, want) {
		t.Errorf("stored posts = %v; want %v", got, want)
	}
	if n := len(f.pub.published()); n != 2 {
		t.Errorf("published %d events; want 2", n)
	}
}

func TestCreateIdempotent(t *testing.T) {
	f := newFixture(t)
	first := f.create(t, "alice", "first text", "key-1")

	// A retry, even with another text, returns the first post.
	again := f.create(t, "alice", "retried text", "key-1")
	if !samePost(again, first) {
		t.Errorf("Create retry = %+v; want the first post %+v", again, first)
	}
	if got, want := f.stored(t, "alice"), []feed.PostID{first.ID}; !slices.Equal(got, want) {
		t.Errorf("stored posts after a retry = %v; want %v", got, want)
	}
	if evs := f.pub.published(); len(evs) != 1 {
		t.Errorf("published %d events after a retry (%v); want 1", len(evs), evs)
	}

	// The key is per author, and another key is another post.
	bob := f.create(t, "bob", "bob's", "key-1")
	other := f.create(t, "alice", "second", "key-2")
	if bob.ID == first.ID || other.ID == first.ID || bob.ID == other.ID {
		t.Errorf("IDs alice/key-1=%d bob/key-1=%d alice/key-2=%d; want all different", first.ID, bob.ID, other.ID)
	}
	if got, want := f.stored(t, "alice"), []feed.PostID{other.ID, first.ID}; !slices.Equal(got, want) {
		t.Errorf("alice's stored posts = %v; want %v", got, want)
	}
	if evs := f.pub.published(); len(evs) != 3 {
		t.Errorf("published %d events; want 3", len(evs))
	}
}

func TestCreateRetryOfDeletedPostDoesNotResurrect(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.create(t, "alice", "soon gone", "k")
	if err := f.svc.Delete(ctx, p.ID, "alice"); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	n := len(f.pub.published())
	again, err := f.svc.Create(ctx, "alice", "soon gone", "k")
	if err != nil || again.ID != p.ID {
		t.Errorf("Create retry after delete = %+v, %v; want post %d, no error", again, err, p.ID)
	}
	if _, err := f.svc.Get(ctx, p.ID); !errors.Is(err, feed.ErrNotFound) {
		t.Errorf("Get(%d) after the retry = %v; want ErrNotFound", p.ID, err)
	}
	if got := f.stored(t, "alice"); len(got) != 0 {
		t.Errorf("stored posts = %v; want none", got)
	}
	if evs := f.pub.published(); len(evs) != n {
		t.Errorf("the retry published %v; want nothing", evs[n:])
	}
}

func TestCreatePublishFailureLeavesOutboxMarker(t *testing.T) {
	f := newFixture(t)
	f.pub.fail()
	p, err := f.svc.Create(context.Background(), "alice", "hello", "")
	if err != nil {
		t.Fatalf("Create with NATS down = %v; want the post accepted", err)
	}
	if p.ID != idAt(0) || p.Author != "alice" || p.Text != "hello" {
		t.Errorf("Create = %+v; want post %d by alice", p, idAt(0))
	}
	if f.pub.attempts != 1 {
		t.Errorf("Create made %d publish attempts; want 1", f.pub.attempts)
	}
	if got, want := f.pending(t), []feed.PostID{p.ID}; !slices.Equal(got, want) {
		t.Errorf("outbox = %v; want %v", got, want)
	}
	if got, want := f.stored(t, "alice"), []feed.PostID{p.ID}; !slices.Equal(got, want) {
		t.Errorf("stored = %v; want %v", got, want)
	}

	// A retry of a keyed post whose publish failed leaves it to the relay.
	f2 := newFixture(t)
	f2.pub.fail()
	q := f2.create(t, "alice", "hello", "k")
	f2.pub.restore()
	if again := f2.create(t, "alice", "hello", "k"); again.ID != q.ID {
		t.Errorf("keyed retry = %d; want %d", again.ID, q.ID)
	}
	if got, want := f2.pending(t), []feed.PostID{q.ID}; !slices.Equal(got, want) {
		t.Errorf("outbox after the retry = %v; want %v", got, want)
	}
}

func TestCreateMarkPublishedFailureLeavesOutboxMarker(t *testing.T) {
	f := newFixture(t)
	f.store.markErr = unavailable("pebble")
	p := f.create(t, "alice", "hello", "")
	if evs := f.pub.published(); len(evs) != 1 {
		t.Errorf("published %v; want one PostCreated", evs)
	}
	if got, want := f.pending(t), []feed.PostID{p.ID}; !slices.Equal(got, want) {
		t.Errorf("outbox = %v; want %v", got, want)
	}
}

func TestCreateCacheFailuresDoNotFailTheCall(t *testing.T) {
	f := newFixture(t)
	f.trackRecent(t, "alice")
	f.cache.putErr = unavailable("redis")
	f.rec.addErr = unavailable("redis")
	p, err := f.svc.Create(context.Background(), "alice", "hello", "")
	if err != nil {
		t.Fatalf("Create with the caches down = %v; want the post accepted", err)
	}
	if got, want := f.stored(t, "alice"), []feed.PostID{p.ID}; !slices.Equal(got, want) {
		t.Errorf("stored = %v; want %v", got, want)
	}
	if evs := f.pub.published(); len(evs) != 1 {
		t.Errorf("published %v; want one PostCreated", evs)
	}
	if got := f.pending(t); len(got) != 0 {
		t.Errorf("outbox = %v; want empty", got)
	}
	if ids := f.recentIDs(t, "alice"); len(ids) != 0 {
		t.Errorf("recent list = %v; want empty (its Add failed)", ids)
	}
}

func TestCreateBackendErrors(t *testing.T) {
	t.Run("ids", func(t *testing.T) {
		f := newFixture(t)
		f.ids.err = unavailable("etcd")
		p, err := f.svc.Create(context.Background(), "alice", "hello", "")
		if !errors.Is(err, feed.ErrUnavailable) || p != (feed.Post{}) {
			t.Errorf("Create with no IDs = %+v, %v; want ErrUnavailable", p, err)
		}
		if got := f.stored(t, "alice"); len(got) != 0 {
			t.Errorf("stored = %v; want none", got)
		}
		if evs := f.pub.published(); len(evs) != 0 {
			t.Errorf("published %v; want nothing", evs)
		}
	})
	t.Run("store", func(t *testing.T) {
		f := newFixture(t)
		f.store.createErr = unavailable("pebble")
		p, err := f.svc.Create(context.Background(), "alice", "hello", "")
		if !errors.Is(err, feed.ErrUnavailable) || p != (feed.Post{}) {
			t.Errorf("Create with the store down = %+v, %v; want ErrUnavailable", p, err)
		}
		if evs := f.pub.published(); len(evs) != 0 {
			t.Errorf("published %v; want nothing", evs)
		}
		hit, _ := f.posts.GetPosts(context.Background(), []feed.PostID{idAt(0)})
		if len(hit) != 0 {
			t.Errorf("post cache = %v; want nothing cached", hit)
		}
	})
}

// --- Get -----------------------------------------------------------------

func TestGet(t *testing.T) {
	ctx := context.Background()

	t.Run("cache hit", func(t *testing.T) {
		f := newFixture(t)
		// Only in the cache: Get must answer from it.
		c := feed.Post{ID: idAt(7), Author: "alice", Text: "cached only", Created: idgen.Time(idAt(7))}
		if err := f.posts.PutPosts(ctx, []feed.Post{c}); err != nil {
			t.Fatal(err)
		}
		if got, err := f.svc.Get(ctx, c.ID); err != nil || !samePost(got, c) {
			t.Errorf("Get(%d) = %+v, %v; want %+v", c.ID, got, err, c)
		}
	})

	t.Run("store fallback", func(t *testing.T) {
		f := newFixture(t)
		s := feed.Post{ID: idAt(3), Author: "alice", Text: "stored only", Created: idgen.Time(idAt(3))}
		if _, _, err := f.db.CreatePost(ctx, s, ""); err != nil {
			t.Fatal(err)
		}
		if got, err := f.svc.Get(ctx, s.ID); err != nil || !samePost(got, s) {
			t.Errorf("Get(%d) = %+v, %v; want %+v", s.ID, got, err, s)
		}
		// A cache that fails is skipped, not fatal.
		f.cache.getErr = unavailable("redis")
		if got, err := f.svc.Get(ctx, s.ID); err != nil || !samePost(got, s) {
			t.Errorf("Get(%d) with the cache down = %+v, %v; want %+v", s.ID, got, err, s)
		}
	})

	t.Run("created post", func(t *testing.T) {
		f := newFixture(t)
		p := f.create(t, "alice", "hello", "")
		if got, err := f.svc.Get(ctx, p.ID); err != nil || !samePost(got, p) {
			t.Errorf("Get(%d) = %+v, %v; want %+v", p.ID, got, err, p)
		}
	})

	t.Run("missing", func(t *testing.T) {
		f := newFixture(t)
		if got, err := f.svc.Get(ctx, idAt(1)); !errors.Is(err, feed.ErrNotFound) {
			t.Errorf("Get(missing) = %+v, %v; want ErrNotFound", got, err)
		}
	})

	t.Run("tombstone in cache", func(t *testing.T) {
		f := newFixture(t)
		// The store still has it, but the cache's tombstone wins.
		p := f.create(t, "alice", "hello", "")
		if err := f.posts.DeletePosts(ctx, []feed.PostID{p.ID}); err != nil {
			t.Fatal(err)
		}
		if got, err := f.svc.Get(ctx, p.ID); !errors.Is(err, feed.ErrNotFound) || got != (feed.Post{}) {
			t.Errorf("Get(tombstoned) = %+v, %v; want ErrNotFound", got, err)
		}
	})

	t.Run("store error", func(t *testing.T) {
		f := newFixture(t)
		f.store.getErr = unavailable("pebble")
		if got, err := f.svc.Get(ctx, idAt(1)); !errors.Is(err, feed.ErrUnavailable) {
			t.Errorf("Get with the store down = %+v, %v; want ErrUnavailable", got, err)
		}
	})
}

// --- Delete --------------------------------------------------------------

func TestDelete(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.trackRecent(t, "alice")
	keep := f.create(t, "alice", "keep", "")
	p := f.create(t, "alice", "delete me", "")
	n := len(f.pub.published())

	if err := f.svc.Delete(ctx, p.ID, "alice"); err != nil {
		t.Fatalf("Delete(%d, alice) = %v; want nil", p.ID, err)
	}
	evs := f.pub.published()[n:]
	want := event.PostDeleted{Post: p.ID, Author: "alice"}
	if len(evs) != 1 || evs[0] != event.Event(want) {
		t.Errorf("Delete published %v; want [%+v]", evs, want)
	}
	if got, err := f.svc.Get(ctx, p.ID); !errors.Is(err, feed.ErrNotFound) {
		t.Errorf("Get(%d) after Delete = %+v, %v; want ErrNotFound", p.ID, got, err)
	}
	ps, _, err := f.svc.List(ctx, "alice", 0, "")
	if err != nil || !slices.Equal(postIDs(ps), []feed.PostID{keep.ID}) {
		t.Errorf("List(alice) after Delete = %v, %v; want [%d]", postIDs(ps), err, keep.ID)
	}
	if got := f.recentIDs(t, "alice"); !slices.Equal(got, []feed.PostID{keep.ID}) {
		t.Errorf("recent list after Delete = %v; want [%d]", got, keep.ID)
	}
	if got, err := f.svc.Get(ctx, keep.ID); err != nil || !samePost(got, keep) {
		t.Errorf("Get(%d) of the other post = %+v, %v; want it intact", keep.ID, got, err)
	}

	// A second delete finds nothing.
	if err := f.svc.Delete(ctx, p.ID, "alice"); !errors.Is(err, feed.ErrNotFound) {
		t.Errorf("second Delete(%d) = %v; want ErrNotFound", p.ID, err)
	}
	if evs := f.pub.published(); len(evs) != n+1 {
		t.Errorf("second Delete published %v; want nothing", evs[n+1:])
	}
}

func TestDeleteRejects(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := f.create(t, "alice", "mine", "")
	n := len(f.pub.published())

	tests := []struct {
		name   string
		id     feed.PostID
		author string
		check  func(error) bool
		want   string
	}{
		{"empty author", p.ID, "", isInvalid("author_id"), "InvalidError(author_id)"},
		{"bad author", p.ID, "Alice", isInvalid("author_id"), "InvalidError(author_id)"},
		{"missing post", idAt(99), "alice", is(feed.ErrNotFound), "ErrNotFound"},
		{"another author", p.ID, "bob", is(feed.ErrPermissionDenied), "ErrPermissionDenied"},
	}
	for _, tt := range tests {
		if err := f.svc.Delete(ctx, tt.id, tt.author); !tt.check(err) {
			t.Errorf("%s: Delete(%d, %q) = %v; want %s", tt.name, tt.id, tt.author, err, tt.want)
		}
	}
	if got, err := f.svc.Get(ctx, p.ID); err != nil || !samePost(got, p) {
		t.Errorf("Get(%d) after refused deletes = %+v, %v; want %+v", p.ID, got, err, p)
	}
	if evs := f.pub.published(); len(evs) != n {
		t.Errorf("refused deletes published %v; want nothing", evs[n:])
	}
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func isInvalid(field string) func(error) bool {
	return func(err error) bool {
		var inv *feed.InvalidError
		return errors.As(err, &inv) && inv.Field == field
	}
}

func TestDeleteBackendErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("store read", func(t *testing.T) {
		f := newFixture(t)
		p := f.create(t, "alice", "x", "")
		f.store.getErr = unavailable("pebble")
		if err := f.svc.Delete(ctx, p.ID, "alice"); !errors.Is(err, feed.ErrUnavailable) {
			t.Errorf("Delete = %v; want ErrUnavailable", err)
		}
		f.store.getErr = nil
		if _, err := f.svc.Get(ctx, p.ID); err != nil {
			t.Errorf("Get after a failed Delete = %v; want the post", err)
		}
	})
	t.Run("store delete", func(t *testing.T) {
		f := newFixture(t)
		p := f.create(t, "alice", "x", "")
		n := len(f.pub.published())
		f.store.deleteErr = unavailable("pebble")
		if err := f.svc.Delete(ctx, p.ID, "alice"); !errors.Is(err, feed.ErrUnavailable) {
			t.Errorf("Delete = %v; want ErrUnavailable", err)
		}
		if evs := f.pub.published(); len(evs) != n {
			t.Errorf("failed Delete published %v; want nothing", evs[n:])
		}
		if _, err := f.svc.Get(ctx, p.ID); err != nil {
			t.Errorf("Get after a failed Delete = %v; want the post", err)
		}
	})
	t.Run("cache", func(t *testing.T) {
		f := newFixture(t)
		p := f.create(t, "alice", "x", "")
		f.cache.deleteErr = unavailable("redis")
		if err := f.svc.Delete(ctx, p.ID, "alice"); !errors.Is(err, feed.ErrUnavailable) {
			t.Errorf("Delete with the cache down = %v; want ErrUnavailable, for the client to retry", err)
		}
	})
	t.Run("recent and publish are best effort", func(t *testing.T) {
		f := newFixture(t)
		p := f.create(t, "alice", "x", "")
		f.rec.removeErr = unavailable("redis")
		f.pub.fail()
		if err := f.svc.Delete(ctx, p.ID, "alice"); err != nil {
			t.Errorf("Delete with recent lists and NATS down = %v; want nil", err)
		}
		if _, err := f.svc.Get(ctx, p.ID); !errors.Is(err, feed.ErrNotFound) {
			t.Errorf("Get after Delete = %v; want ErrNotFound", err)
		}
	})
}

// TestDeleteRetryAfterCacheFailure: a Delete whose cache tombstone failed
// is an error the client retries, and the retry completes the delete.
func TestDeleteRetryAfterCacheFailure(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.create(t, "alice", "x", "") // Create caches the body
	f.cache.deleteErr = unavailable("redis")
	if err := f.svc.Delete(ctx, p.ID, "alice"); !errors.Is(err, feed.ErrUnavailable) {
		t.Fatalf("Delete with the cache down = %v; want ErrUnavailable", err)
	}
	f.cache.deleteErr = nil
	// The client retries, as told, and the retry must succeed or at least
	// leave the post unreadable.
	retryErr := f.svc.Delete(ctx, p.ID, "alice")
	if got, err := f.svc.Get(ctx, p.ID); !errors.Is(err, feed.ErrNotFound) {
		t.Errorf("Get(%d) after Delete failed on the cache and its retry returned %v = %+v, %v; want ErrNotFound",
			p.ID, retryErr, got, err)
	}
}

// --- List ----------------------------------------------------------------

func TestListPages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var want []feed.PostID // alice's posts, newest first
	for i := range 45 {
		p := f.create(t, "alice", fmt.Sprintf("post %d", i), "")
		want = append([]feed.PostID{p.ID}, want...)
		if i%10 == 0 {
			f.create(t, "bob", "bob's post", "")
		}
	}

	var got []feed.PostID
	token := ""
	sizes := []int{}
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatalf("List did not end after %d pages", page)
		}
		ps, next, err := f.svc.List(ctx, "alice", 20, token)
		if err != nil {
			t.Fatalf("List(alice, 20, page %d) = %v", page, err)
		}
		for _, p := range ps {
			if p.Author != "alice" {
				t.Errorf("List(alice) returned %+v by %s", p, p.Author)
			}
			if len(got) > 0 && p.ID >= got[len(got)-1] {
				t.Errorf("List(alice) page %d: post %d is not older than %d", page, p.ID, got[len(got)-1])
			}
			got = append(got, p.ID)
		}
		sizes = append(sizes, len(ps))
		if next == "" {
			break
		}
		token = next
	}
	if !slices.Equal(sizes, []int{20, 20, 5}) {
		t.Errorf("List(alice, 20) page sizes = %v; want [20 20 5]", sizes)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List(alice) over all pages = %v; want %v", got, want)
	}
}

func TestListExactPageHasNoNextToken(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		f.create(t, "carol", "hi", "")
	}
	ps, next, err := f.svc.List(context.Background(), "carol", 3, "")
	if err != nil || len(ps) != 3 || next != "" {
		t.Errorf("List(carol, 3) = %d posts, token %q, %v; want 3 posts, no token", len(ps), next, err)
	}
	ps, next, err = f.svc.List(context.Background(), "nobody", 0, "")
	if err != nil || len(ps) != 0 || next != "" {
		t.Errorf("List(nobody) = %v, %q, %v; want an empty last page", ps, next, err)
	}
}

func TestListPageSize(t *testing.T) {
	f := newFixture(t)
	for range 25 {
		f.create(t, "alice", "hi", "")
	}
	tests := []struct {
		size      int32
		wantLen   int
		wantLimit int // what the store is asked for: the page and one more
		wantNext  bool
	}{
		{0, feed.DefaultPageSize, feed.DefaultPageSize + 1, true},
		{1, 1, 2, true},
		{24, 24, 25, true},
		{25, 25, 26, false},
		{100, 25, 101, false},
		{101, 25, feed.MaxPageSize + 1, false},
		{1 << 30, 25, feed.MaxPageSize + 1, false},
	}
	for _, tt := range tests {
		ps, next, err := f.svc.List(context.Background(), "alice", tt.size, "")
		if err != nil || len(ps) != tt.wantLen || (next != "") != tt.wantNext {
			t.Errorf("List(alice, %d) = %d posts, token %q, %v; want %d posts, token %v", tt.size, len(ps), next, err, tt.wantLen, tt.wantNext)
		}
		if f.store.listLimit != tt.wantLimit {
			t.Errorf("List(alice, %d) asked the store for %d posts; want %d", tt.size, f.store.listLimit, tt.wantLimit)
		}
	}
}

func TestListRejects(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for range 3 {
		f.create(t, "alice", "hi", "")
		f.create(t, "bob", "hi", "")
	}
	_, aliceToken, err := f.svc.List(ctx, "alice", 1, "")
	if err != nil || aliceToken == "" {
		t.Fatalf("List(alice, 1) = token %q, %v; want a token", aliceToken, err)
	}
	_, bobToken, err := f.svc.List(ctx, "bob", 1, "")
	if err != nil || bobToken == "" {
		t.Fatalf("List(bob, 1) = token %q, %v; want a token", bobToken, err)
	}
	// A token carrying the same cursor but minted under another key.
	foreign := pagetoken.New([]byte("another key, another deployment"))
	last, _ := f.tokens.Decode("posts:alice", aliceToken)

	// A token whose bytes were edited, still well-formed base64.
	raw, err := base64.RawURLEncoding.DecodeString(aliceToken)
	if err != nil {
		t.Fatalf("page token %q is not base64url: %v", aliceToken, err)
	}
	raw[1] ^= 1 // in the cursor
	tampered := base64.RawURLEncoding.EncodeToString(raw)
	tests := []struct {
		name   string
		author string
		size   int32
		token  string
		check  func(error) bool
		want   string
	}{
		{"empty author", "", 0, "", isInvalid("author_id"), "InvalidError(author_id)"},
		{"bad author", "Alice", 0, "", isInvalid("author_id"), "InvalidError(author_id)"},
		{"negative page size", "alice", -1, "", isInvalid("page_size"), "InvalidError(page_size)"},
		{"tampered token", "alice", 0, tampered, is(pagetoken.ErrInvalid), "pagetoken.ErrInvalid"},
		{"truncated token", "alice", 0, aliceToken[:len(aliceToken)-2], is(pagetoken.ErrInvalid), "pagetoken.ErrInvalid"},
		{"not base64", "alice", 0, "!!!", is(pagetoken.ErrInvalid), "pagetoken.ErrInvalid"},
		{"another author's token", "alice", 0, bobToken, is(pagetoken.ErrInvalid), "pagetoken.ErrInvalid"},
		{"token for alice used for bob", "bob", 0, aliceToken, is(pagetoken.ErrInvalid), "pagetoken.ErrInvalid"},
		{"token under another key", "alice", 0, foreign.Encode("posts:alice", last), is(pagetoken.ErrInvalid), "pagetoken.ErrInvalid"},
		{"token of another list", "alice", 0, f.tokens.Encode("home:alice", last), is(pagetoken.ErrInvalid), "pagetoken.ErrInvalid"},
	}
	for _, tt := range tests {
		ps, next, err := f.svc.List(ctx, tt.author, tt.size, tt.token)
		if !tt.check(err) || ps != nil || next != "" {
			t.Errorf("%s: List(%q, %d, %q) = %v, %q, %v; want no posts and %s", tt.name, tt.author, tt.size, tt.token, ps, next, err, tt.want)
		}
	}

	// The genuine token still works.
	ps, _, err := f.svc.List(ctx, "alice", 1, aliceToken)
	if err != nil || len(ps) != 1 || uint64(ps[0].ID) >= last.Last {
		t.Errorf("List(alice, 1, token) = %v, %v; want one post older than %d", postIDs(ps), err, last.Last)
	}
}

func TestListStoreError(t *testing.T) {
	f := newFixture(t)
	f.store.listErr = unavailable("pebble")
	ps, next, err := f.svc.List(context.Background(), "alice", 0, "")
	if !errors.Is(err, feed.ErrUnavailable) || ps != nil || next != "" {
		t.Errorf("List with the store down = %v, %q, %v; want ErrUnavailable", ps, next, err)
	}
}
