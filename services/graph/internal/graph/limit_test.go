package graph_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
)

// followingOf returns every account user follows, in the store.
func (f *fixture) followingOf(t *testing.T, user string) []string {
	t.Helper()
	ids, next, err := f.db.Following(context.Background(), user, nil, 1000)
	if err != nil || next != nil {
		t.Fatalf("store.Following(%q) = %v, next %q, %v; want one page", user, ids, next, err)
	}
	return ids
}

// wantAtLimit fails t unless err is the refusal of a follow by follower
// past a limit of limit accounts.
func wantAtLimit(t *testing.T, err error, follower string, limit int64) {
	t.Helper()
	if !errors.Is(err, feed.ErrFailedPrecondition) {
		t.Fatalf("Follow by %s past the limit = %v; want an error wrapping feed.ErrFailedPrecondition", follower, err)
	}
	for _, part := range []string{"follower_id", follower, fmt.Sprintf("%d accounts", limit), "-max-following"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("Follow by %s past the limit = %q; want it to name %q", follower, err, part)
		}
	}
}

func TestFollowingLimit(t *testing.T) {
	const limit = 3
	f := newFixtureLimit(t, limit)
	ctx := context.Background()
	for _, b := range []string{"b1", "b2", "b3"} {
		f.follow(t, "alice", b)
	}
	before := f.pub.published()

	// The 4th is refused, and nothing is written or published.
	wantAtLimit(t, f.svc.Follow(ctx, "alice", "b4"), "alice", limit)
	if got, want := f.followingOf(t, "alice"), []string{"b1", "b2", "b3"}; !slices.Equal(got, want) {
		t.Errorf("Following(alice) after a refused follow = %v; want %v", got, want)
	}
	if n, err := f.db.FollowerCount(ctx, "b4"); err != nil || n != 0 {
		t.Errorf("FollowerCount(b4) after a refused follow = %d, %v; want 0", n, err)
	}
	if f.following(t, "alice", "b4") {
		t.Error("a refused Follow(alice, b4) stored the edge")
	}
	if evs := f.pub.published(); !slices.Equal(evs, before) {
		t.Errorf("a refused Follow(alice, b4) published %v; want nothing", evs[len(before):])
	}

	// Following one of the three again still succeeds, and publishes.
	f.follow(t, "alice", "b2")
	if evs := f.pub.published(); len(evs) != len(before)+1 || evs[len(evs)-1] != event.Event(event.Followed{Follower: "alice", Followee: "b2"}) {
		t.Errorf("Follow(alice, b2) again at the limit published %v; want Followed(alice, b2)", evs[len(before):])
	}
	if n, err := f.db.FollowerCount(ctx, "b2"); err != nil || n != 1 {
		t.Errorf("FollowerCount(b2) after following again = %d, %v; want 1", n, err)
	}

	// The limit is per follower.
	f.follow(t, "bob", "b4")

	// Unfollow always works, and makes room.
	if err := f.svc.Unfollow(ctx, "alice", "b1"); err != nil {
		t.Fatalf("Unfollow(alice, b1) at the limit = %v; want nil", err)
	}
	f.follow(t, "alice", "b4")
	if got, want := f.followingOf(t, "alice"), []string{"b2", "b3", "b4"}; !slices.Equal(got, want) {
		t.Errorf("Following(alice) after unfollow and follow = %v; want %v", got, want)
	}
	wantAtLimit(t, f.svc.Follow(ctx, "alice", "b1"), "alice", limit)
}

// TestFollowingLimitRacing: follows racing at one below the limit admit one
// edge; the rest are refused.
func TestFollowingLimitRacing(t *testing.T) {
	const limit, racers = 3, 16
	f := newFixtureLimit(t, limit)
	f.follow(t, "alice", "b1")
	f.follow(t, "alice", "b2")
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok      int
		refused int
	)
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			err := f.svc.Follow(context.Background(), "alice", fmt.Sprintf("r%02d", i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, feed.ErrFailedPrecondition):
				refused++
			default:
				t.Errorf("racing Follow(alice, r%02d) = %v; want nil or FAILED_PRECONDITION", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok != 1 || refused != racers-1 {
		t.Errorf("%d follows racing at %d of %d: %d succeeded, %d refused; want 1 and %d", racers, limit-1, limit, ok, refused, racers-1)
	}
	if got := f.followingOf(t, "alice"); len(got) != limit {
		t.Errorf("Following(alice) after the race = %v; want %d accounts", got, limit)
	}
}

// TestFollowingLimitDefault: a Service given no limit allows
// feed.DefaultMaxFollowing accounts and refuses the next.
func TestFollowingLimitDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("follows 5,000 accounts")
	}
	f := newFixture(t)
	ctx := context.Background()
	for i := range feed.DefaultMaxFollowing {
		if _, err := f.db.Follow(ctx, "alice", fmt.Sprintf("u%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	f.follow(t, "alice", "u0000") // already followed
	wantAtLimit(t, f.svc.Follow(ctx, "alice", "one_more"), "alice", feed.DefaultMaxFollowing)
}
