package cassandrastore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
)

// The driver prepares each statement once per connection and caches it by
// its text, so these are constants and every value is a bind marker.
const (
	stmtClaimKey = `INSERT INTO idempotency (author, key, post_id) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?`

	stmtInsertPost     = `INSERT INTO posts_by_id (post_id, author, text, created_at, deleted) VALUES (?, ?, ?, ?, false)`
	stmtInsertByAuthor = `INSERT INTO posts_by_author (author, bucket, post_id, text, created_at) VALUES (?, ?, ?, ?, ?)`
	stmtInsertBucket   = `INSERT INTO author_buckets (author, bucket) VALUES (?, ?)`
	stmtInsertOutbox   = `INSERT INTO outbox (shard, post_id) VALUES (?, ?)`

	stmtGetPost = `SELECT author, text, created_at, deleted FROM posts_by_id WHERE post_id = ?`

	stmtTombstone      = `UPDATE posts_by_id SET deleted = true WHERE post_id = ?`
	stmtDeleteByAuthor = `DELETE FROM posts_by_author WHERE author = ? AND bucket = ? AND post_id = ?`
	stmtDeleteOutbox   = `DELETE FROM outbox WHERE shard = ? AND post_id = ?`

	stmtBuckets       = `SELECT bucket FROM author_buckets WHERE author = ?`
	stmtBucketsBefore = `SELECT bucket FROM author_buckets WHERE author = ? AND bucket <= ?`
	stmtByAuthor      = `SELECT post_id, text, created_at FROM posts_by_author WHERE author = ? AND bucket = ? LIMIT ?`
	stmtByAuthorBelow = `SELECT post_id, text, created_at FROM posts_by_author WHERE author = ? AND bucket = ? AND post_id < ? LIMIT ?`

	stmtOutbox      = `SELECT post_id FROM outbox WHERE shard = ? LIMIT ?`
	stmtOutboxBelow = `SELECT post_id FROM outbox WHERE shard = ? AND post_id < ? LIMIT ?`
)

const (
	// bucketMillis is the width of a posts_by_author partition: a week (see
	// the package comment for why).
	bucketMillis = 7 * 24 * 60 * 60 * 1000
	// outboxShards is how many partitions hold outbox markers. The relay
	// reads all of them, so it must never change without moving the
	// markers.
	outboxShards = 16
	// readConcurrency bounds the single-partition reads GetPosts and
	// ListUnpublished run at once.
	readConcurrency = 32
)

// dbID converts a post ID to the bigint that stores it. Snowflake IDs keep
// the top bit 0, so every ID Herald mints converts; ok is false for the
// others, which cannot be stored and so cannot exist.
func dbID(id feed.PostID) (int64, bool) {
	if id > math.MaxInt64 {
		return 0, false
	}
	return int64(id), true
}

// bucketOf is the posts_by_author bucket of id: weeks since the Unix epoch
// of its timestamp. A larger ID never has a smaller bucket, so walking
// buckets newest first and IDs newest first within each is newest first.
func bucketOf(id int64) int {
	return int(idgen.Time(feed.PostID(id)).UnixMilli() / bucketMillis)
}

// shardOf spreads outbox markers over the shards by a multiplicative hash.
// The ID's low bits are a per-millisecond sequence that is usually 0 at low
// rates, so id % 16 would put almost every marker in one shard.
func shardOf(id int64) int {
	return int(uint64(id) * 0x9E3779B97F4A7C15 >> 60)
}

// CreatePost implements store.Posts.
//
// With a key, an LWT first claims (author, key) for p.ID. If the key is
// already claimed, the post it names is returned with created == false.
// Then the post, its author-list row, its bucket and its outbox marker go in
// one logged batch. The claim and the batch are two writes: if the batch
// fails after the claim (a timeout, a crash), the key names a post that was
// never stored. The caller's retry then finds the claim and no post, and
// stores the retried post under the claimed ID, returning created == true,
// so the post is written exactly once under one ID and its event is
// published; the retry, not a NotFound, completes the write. Two racing
// requests with one key can both take that path; both write the same ID,
// and the event log deduplicates the double publish by post ID.
func (s *Store) CreatePost(ctx context.Context, p feed.Post, key string) (feed.Post, bool, error) {
	if err := ctx.Err(); err != nil {
		return feed.Post{}, false, err
	}
	id, ok := dbID(p.ID)
	if !ok {
		return feed.Post{}, false, fmt.Errorf("cassandra: post ID %d does not fit a bigint", p.ID)
	}
	if key != "" {
		var prev int64
		applied, err := s.session.Query(stmtClaimKey, p.Author, key, id, s.ttl).
			WithContext(ctx).MapScanCAS(map[string]any{"post_id": &prev})
		if err != nil {
			return feed.Post{}, false, fail("CreatePost: claim idempotency key", err)
		}
		if !applied {
			existing, _, found, err := s.getPost(ctx, prev)
			if err != nil {
				return feed.Post{}, false, err
			}
			if found {
				return existing, false, nil
			}
			id, p.ID = prev, feed.PostID(prev)
		}
	}

	created := p.Created.UTC()
	bucket := bucketOf(id)
	b := s.session.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Query(stmtInsertPost, id, p.Author, p.Text, created)
	b.Query(stmtInsertByAuthor, p.Author, bucket, id, p.Text, created)
	b.Query(stmtInsertBucket, p.Author, bucket)
	b.Query(stmtInsertOutbox, shardOf(id), id)
	if err := s.session.ExecuteBatch(b); err != nil {
		return feed.Post{}, false, fail("CreatePost", err)
	}
	return p, true, nil
}

