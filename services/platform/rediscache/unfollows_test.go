package rediscache_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/rediscache"
)

// TestUnfollowed: marks are per follower, cleared by a follow, gone after
// cache.UnfollowTTL, and read right both below and past the number of
// marks read whole.
func TestUnfollowed(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	rdb, prefix := client(t)
	c := rediscache.New(rdb, rediscache.Options{Prefix: prefix, Clock: clock})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(followee string, followers []string, want []bool) {
		t.Helper()
		got, err := c.Unfollowed(ctx, followee, followers)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Unfollowed(%s, %v) = %v, %v; want %v", followee, followers, got, err, want)
		}
	}

	check("alice", []string{"bob", "carol"}, []bool{false, false})
	must(c.MarkUnfollowed(ctx, "bob", "alice"))
	check("alice", []string{"bob", "carol"}, []bool{true, false})
	check("dave", []string{"bob"}, []bool{false}) // per followee
	must(c.ClearUnfollowed(ctx, "bob", "alice"))
	check("alice", []string{"bob"}, []bool{false})

	must(c.MarkUnfollowed(ctx, "carol", "alice"))
	mu.Lock()
	now = now.Add(time.Hour + time.Second) // past cache.UnfollowTTL
	mu.Unlock()
	check("alice", []string{"carol"}, []bool{false})

	// More marks than Unfollowed reads whole: it asks about each follower.
	for i := range 300 {
		must(c.MarkUnfollowed(ctx, fmt.Sprintf("f%03d", i), "erin"))
	}
	check("erin", []string{"f000", "f299", "zed", "carol"}, []bool{true, true, false, false})
	mu.Lock()
	now = now.Add(time.Hour + time.Second)
	mu.Unlock()
	check("erin", []string{"f000", "f299"}, []bool{false, false})
}
