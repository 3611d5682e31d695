package pebblestore

import (
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/herald-feed/herald/services/platform/feed"
)

// TestFollowingCountOfOlderStore: a store written before following counts
// existed has edges and no count; the count comes from the edges, the
// limit holds, and the next write stores the count.
func TestFollowingCountOfOlderStore(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// What an older Follow wrote: both edge keys and the follower count.
	b := s.db.NewBatch()
	for _, followee := range []string{"b1", "b2", "b3"} {
		set(b, userKey(prefixFollowers, followee, "alice"), nil)
		set(b, userKey(prefixFollowing, "alice", followee), nil)
		set(b, countKey(followee), []byte{0, 0, 0, 0, 0, 0, 0, 1})
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()

	if n, err := s.FollowingCount(ctx, "alice"); err != nil || n != 3 {
		t.Fatalf("FollowingCount(alice) with no stored count = %d, %v; want 3, from the edges", n, err)
	}
	if _, err := s.FollowLimited(ctx, "alice", "b4", 3); !errors.Is(err, feed.ErrFailedPrecondition) {
		t.Errorf("FollowLimited(alice, b4, 3) with 3 older edges = %v; want feed.ErrFailedPrecondition", err)
	}
	if _, err := s.Unfollow(ctx, "alice", "b1"); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := s.getCount("following count", followingCountKey("alice")); err != nil || !ok || n != 2 {
		t.Errorf("stored following count of alice after an Unfollow = %d, %v, %v; want 2, stored", n, ok, err)
	}
	if _, err := s.FollowLimited(ctx, "alice", "b4", 3); err != nil {
		t.Errorf("FollowLimited(alice, b4, 3) after an Unfollow = %v; want nil", err)
	}
	if n, err := s.FollowingCount(ctx, "alice"); err != nil || n != 3 {
		t.Errorf("FollowingCount(alice) = %d, %v; want 3", n, err)
	}
}
