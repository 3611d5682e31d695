package timeline

import (
	"context"
	"slices"
	"testing"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
)

func TestHomePullMergesRecentLists(t *testing.T) {
	var home *spyTimelines
	var store *spyStore
	e := newEnv(t, envOpts{cfg: Config{Strategy: feed.Pull}, wrap: func(e *env, d *Deps) {
		home = spy(d.Timelines)
		store = &spyStore{Posts: d.Posts}
		d.Timelines, d.Posts = home, store
	}})
	ctx := context.Background()
	e.follows.follow("alice", "bob", "carol")
	ps := e.posts(12, "bob", "carol", "alice", "dave")
	want := newestFirst(by(ps, "bob", "carol", "alice")...)

	if got, _ := e.page("alice", 20, ""); !slices.Equal(got, want) {
		t.Errorf("Home(alice) under pull = %v; want %v", got, want)
	}
	if n := home.total(); n != 0 {
		t.Errorf("home timelines used %d times under pull (%v); want 0: nothing is pushed", n, home.calls)
	}
	// Each recent list was loaded from the store once and cached.
	for _, a := range []string{"bob", "carol", "alice"} {
		ids, ok, err := e.recent.Range(ctx, a, 0, 100)
		if err != nil || !ok || !slices.Equal(ids, newestFirst(by(ps, a)...)) {
			t.Errorf("recent list of %s = %v, %v, %v; want %v", a, ids, ok, err, newestFirst(by(ps, a)...))
		}
		if n := store.listed(a); n != 1 {
			t.Errorf("%s's posts listed from the store %d times; want 1", a, n)
		}
	}
	if n := store.listed("dave"); n != 0 {
		t.Errorf("dave's posts listed %d times; want 0: alice does not follow dave", n)
	}

	// A new post lands in its author's recent list (fan-out writes it) and
	// shows at read time, without a store read.
	fresh := e.post("carol")
	if err := e.recent.Add(ctx, []cache.Entry{{User: "carol", Post: fresh.ID}}); err != nil {
		t.Fatal(err)
	}
	got, _ := e.page("alice", 3, "")
	if want := append([]feed.PostID{fresh.ID}, want[:2]...); !slices.Equal(got, want) {
		t.Errorf("Home(alice) after carol's new post = %v; want %v", got, want)
	}
	if n := store.listed("carol"); n != 1 {
		t.Errorf("carol's posts listed from the store %d times; want 1 (the new post came from her recent list)", n)
	}
}

func TestHomeHybridPullsCelebrities(t *testing.T) {
	for _, tt := range []struct {
		strategy feed.Strategy
		pulled   []string // whose unpushed posts show
	}{
		{feed.Hybrid, []string{"carol"}},
		{feed.Push, nil},
	} {
		t.Run(string(tt.strategy), func(t *testing.T) {
			e := newEnv(t, envOpts{cfg: Config{Strategy: tt.strategy}})
			ctx := context.Background()
			if err := e.celebs.AddCelebrity(ctx, "carol"); err != nil {
				t.Fatal(err)
			}
			e.follows.follow("alice", "bob", "carol", "dave")
			ps := e.posts(16, "bob", "carol", "alice", "dave", "erin")
			// Fan-out pushed bob's posts and dave's but his newest, which is
			// on its way: the read must not pull a pushed author.
			daves := by(ps, "dave")
			pushed := append(by(ps, "bob"), daves[:len(daves)-1]...)
			e.storeHome("alice", pushed...)

			wantPosts := append(append(slices.Clone(pushed), by(ps, "alice")...), by(ps, tt.pulled...)...)
			want := newestFirst(wantPosts...)
			got, _ := e.walk("alice", 4)
			if !slices.Equal(got, want) {
				t.Errorf("Home(alice) under %s = %v; want %v", tt.strategy, got, want)
			}
			if tt.strategy == feed.Push && e.follows.count() != 0 {
				t.Errorf("Following called %d times under push on a hit; want 0", e.follows.count())
			}
		})
	}
}

// TestHomePullRecentListPastCap reads an author's posts past the cap of
// their recent list.
func TestHomePullRecentListPastCap(t *testing.T) {
	var store *spyStore
	e := newEnv(t, envOpts{cfg: Config{Strategy: feed.Pull}, recentCap: 3, wrap: func(e *env, d *Deps) {
		store = &spyStore{Posts: d.Posts}
		d.Posts = store
	}})
	e.follows.follow("alice", "bob")
	ps := e.posts(8, "bob")
	all := newestFirst(ps...)

	got, next := e.page("alice", 2, "")
	if !slices.Equal(got, all[:2]) {
		t.Fatalf("first page = %v; want %v", got, all[:2])
	}
	if n := store.listed("bob"); n != 1 {
		t.Errorf("bob's posts listed %d times for a page within his recent list; want 1 (its load)", n)
	}
	got, next = e.page("alice", 2, next)
	if !slices.Equal(got, all[2:4]) {
		t.Errorf("second page = %v; want %v", got, all[2:4])
	}
	if n := store.listed("bob"); n != 2 {
		t.Errorf("bob's posts listed %d times after a page past his recent list's cap; want 2", n)
	}
	rest, _ := e.walkFrom("alice", 2, next)
	if !slices.Equal(rest, all[4:]) {
		t.Errorf("the rest = %v; want %v", rest, all[4:])
	}
	if e.lookups("past_cap") == 0 {
		t.Errorf("cache lookups{past_cap} = 0; want pages continued from the store")
	}
}

// walkFrom pages on from token to the end.
func (e *env) walkFrom(user string, size int32, token string) ([]feed.PostID, int) {
	e.t.Helper()
	var all []feed.PostID
	pages := 0
	for token != "" {
		var ids []feed.PostID
		ids, token = e.page(user, size, token)
		all = append(all, ids...)
		pages++
		if pages > 1000 {
			e.t.Fatalf("Home(%q) did not end after 1000 pages", user)
		}
	}
	return all, pages
}
