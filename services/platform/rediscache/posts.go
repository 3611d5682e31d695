package rediscache

// Post bodies: cache.Posts.

import (
	"context"
	_ "embed"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
)

// Post bodies: a tombstone is one zero byte; a post is a version byte (1),
// then the creation time in Unix milliseconds, the author and the text.
const tombstone = "\x00"

func encodePost(p feed.Post) string {
	b := make([]byte, 0, 1+binary.MaxVarintLen64*2+len(p.Author)+len(p.Text))
	b = append(b, 1)
	b = binary.AppendVarint(b, p.Created.UnixMilli())
	b = binary.AppendUvarint(b, uint64(len(p.Author)))
	b = append(b, p.Author...)
	b = append(b, p.Text...)
	return string(b)
}

func decodePost(id feed.PostID, s string) (feed.Post, error) {
	if s == tombstone {
		return feed.Post{ID: id, Deleted: true}, nil
	}
	b := []byte(s)
	if len(b) < 1 || b[0] != 1 {
		return feed.Post{}, fmt.Errorf("post %d: unknown cache encoding", id)
	}
	b = b[1:]
	ms, n := binary.Varint(b)
	if n <= 0 {
		return feed.Post{}, fmt.Errorf("post %d: bad cached time", id)
	}
	b = b[n:]
	al, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < al {
		return feed.Post{}, fmt.Errorf("post %d: bad cached author", id)
	}
	b = b[n:]
	return feed.Post{ID: id, Created: time.UnixMilli(ms).UTC(), Author: string(b[:al]), Text: string(b[al:])}, nil
}

// GetPosts implements cache.Posts in one round trip: one MGET on a single
// node; on Redis Cluster, whose MGET cannot span slots, one pipeline of
// GETs, which go-redis splits by node.
func (c *Cache) GetPosts(ctx context.Context, ids []feed.PostID) (map[feed.PostID]feed.Post, error) {
	out := make(map[feed.PostID]feed.Post, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = c.postKey(id)
	}
	vals, err := c.mget(ctx, keys)
	if err != nil {
		return nil, err
	}
	decodePosts(out, ids, vals)
	return out, nil
}

// decodePosts puts into out the posts that vals, the cached values of
// ids' keys, hold, and returns them. A missing or unreadable value is a
// miss: the store has the post.
func decodePosts(out map[feed.PostID]feed.Post, ids []feed.PostID, vals []any) []feed.Post {
	var found []feed.Post
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		p, err := decodePost(ids[i], s)
		if err != nil {
			continue
		}
		out[ids[i]] = p
		found = append(found, p)
	}
	return found
}

// PutPosts implements cache.Posts. SET NX never overwrites, so neither a
// tombstone nor a newer copy is replaced by a racing refill.
func (c *Cache) PutPosts(ctx context.Context, posts []feed.Post) error {
	if len(posts) == 0 {
		return nil
	}
	pipe := c.rdb.Pipeline()
	for _, p := range posts {
		pipe.SetNX(ctx, c.postKey(p.ID), encodePost(p), c.opts.PostTTL)
	}
	return c.exec(ctx, pipe)
}

// DeletePosts implements cache.Posts: tombstones, and the delete log's
// entries that tell readers' local bodies (see localposts.go), in one
// round trip.
func (c *Cache) DeletePosts(ctx context.Context, ids []feed.PostID) error {
	if len(ids) == 0 {
		return nil
	}
	pipe := c.rdb.Pipeline()
	for _, id := range ids {
		pipe.Set(ctx, c.postKey(id), tombstone, c.opts.PostTTL)
	}
	c.queueDeleteLog(ctx, pipe, ids)
	return c.exec(ctx, pipe)
}
