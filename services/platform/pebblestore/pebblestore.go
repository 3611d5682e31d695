// Package pebblestore is the embedded, single-process durable store: posts
// and the social graph in one Pebble database. It implements store.Posts and
// store.Graph.
//
// Key layout (ids are 8-byte big-endian; user IDs are [a-z0-9_], so the
// \x00 separator keeps "al" from matching "alice"):
//
//	p/<id>                     -> post record (with a deleted flag)
//	a/<author>\x00<^id>        -> empty: author index, newest first
//	o/<id>                     -> empty: outbox pending-publish marker
//	i/<author>\x00<key>        -> <id><unix nanos written>: idempotency record
//	f/<user>\x00<follower>     -> empty
//	g/<user>\x00<followee>     -> empty
//	c/<user>                   -> uint64 follower count
//	h/<user>                   -> uint64 following count
//
// A following count is the number of g/<user> keys, kept beside them so
// that the -max-following check is one read. It is absent for users whose
// follows predate it, and for users ImportFollows added edges to: absent
// means "count the g/<user> keys", and the next Follow or Unfollow writes
// it.
package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/store"
)

var (
	_ store.Posts = (*Store)(nil)
	_ store.Graph = (*Store)(nil)
)

// DefaultIdempotencyTTL is how long an idempotency key is honoured when
// Options leaves it zero.
const DefaultIdempotencyTTL = 24 * time.Hour

// Options configures a Store.
type Options struct {
	// IdempotencyTTL is how long CreatePost remembers an idempotency key.
	// Older records are ignored and overwritten. Zero means
	// DefaultIdempotencyTTL.
	IdempotencyTTL time.Duration
}

// Store is a Pebble-backed store.Posts and store.Graph. It is safe for
// concurrent use. Methods must not be called after Close.
type Store struct {
	db  *pebble.DB
	ttl time.Duration
	now func() time.Time // the clock for idempotency TTLs; tests replace it

	// locks serialise read-check-write sections on one subject (an
	// idempotency key, a followee's edges and count, a follower's
	// following count, a post's tombstone): Pebble has no transactions,
	// so two concurrent Follows could otherwise both see "no edge" and
	// count twice, or both see room under the following limit and pass it
	// together. They are striped, so that writes on different subjects
	// commit concurrently and Pebble syncs them together; one global lock
	// held every post's synced write in line behind the last.
	locks [64]sync.Mutex
}

// lock locks the stripe of subject and returns its unlock.
func (s *Store) lock(subject string) func() {
	m := &s.locks[s.stripe(subject)]
	m.Lock()
	return m.Unlock
}

// lockBoth locks the stripes of a and b, lower stripe first so that two
// callers locking the same pair in opposite orders cannot deadlock, and
// returns their unlock. Every path takes at most two stripes, in this
// order, or all of them (lockAll).
func (s *Store) lockBoth(a, b string) func() {
	i, j := s.stripe(a), s.stripe(b)
	if i == j {
		return s.lock(a)
	}
	if i > j {
		i, j = j, i
	}
	s.locks[i].Lock()
	s.locks[j].Lock()
	return func() {
		s.locks[j].Unlock()
		s.locks[i].Unlock()
	}
}

// lockAll locks every stripe, in order, and returns their unlock.
func (s *Store) lockAll() func() {
	for i := range s.locks {
		s.locks[i].Lock()
	}
	return func() {
		for i := range s.locks {
			s.locks[i].Unlock()
		}
	}
}

func (s *Store) stripe(subject string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(subject))
	return h.Sum32() % uint32(len(s.locks))
}

const (
	prefixPost           = 'p'
	prefixAuthor         = 'a'
	prefixOutbox         = 'o'
	prefixIdem           = 'i'
	prefixFollowers      = 'f'
	prefixFollowing      = 'g'
	prefixCount          = 'c'
	prefixFollowingCount = 'h'
)

// Open opens, or creates, the database in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.IdempotencyTTL <= 0 {
		opts.IdempotencyTTL = DefaultIdempotencyTTL
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, feed.Unavailable("pebble", fmt.Errorf("open %s: %w", dir, err))
	}
	return &Store{db: db, ttl: opts.IdempotencyTTL, now: time.Now}, nil
}

// Close flushes and closes the database.
// Ping reads a key no record has: nil if the database reads.
func (s *Store) Ping(context.Context) error {
	_, closer, err := s.db.Get([]byte("\x00herald-probe"))
	if err == nil {
		closer.Close()
		return nil
	}
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	return feed.Unavailable("pebble", err)
}