// GetPosts implements store.Posts. Each post is its own partition, so the
// reads run concurrently, each routed to a replica of its post.
func (s *Store) GetPosts(ctx context.Context, ids []feed.PostID) ([]feed.Post, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	found := make([]feed.Post, len(ids))
	live := make([]bool, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readConcurrency)
	for i, id := range ids {
		n, ok := dbID(id)
		if !ok {
			continue
		}
		g.Go(func() error {
			p, deleted, ok, err := s.getPost(gctx, n)
			found[i], live[i] = p, ok && !deleted
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]feed.Post, 0, len(ids))
	for i, p := range found {
		if live[i] {
			out = append(out, p)
		}
	}
	return out, nil
}

// getPost reads one post, tombstone or not.
func (s *Store) getPost(ctx context.Context, id int64) (p feed.Post, deleted, found bool, err error) {
	var created time.Time
	err = s.session.Query(stmtGetPost, id).WithContext(ctx).Scan(&p.Author, &p.Text, &created, &deleted)
	if err == gocql.ErrNotFound {
		return feed.Post{}, false, false, nil
	}
	if err != nil {
		return feed.Post{}, false, false, fail("read post", err)
	}
	p.ID, p.Created = feed.PostID(id), created.UTC()
	return p, deleted, true, nil
}

// DeletePost implements store.Posts. The posts_by_id row stays as a
// tombstone so that a replay of the post's idempotency key finds it and
// cannot create it again; the author-list row and the outbox marker go, in
// the same logged batch.
func (s *Store) DeletePost(ctx context.Context, id feed.PostID) (feed.Post, error) {
	if err := ctx.Err(); err != nil {
		return feed.Post{}, err
	}
	n, ok := dbID(id)
	if !ok {
		return feed.Post{}, fmt.Errorf("post %d: %w", id, feed.ErrNotFound)
	}
	p, deleted, found, err := s.getPost(ctx, n)
	if err != nil {
		return feed.Post{}, err
	}
	if !found || deleted {
		return feed.Post{}, fmt.Errorf("post %d: %w", id, feed.ErrNotFound)
	}
	b := s.session.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Query(stmtTombstone, n)
	b.Query(stmtDeleteByAuthor, p.Author, bucketOf(n), n)
	b.Query(stmtDeleteOutbox, shardOf(n), n)
	if err := s.session.ExecuteBatch(b); err != nil {
		return feed.Post{}, fail("DeletePost", err)
	}
	return p, nil
}

// ListByAuthor implements store.Posts. It walks the author's buckets from
// the one holding before (or the newest), newest first, reading at most the
// rows it still needs from each, and stops at limit or at the author's
// oldest bucket.
func (s *Store) ListByAuthor(ctx context.Context, author string, before feed.PostID, limit int) ([]feed.Post, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	// Every stored ID is below 2^63, so a larger bound is no bound.
	bound, bounded := dbID(before)
	bounded = bounded && before != 0

	var buckets *gocql.Iter
	if bounded {
		buckets = s.session.Query(stmtBucketsBefore, author, bucketOf(bound)).WithContext(ctx).PageSize(64).Iter()
	} else {
		buckets = s.session.Query(stmtBuckets, author).WithContext(ctx).PageSize(64).Iter()
	}
	var out []feed.Post
	var bucket int
	for len(out) < limit && buckets.Scan(&bucket) {
		want := limit - len(out)
		var q *gocql.Query
		if bounded {
			q = s.session.Query(stmtByAuthorBelow, author, bucket, bound, want)
		} else {
			q = s.session.Query(stmtByAuthor, author, bucket, want)
		}
		iter := q.WithContext(ctx).PageSize(want).Iter()
		var (
			id      int64
			text    string
			created time.Time
		)
		for iter.Scan(&id, &text, &created) {
			out = append(out, feed.Post{ID: feed.PostID(id), Author: author, Text: text, Created: created.UTC()})
		}
		if err := iter.Close(); err != nil {
			buckets.Close()
			return nil, fail("ListByAuthor", err)
		}
	}
	if err := buckets.Close(); err != nil {
		return nil, fail("ListByAuthor: buckets", err)
	}
	return out, nil
}

// MarkPublished implements store.Posts. Deleting a marker twice is
// harmless.
func (s *Store) MarkPublished(ctx context.Context, id feed.PostID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n, ok := dbID(id)
	if !ok {
		return nil
	}
	return fail("MarkPublished", s.session.Query(stmtDeleteOutbox, shardOf(n), n).WithContext(ctx).Exec())
}

// ListUnpublished implements store.Posts. It reads the oldest limit markers
// below before from every shard at once, keeps the oldest limit of them all,
// and reads their posts.
func (s *Store) ListUnpublished(ctx context.Context, before feed.PostID, limit int) ([]feed.Post, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	bound, bounded := dbID(before)
	bounded = bounded && before != 0

	perShard := make([][]feed.PostID, outboxShards)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readConcurrency)
	for shard := range outboxShards {
		g.Go(func() error {
			var q *gocql.Query
			if bounded {
				q = s.session.Query(stmtOutboxBelow, shard, bound, limit)
			} else {
				q = s.session.Query(stmtOutbox, shard, limit)
			}
			iter := q.WithContext(gctx).PageSize(limit).Iter()
			var id int64
			for iter.Scan(&id) {
				perShard[shard] = append(perShard[shard], feed.PostID(id))
			}
			return fail("ListUnpublished", iter.Close())
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	ids := slices.Concat(perShard...)
	slices.Sort(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	posts, err := s.GetPosts(ctx, ids)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(posts, func(a, b feed.Post) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return posts, nil
}
