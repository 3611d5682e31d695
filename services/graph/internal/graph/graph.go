// Package graph is the graph service's domain: follows, unfollows and the
// paged lists of followers and following.
package graph

import (
	"context"
	"errors"
	"fmt"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/pagetoken"
)

// Store is the part of the durable store the graph service uses.
type Store interface {
	// FollowLimited stores the edge unless follower already follows
	// maxFollowing accounts, not followee among them: then it stores
	// nothing and returns an error wrapping feed.ErrFailedPrecondition.
	FollowLimited(ctx context.Context, follower, followee string, maxFollowing int64) (bool, error)
	Unfollow(ctx context.Context, follower, followee string) (bool, error)
	Followers(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error)
	Following(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error)
}

// Publisher appends events to the event log.
type Publisher = event.Publisher

// Service implements the graph operations.
type Service struct {
	store        Store
	bus          Publisher
	tokens       *pagetoken.Codec
	maxFollowing int64
}

// New returns a Service under which one user follows at most maxFollowing
// accounts; maxFollowing <= 0 means feed.DefaultMaxFollowing.
func New(s Store, b Publisher, tokens *pagetoken.Codec, maxFollowing int64) *Service {
	if maxFollowing <= 0 {
		maxFollowing = feed.DefaultMaxFollowing
	}
	return &Service{store: s, bus: b, tokens: tokens, maxFollowing: maxFollowing}
}

func validatePair(follower, followee string) error {
	// The first bad field is the one reported.
	if err := feed.ValidateUserID("follower_id", follower); err != nil {
		return err
	}
	if err := feed.ValidateUserID("followee_id", followee); err != nil {
		return err
	}
	if follower == followee {
		return feed.Invalid("followee_id", "must differ from follower_id: a user cannot follow themselves")
	}
	return nil
}

// Follow makes follower follow followee. It is idempotent. The Followed
// event is published on every call, not only on a change: a call that
// stored the edge but failed to publish returns UNAVAILABLE, and the
// client's retry then publishes it. The event's consumers are idempotent.
//
// A follower who already follows maxFollowing accounts cannot follow
// another: the call fails with an error wrapping
// feed.ErrFailedPrecondition, stores and publishes nothing. Following
// again an account already followed still succeeds. The limit keeps every
// following list short enough for a timeline rebuild to merge whole.
func (s *Service) Follow(ctx context.Context, follower, followee string) error {
	if err := validatePair(follower, followee); err != nil {
		return err
	}
	if _, err := s.store.FollowLimited(ctx, follower, followee, s.maxFollowing); err != nil {
		if errors.Is(err, feed.ErrFailedPrecondition) {
			return fmt.Errorf("%w: follower_id %s already follows %d accounts, the limit (-max-following)", feed.ErrFailedPrecondition, follower, s.maxFollowing)
		}
		return err
	}
	return s.bus.Publish(ctx, event.Followed{Follower: follower, Followee: followee})
}

// Unfollow is the reverse of Follow, with the same retry rule.
func (s *Service) Unfollow(ctx context.Context, follower, followee string) error {
	if err := validatePair(follower, followee); err != nil {
		return err
	}
	if _, err := s.store.Unfollow(ctx, follower, followee); err != nil {
		return err
	}
	return s.bus.Publish(ctx, event.Unfollowed{Follower: follower, Followee: followee})
}

// Followers returns a page of user's followers.
func (s *Service) Followers(ctx context.Context, user string, pageSize int32, token string) ([]string, string, error) {
	return s.page(ctx, "followers:", s.store.Followers, user, pageSize, token)
}

// Following returns a page of the accounts user follows.
func (s *Service) Following(ctx context.Context, user string, pageSize int32, token string) ([]string, string, error) {
	return s.page(ctx, "following:", s.store.Following, user, pageSize, token)
}

type lister func(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error)

func (s *Service) page(ctx context.Context, kind string, list lister, user string, pageSize int32, token string) ([]string, string, error) {
	if err := feed.ValidateUserID("user_id", user); err != nil {
		return nil, "", err
	}
	scope := kind + user
	req, err := s.tokens.ParseRequest(scope, pageSize, feed.MaxGraphPageSize, token)
	if err != nil {
		return nil, "", err
	}
	ids, next, err := list(ctx, user, req.Cursor.State, req.Size)
	if err != nil {
		return nil, "", err
	}
	if len(next) == 0 {
		return ids, "", nil
	}
	return ids, s.tokens.Encode(scope, pagetoken.Cursor{State: next}), nil
}