func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return feed.Unavailable("pebble", err)
	}
	return nil
}

// CreatePost implements store.Posts.
func (s *Store) CreatePost(ctx context.Context, p feed.Post, key string) (feed.Post, bool, error) {
	if err := ctx.Err(); err != nil {
		return feed.Post{}, false, err
	}
	now := s.now()
	var idemKey []byte
	if key != "" {
		// A post without a key has a fresh ID and needs no lock.
		defer s.lock("idem\x00" + p.Author + "\x00" + key)()
		idemKey = userKey(prefixIdem, p.Author, key)
		v, ok, err := s.get(idemKey)
		if err != nil {
			return feed.Post{}, false, err
		}
		if ok {
			id, written, err := decodeIdem(v)
			if err != nil {
				return feed.Post{}, false, corrupt("idempotency", idemKey)
			}
			if now.Sub(written) < s.ttl {
				prev, _, found, err := s.getPost(id)
				if err != nil {
					return feed.Post{}, false, err
				}
				if found {
					return prev, false, nil
				}
				// The record outlived its post, which only a lost write
				// could cause; treat the key as fresh.
			}
		}
	}

	b := s.db.NewBatch()
	defer b.Close()
	set(b, idKey(prefixPost, p.ID), encodePost(p, false))
	set(b, authorKey(p.Author, p.ID), nil)
	set(b, idKey(prefixOutbox, p.ID), nil)
	if idemKey != nil {
		set(b, idemKey, encodeIdem(p.ID, now))
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return feed.Post{}, false, feed.Unavailable("pebble", err)
	}
	return p, true, nil
}

// GetPosts implements store.Posts.
func (s *Store) GetPosts(ctx context.Context, ids []feed.PostID) ([]feed.Post, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]feed.Post, 0, len(ids))
	for _, id := range ids {
		p, deleted, ok, err := s.getPost(id)
		if err != nil {
			return nil, err
		}
		if ok && !deleted {
			out = append(out, p)
		}
	}
	return out, nil
}

// DeletePost implements store.Posts. The post record stays as a tombstone
// so that a late replay of its idempotency key cannot create it again.
// The outbox marker goes too: publishing PostCreated for a post already
// deleted would put it back into timelines.
func (s *Store) DeletePost(ctx context.Context, id feed.PostID) (feed.Post, error) {
	if err := ctx.Err(); err != nil {
		return feed.Post{}, err
	}
	defer s.lock("post\x00" + id.String())()

	p, deleted, ok, err := s.getPost(id)
	if err != nil {
		return feed.Post{}, err
	}
	if !ok || deleted {
		return feed.Post{}, fmt.Errorf("post %d: %w", id, feed.ErrNotFound)
	}
	b := s.db.NewBatch()
	defer b.Close()
	set(b, idKey(prefixPost, id), encodePost(p, true))
	del(b, authorKey(p.Author, id))
	del(b, idKey(prefixOutbox, id))
	if err := b.Commit(pebble.Sync); err != nil {
		return feed.Post{}, feed.Unavailable("pebble", err)
	}
	return p, nil
}

// ListByAuthor implements store.Posts.
func (s *Store) ListByAuthor(ctx context.Context, author string, before feed.PostID, limit int) ([]feed.Post, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prefix := userPrefix(prefixAuthor, author)
	lower := prefix
	if before != 0 {
		// The index holds ^id, so "id < before" is "^id >= ^(before-1)".
		lower = authorKey(author, before-1)
	}
	var ids []feed.PostID
	err := s.scan(lower, prefixEnd(prefix), limit, func(k []byte) {
		ids = append(ids, feed.PostID(^binary.BigEndian.Uint64(k[len(prefix):])))
	})
	if err != nil {
		return nil, err
	}
	// Without a snapshot a post may be deleted between the scan and the
	// read; GetPosts drops it, so a page may come back short.
	return s.GetPosts(ctx, ids)
}

// MarkPublished implements store.Posts. Marking a post twice is harmless.
func (s *Store) MarkPublished(ctx context.Context, id feed.PostID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.Delete(idKey(prefixOutbox, id), pebble.Sync); err != nil {
		return feed.Unavailable("pebble", err)
	}
	return nil
}

