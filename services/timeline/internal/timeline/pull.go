package timeline

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/feed"
)

// memo caches values per key for a while, in this instance only.
type memo[V any] struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]memoEntry[V]
}

type memoEntry[V any] struct {
	v  V
	at time.Time
}

func newMemo[V any](ttl time.Duration) *memo[V] {
	return &memo[V]{ttl: ttl, now: time.Now, m: make(map[string]memoEntry[V])}
}

func (m *memo[V]) get(ctx context.Context, key string, load func(context.Context, string) (V, error)) (V, error) {
	m.mu.Lock()
	e, ok := m.m[key]
	m.mu.Unlock()
	if ok && m.now().Sub(e.at) < m.ttl {
		return e.v, nil
	}
	v, err := load(ctx, key)
	if err != nil {
		return v, err
	}
	m.mu.Lock()
	if len(m.m) > 100_000 { // bound memory; a miss only costs a reload
		clear(m.m)
	}
	m.m[key] = memoEntry[V]{v: v, at: m.now()}
	m.mu.Unlock()
	return v, nil
}

func (m *memo[V]) forget(key string) {
	m.mu.Lock()
	delete(m.m, key)
	m.mu.Unlock()
}

// FollowsChanged drops what this instance remembers of follower's
// following list; the timeline app calls it on every Followed and
// Unfollowed event, so a follow shows up in pulls at once.
func (s *Service) FollowsChanged(follower string) { s.followingMemo.forget(follower) }

// pulledAuthors returns the accounts user follows whose posts are merged at
// read time: none under push, all under pull, celebrities under hybrid.
func (s *Service) pulledAuthors(ctx context.Context, user string) ([]string, error) {
	if s.cfg.Strategy == feed.Push {
		return nil, nil
	}
	followees, err := s.followingMemo.get(ctx, user, func(ctx context.Context, u string) ([]string, error) {
		return s.following.Following(ctx, u, s.cfg.MaxFollowing)
	})
	if err != nil || s.cfg.Strategy == feed.Pull {
		return followees, err
	}
	// Under hybrid, pull exactly the authors the fan-out stopped pushing:
	// the sticky celebrity set it maintains.
	var pulled []string
	for _, f := range followees {
		celeb, err := s.celebs.Has(ctx, f)
		if err != nil {
			return nil, err
		}
		if celeb {
			pulled = append(pulled, f)
		}
	}
	return pulled, nil
}

// recentOf returns up to n of author's posts below before from the
// author's recent-post list, loading the list from the durable store when
// the cache lacks it.
func (s *Service) recentOf(ctx context.Context, author string, before feed.PostID, n int, first *cache.RangeReq) ([]feed.PostID, error) {
	ids, ok, err := rangeOr(ctx, first, s.recent, author, before, n)
	if err == nil && ok {
		return s.pastCap(ctx, s.recent, author, ids, before, n, s.storeOf(author))
	}
	if errors.Is(err, feed.ErrUnavailable) {
		s.log.Warn("recent-post cache unavailable; reading the durable store", "author", author, "err", err)
		ps, err := s.posts.ListByAuthor(ctx, author, before, n)
		return postIDs(ps), err
	}
	if err != nil {
		return nil, err
	}
	_, err, _ = s.rebuilds.Do("recent:"+author, func() (any, error) {
		// The refill is shared by every reader waiting on it, so it does
		// not end with the first reader's context; it is bounded like a
		// timeline rebuild.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ClaimTTL)
		defer cancel()
		ps, err := s.posts.ListByAuthor(rctx, author, 0, s.recent.Cap())
		if err != nil {
			return nil, err
		}
		return nil, s.recent.Store(rctx, author, postIDs(ps))
	})
	if err != nil {
		return nil, err
	}
	ids, _, err = s.recent.Range(ctx, author, before, n)
	if err != nil {
		return nil, err
	}
	return s.pastCap(ctx, s.recent, author, ids, before, n, s.storeOf(author))
}

// storeOf returns the durable-store continuation of author's recent list.
func (s *Service) storeOf(author string) func(context.Context, feed.PostID, int) ([]feed.PostID, error) {
	return func(ctx context.Context, below feed.PostID, m int) ([]feed.PostID, error) {
		ps, err := s.posts.ListByAuthor(ctx, author, below, m)
		return postIDs(ps), err
	}
}

// pulledPosts returns up to n IDs below before merged from the recent lists
// of authors: the reader and every author the reader pulls. first holds
// reads already made (see firstReads), by author.
func (s *Service) pulledPosts(ctx context.Context, authors []string, before feed.PostID, n int, first map[string]*cache.RangeReq) ([]feed.PostID, error) {
	lists := make([][]feed.PostID, len(authors))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.RebuildConcurrency)
	for i, a := range authors {
		g.Go(func() (err error) {
			lists[i], err = s.recentOf(gctx, a, before, n, first[a])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return Merge(n, lists...), nil
}
