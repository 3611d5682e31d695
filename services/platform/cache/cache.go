// Package cache declares Herald's hot-cache ports: home timelines and post
// bodies. The cache may be lost at any time; everything in it can be
// rebuilt from the durable store. Adapters: memcache (one process) and
// rediscache (a cluster). Both pass the contract suite in cachetest.
package cache

import (
	"context"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
)

// Defaults shared by every adapter, stated once.
const (
	// DefaultCap is the most entries a cached timeline keeps.
	DefaultCap = 800
	// DefaultActiveWindow is how recently a user must have read their home
	// timeline to get fan-out writes.
	DefaultActiveWindow = 7 * 24 * time.Hour
	// DefaultRecentTTL is how long an author's recent-post list lasts
	// after its last write (Add or Store). Its readers treat a missing
	// list as unknown and refill it from the durable store, so expiry
	// costs an author who posts again, or a reader, one durable read;
	// what it bounds is the lists of authors who stopped posting, or of
	// made-up users who never come back. A week keeps every author who
	// posts weekly cached.
	DefaultRecentTTL = 7 * 24 * time.Hour
)

// Entry is one post in one user's home timeline.
type Entry struct {
	User string
	Post feed.PostID
}

// Timelines holds capped home timelines: sets of post IDs ordered by ID,
// newest first. Inserting the same entry twice, or in any order, gives the
// same timeline, which is what makes at-least-once fan-out safe.
//
// A timeline is complete once Store has filled it from the durable store.
// Add may create an incomplete timeline; Range reports it as missing until
// a Store completes it, so a rebuild never loses an entry that raced it.
//
// A cache of home timelines keeps active users' timelines only (see
// ActiveWindow in the adapters): Add writes into a timeline only if it
// exists or a rebuild has claimed it, Range keeps a timeline alive, and a
// timeline not read within the window expires. Such a rebuild claims the
// timeline before it reads the durable store, so every Add from then on
// lands, and every post stored before then is in what it reads.
//
// A cache of authors' recent-post lists keeps every list while it is
// written: Add creates a missing list, every Add or Store renews it, and
// a list not written within its TTL (see DefaultRecentTTL) expires. Reads
// do not renew it, so readers cannot keep a silent author's list alive;
// a reader that finds a list missing refills it with Store.
type Timelines interface {
	// Add inserts each entry and trims each touched timeline to the cap,
	// keeping the newest IDs. In an active-only cache, entries of a
	// timeline that neither exists nor is claimed are dropped.
	Add(ctx context.Context, entries []Entry) error

	// Claim marks user's timeline as being rebuilt, for at most ttl or
	// until Store, so that Adds land in it, and reports whether this call
	// made the claim: false means another rebuild holds it. It is the
	// cross-instance rebuild lock.
	Claim(ctx context.Context, user string, ttl time.Duration) (bool, error)

	// Remove deletes each entry; absent entries are ignored.
	Remove(ctx context.Context, entries []Entry) error

	// Range returns up to limit IDs below before (0: no bound), newest
	// first. ok is false when the user's timeline is missing or incomplete.
	Range(ctx context.Context, user string, before feed.PostID, limit int) (ids []feed.PostID, ok bool, err error)

	// Store adds ids to user's timeline, trims it to the cap, marks it
	// complete, and releases a claim on it.
	Store(ctx context.Context, user string, ids []feed.PostID) error

	// Full reports whether user's timeline holds Cap entries, so that
	// older ones may have been trimmed: a reader past its end must then
	// continue from the durable store.
	Full(ctx context.Context, user string) (bool, error)

	// Cap is the most entries a timeline keeps.
	Cap() int
}

// Posts caches post bodies by ID, and tombstones of deleted posts.
type Posts interface {
	// GetPosts returns the cached posts among ids, tombstones included
	// (as feed.Post{ID: id, Deleted: true}); misses are left out.
	GetPosts(ctx context.Context, ids []feed.PostID) (map[feed.PostID]feed.Post, error)
	// PutPosts caches posts, except over a tombstone: a reader that loaded
	// a post from the store just before its deletion cannot bring it back.
	PutPosts(ctx context.Context, posts []feed.Post) error
	// DeletePosts replaces ids with tombstones.
	DeletePosts(ctx context.Context, ids []feed.PostID) error
}

// PostsAsOf is a Posts that can answer a read from bodies it keeps in
// process, when it knows that no delete since has made them stale.
type PostsAsOf interface {
	Posts
	// GetPostsAsOf is GetPosts for a read that began at start: every
	// delete whose DeletePosts returned before start shows, as from
	// GetPosts.
	GetPostsAsOf(ctx context.Context, ids []feed.PostID, start time.Time) (map[feed.PostID]feed.Post, error)
}

// Celebrities is the set of authors whose posts the hybrid strategy pulls
// at read time instead of pushing. Membership is sticky: an author who once
// reached the follower threshold stays in, so that a post is never left
// neither pushed (the author was pulled when it was written) nor pulled
// (the author dropped back below the threshold when it was read). So the
// set neither expires nor evicts; it is bounded by the durable follow
// graph instead, since each member once had the threshold's number of
// followers.
type Celebrities interface {
	AddCelebrity(ctx context.Context, author string) error
	// Celebrities returns the whole set.
	Celebrities(ctx context.Context) (map[string]bool, error)
}

// RangeReq is one Timelines.Range in a batch: the call's arguments, then
// its results.
type RangeReq struct {
	List   Timelines
	User   string
	Before feed.PostID
	Limit  int

	IDs []feed.PostID
	OK  bool
	Err error
}

// BatchRanger is implemented by adapters that can run several Ranges, over
// lists that share a connection, in one round trip. A reader of a home
// timeline and of recent-post lists uses it to pay one round trip where
// it would pay several.
type BatchRanger interface {
	// RangeBatch sets each request's results as Range would.
	RangeBatch(ctx context.Context, reqs []*RangeReq)
}

// Unfollows remembers recent unfollows for a while, so that a push already
// on its way when a follower left (a chunk message can wait in the stream)
// skips them instead of putting the post back after the unfollow's purge.
type Unfollows interface {
	// MarkUnfollowed records that follower left followee.
	MarkUnfollowed(ctx context.Context, follower, followee string) error
	// ClearUnfollowed forgets it, on a follow.
	ClearUnfollowed(ctx context.Context, follower, followee string) error
	// Unfollowed reports which of followers are marked as having left
	// followee.
	Unfollowed(ctx context.Context, followee string, followers []string) ([]bool, error)
}

// UnfollowTTL is how long an unfollow mark lasts: longer than any chunk
// message should wait in the stream.
const UnfollowTTL = time.Hour