// ListUnpublished implements store.Posts.
func (s *Store) ListUnpublished(ctx context.Context, before feed.PostID, limit int) ([]feed.Post, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lower := []byte{prefixOutbox, '/'}
	upper := prefixEnd(lower)
	if before != 0 {
		upper = idKey(prefixOutbox, before)
	}
	var ids []feed.PostID
	err := s.scan(lower, upper, limit, func(k []byte) {
		ids = append(ids, feed.PostID(binary.BigEndian.Uint64(k[len(lower):])))
	})
	if err != nil {
		return nil, err
	}
	return s.GetPosts(ctx, ids)
}

// Follow implements store.Graph.
func (s *Store) Follow(ctx context.Context, follower, followee string) (bool, error) {
	return s.setEdge(ctx, follower, followee, true, 0)
}

// FollowLimited implements store.Graph. The check and the write hold the
// follower's lock, so racing follows by one user cannot together pass
// maxFollowing.
func (s *Store) FollowLimited(ctx context.Context, follower, followee string, maxFollowing int64) (bool, error) {
	return s.setEdge(ctx, follower, followee, true, maxFollowing)
}

// Unfollow implements store.Graph.
func (s *Store) Unfollow(ctx context.Context, follower, followee string) (bool, error) {
	return s.setEdge(ctx, follower, followee, false, 0)
}

// setEdge adds (on) or removes the edge, with the followee's follower count
// and the follower's following count, in one batch. It holds the locks of
// both subjects: every write of the edge or of either count takes them.
func (s *Store) setEdge(ctx context.Context, follower, followee string, on bool, maxFollowing int64) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	defer s.lockBoth("edges\x00"+followee, "following\x00"+follower)()

	fKey := userKey(prefixFollowers, followee, follower)
	_, exists, err := s.get(fKey)
	if err != nil {
		return false, err
	}
	if exists == on {
		return false, nil
	}
	m, err := s.followingCount(follower)
	if err != nil {
		return false, err
	}
	if on && maxFollowing > 0 && m >= uint64(maxFollowing) {
		return false, fmt.Errorf("%w: %s already follows %d accounts; the limit is %d", feed.ErrFailedPrecondition, follower, m, maxFollowing)
	}
	n, err := s.count(followee)
	if err != nil {
		return false, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	gKey := userKey(prefixFollowing, follower, followee)
	if on {
		set(b, fKey, nil)
		set(b, gKey, nil)
		n++
		m++
	} else {
		del(b, fKey)
		del(b, gKey)
		n = max(n, 1) - 1
		m = max(m, 1) - 1
	}
	set(b, countKey(followee), binary.BigEndian.AppendUint64(nil, n))
	set(b, followingCountKey(follower), binary.BigEndian.AppendUint64(nil, m))
	if err := b.Commit(pebble.Sync); err != nil {
		return false, feed.Unavailable("pebble", err)
	}
	return true, nil
}

// ImportFollows stores the follows of followee by each of followers in a
// few large batches, and reports how many were new. It is for loading a
// graph in bulk (benchmarks, migrations): it sits below the graph service,
// so it publishes no Followed events, triggers no backfill and ignores the
// following limit. Existing edges are skipped, so it can be rerun.
//
// It holds every lock until it is done, so other writes wait for it: a
// new follower's following count is dropped rather than read and raised
// (the count is then taken from their g/ keys when next needed), and no
// Follow may slip a count in between.
func (s *Store) ImportFollows(ctx context.Context, followee string, followers []string) (int, error) {
	defer s.lockAll()()
	n, err := s.count(followee)
	if err != nil {
		return 0, err
	}
	const perBatch = 10_000
	added := 0
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	flush := func(opts *pebble.WriteOptions) error {
		set(b, countKey(followee), binary.BigEndian.AppendUint64(nil, n))
		if err := b.Commit(opts); err != nil {
			return feed.Unavailable("pebble", err)
		}
		b.Close()
		b = s.db.NewBatch()
		return nil
	}
	seen := make(map[string]bool, len(followers))
	for i, f := range followers {
		if i%perBatch == 0 {
			if err := ctx.Err(); err != nil {
				return added, err
			}
		}
		if seen[f] || f == followee {
			continue
		}
		seen[f] = true
		fKey := userKey(prefixFollowers, followee, f)
		if _, exists, err := s.get(fKey); err != nil {
			return added, err
		} else if exists {
			continue
		}
		set(b, fKey, nil)
		set(b, userKey(prefixFollowing, f, followee), nil)
		del(b, followingCountKey(f))
		n++
		added++
		if added%perBatch == 0 {
			if err := flush(pebble.NoSync); err != nil {
				return added, err
			}
		}
	}
	return added, flush(pebble.Sync)
}

