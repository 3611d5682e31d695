// Package store declares Herald's durable-store ports: the source of truth
// for posts and the social graph. Adapters live in their own packages
// (pebblestore for one process, cassandra for a cluster) and all pass the
// contract suite in package storetest.
//
// Errors: a missing thing is feed.ErrNotFound; a backend that cannot be
// reached is wrapped as feed.ErrUnavailable; a write that a limit refuses
// (Graph.FollowLimited) wraps feed.ErrFailedPrecondition. Nothing else is
// expected.
package store

import (
	"context"

	"github.com/herald-feed/herald/services/platform/feed"
)

// Posts stores posts, their per-author index, the outbox and idempotency
// keys.
type Posts interface {
	// CreatePost stores p, its entry in the author's list and an outbox
	// pending-publish marker, and, when key is not empty, the idempotency
	// record (p.Author, key) -> p.ID; all of them or none. If (p.Author, key)
	// already names a post, CreatePost stores nothing and returns that post
	// with created == false.
	CreatePost(ctx context.Context, p feed.Post, key string) (stored feed.Post, created bool, err error)

	// GetPosts returns the live posts among ids, in no particular order.
	// Missing and deleted posts are left out.
	GetPosts(ctx context.Context, ids []feed.PostID) ([]feed.Post, error)

	// DeletePost marks the post deleted, removes it from its author's list,
	// clears its outbox marker (so the relay never republishes a deleted
	// post) and returns it. A missing or already deleted post is
	// feed.ErrNotFound. An idempotent CreatePost replay of a deleted post's
	// key still returns that post, with created == false.
	DeletePost(ctx context.Context, id feed.PostID) (feed.Post, error)

	// ListByAuthor returns up to limit of author's live posts with an ID
	// below before, newest first. before == 0 means no bound.
	ListByAuthor(ctx context.Context, author string, before feed.PostID, limit int) ([]feed.Post, error)

	// MarkPublished clears the outbox marker of id, once its PostCreated
	// event is in the event log.
	MarkPublished(ctx context.Context, id feed.PostID) error

	// ListUnpublished returns up to limit posts whose outbox marker is still
	// set and whose ID is below before, oldest first. The outbox relay
	// republishes them.
	ListUnpublished(ctx context.Context, before feed.PostID, limit int) ([]feed.Post, error)
}

// Graph stores who follows whom, in both directions.
type Graph interface {
	// Follow records that follower follows followee. changed is false if it
	// already did. It is FollowLimited with no limit: for bulk loads and
	// tests, below the graph service that enforces one.
	Follow(ctx context.Context, follower, followee string) (changed bool, err error)

	// FollowLimited is Follow for a follower allowed at most maxFollowing
	// followees (no limit if maxFollowing <= 0). An edge that would take
	// FollowingCount(follower) past maxFollowing is refused with an error
	// wrapping feed.ErrFailedPrecondition, and nothing is stored. An edge
	// that exists already is never refused: following again stays
	// idempotent at the limit. Adapters check and add under one lock or
	// transaction, so racing calls cannot together pass the limit.
	FollowLimited(ctx context.Context, follower, followee string, maxFollowing int64) (changed bool, err error)

	// Unfollow removes the edge. changed is false if there was none.
	Unfollow(ctx context.Context, follower, followee string) (changed bool, err error)

	// Followers returns up to limit followers of user, and the paging state
	// to pass back for the next page (nil after the last page). state nil
	// starts at the first page.
	Followers(ctx context.Context, user string, state []byte, limit int) (ids []string, next []byte, err error)

	// Following is Followers for the accounts user follows.
	Following(ctx context.Context, user string, state []byte, limit int) (ids []string, next []byte, err error)

	// FollowerCount returns how many followers user has.
	FollowerCount(ctx context.Context, user string) (int64, error)

	// FollowingCount returns how many accounts user follows: the length of
	// the Following list.
	FollowingCount(ctx context.Context, user string) (int64, error)

	// IsFollowing reports whether follower follows followee now.
	IsFollowing(ctx context.Context, follower, followee string) (bool, error)
}
