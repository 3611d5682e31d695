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
package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
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
	// idempotency key, a followee's edges and count, a post's tombstone):
	// Pebble has no transactions, so two concurrent Follows could
	// otherwise both see "no edge" and count twice. They are striped, so
	// that writes on different subjects commit concurrently and Pebble
	// syncs them together; one global lock held every post's synced write
	// in line behind the last.
	locks [64]sync.Mutex
}

// lock locks the stripe of subject and returns its unlock.
func (s *Store) lock(subject string) func() {
	h := fnv.New32a()
	h.Write([]byte(subject))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}

const (
	prefixPost      = 'p'
	prefixAuthor    = 'a'
	prefixOutbox    = 'o'
	prefixIdem      = 'i'
	prefixFollowers = 'f'
	prefixFollowing = 'g'
	prefixCount     = 'c'
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
	return s.setEdge(ctx, follower, followee, true)
}

// Unfollow implements store.Graph.
func (s *Store) Unfollow(ctx context.Context, follower, followee string) (bool, error) {
	return s.setEdge(ctx, follower, followee, false)
}

func (s *Store) setEdge(ctx context.Context, follower, followee string, on bool) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	defer s.lock("edges\x00" + followee)()

	fKey := userKey(prefixFollowers, followee, follower)
	_, exists, err := s.get(fKey)
	if err != nil {
		return false, err
	}
	if exists == on {
		return false, nil
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
	} else {
		del(b, fKey)
		del(b, gKey)
		n = max(n, 1) - 1
	}
	set(b, countKey(followee), binary.BigEndian.AppendUint64(nil, n))
	if err := b.Commit(pebble.Sync); err != nil {
		return false, feed.Unavailable("pebble", err)
	}
	return true, nil
}

// ImportFollows stores the follows of followee by each of followers in a
// few large batches, and reports how many were new. It is for loading a
// graph in bulk (benchmarks, migrations): it sits below the graph service,
// so it publishes no Followed events and triggers no backfill. Existing
// edges are skipped, so it can be rerun.
func (s *Store) ImportFollows(ctx context.Context, followee string, followers []string) (int, error) {
	defer s.lock("edges\x00" + followee)()
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
	v, ok, err := s.get(countKey(user))
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, corrupt("count", countKey(user))
	}
	return binary.BigEndian.Uint64(v), nil
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