// IsFollowing implements store.Graph.
func (s *Store) IsFollowing(ctx context.Context, follower, followee string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	_, exists, err := s.get(userKey(prefixFollowers, followee, follower))
	return exists, err
}

// Followers implements store.Graph. Followers come in byte order of their
// IDs; the paging state is the last ID returned.
func (s *Store) Followers(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error) {
	return s.listEdges(ctx, prefixFollowers, user, state, limit)
}

// Following implements store.Graph, paging like Followers.
func (s *Store) Following(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error) {
	return s.listEdges(ctx, prefixFollowing, user, state, limit)
}

func (s *Store) listEdges(ctx context.Context, table byte, user string, state []byte, limit int) ([]string, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if limit <= 0 {
		return nil, nil, nil
	}
	prefix := userPrefix(table, user)
	lower := prefix
	if state != nil {
		// The smallest key after <prefix><state> is <prefix><state>\x00.
		lower = append(append(append([]byte(nil), prefix...), state...), 0)
	}
	var ids []string
	more := false
	// Scanning one past the page tells whether a next page exists, so the
	// last page comes back with a nil state rather than an empty page after.
	err := s.scan(lower, prefixEnd(prefix), limit+1, func(k []byte) {
		if len(ids) == limit {
			more = true
			return
		}
		ids = append(ids, string(k[len(prefix):]))
	})
	if err != nil {
		return nil, nil, err
	}
	var next []byte
	if more {
		next = []byte(ids[len(ids)-1])
	}
	return ids, next, nil
}

// FollowerCount implements store.Graph.
func (s *Store) FollowerCount(ctx context.Context, user string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.count(user)
	return int64(n), err
}

func (s *Store) count(user string) (uint64, error) {
	n, _, err := s.getCount("count", countKey(user))
	return n, err
}

// FollowingCount implements store.Graph.
func (s *Store) FollowingCount(ctx context.Context, user string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.followingCount(user)
	return int64(n), err
}

func (s *Store) followingCount(user string) (uint64, error) {
	n, ok, err := s.getCount("following count", followingCountKey(user))
	if err != nil || ok {
		return n, err
	}
	// No count: the user's follows predate it, or ImportFollows added to
	// them. The keys are the truth; count them.
	prefix := userPrefix(prefixFollowing, user)
	err = s.scan(prefix, prefixEnd(prefix), math.MaxInt, func([]byte) { n++ })
	return n, err
}

// getCount reads the uint64 count at key, and whether there is one.
func (s *Store) getCount(what string, key []byte) (uint64, bool, error) {
	v, ok, err := s.get(key)
	if err != nil || !ok {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, corrupt(what, key)
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// get returns a copy of the value at key, and whether there was one.
func (s *Store) get(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, feed.Unavailable("pebble", err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

func (s *Store) getPost(id feed.PostID) (p feed.Post, deleted, ok bool, err error) {
	k := idKey(prefixPost, id)
	v, ok, err := s.get(k)
	if err != nil || !ok {
		return feed.Post{}, false, false, err
	}
	p, deleted, err = decodePost(id, v)
	if err != nil {
		return feed.Post{}, false, false, corrupt("post", k)
	}
	return p, deleted, true, nil
}

// scan calls fn with each key in [lower, upper), in order, up to limit keys.
// The key is only valid during the call.
func (s *Store) scan(lower, upper []byte, limit int, fn func(k []byte)) error {
	if limit <= 0 {
		return nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return feed.Unavailable("pebble", err)
	}
	n := 0
	for ok := it.First(); ok && n < limit; ok = it.Next() {
		fn(it.Key())
		n++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return feed.Unavailable("pebble", err)
	}
	return nil
}

func corrupt(what string, key []byte) error {
	return feed.DataLoss("pebble", fmt.Errorf("corrupt %s record at %q", what, key))
}

func set(b *pebble.Batch, k, v []byte) {
	// Batch.Set only fails on a closed or read-only batch, which is a bug.
	if err := b.Set(k, v, nil); err != nil {
		panic(err)
	}
}

func del(b *pebble.Batch, k []byte) {
	if err := b.Delete(k, nil); err != nil {
		panic(err)
	}
}

// quietLogger drops Pebble's routine info lines ("Found 0 WALs") and
// reports its errors through slog.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	slog.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (quietLogger) Fatalf(format string, args ...any) {
	panic("pebble: " + fmt.Sprintf(format, args...))
}
