package pebblestore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/pebblestore"
	"github.com/herald-feed/herald/services/platform/store/storetest"
)

func open(t *testing.T, dir string, opts pebblestore.Options) *pebblestore.Store {
	t.Helper()
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%q) error: %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return open(t, t.TempDir(), pebblestore.Options{})
	})
}

func newPost(g *idgen.Generator, author, text string) feed.Post {
	id := g.Next()
	return feed.Post{ID: id, Author: author, Text: text, Created: idgen.Time(id)}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	g, _ := idgen.New(1, nil)
	live, gone := newPost(g, "alice", "durable ✓"), newPost(g, "alice", "deleted")

	s, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		t.Fatalf("Open error: %v", err)
	}
	for _, p := range []feed.Post{live, gone} {
		if _, _, err := s.CreatePost(ctx, p, "key "+p.Text); err != nil {
			t.Fatalf("CreatePost error: %v", err)
		}
	}
	if _, err := s.DeletePost(ctx, gone.ID); err != nil {
		t.Fatalf("DeletePost error: %v", err)
	}
	if _, err := s.Follow(ctx, "bob", "alice"); err != nil {
		t.Fatalf("Follow error: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() error: %v", err)
	}

	s = open(t, dir, pebblestore.Options{})
	if got, err := s.ListByAuthor(ctx, "alice", 0, 10); err != nil || len(got) != 1 || got[0].ID != live.ID || got[0].Text != live.Text || !got[0].Created.Equal(live.Created) {
		t.Errorf("after reopen ListByAuthor(alice) = %v, %v; want [%v]", got, err, live)
	}
	if got, err := s.GetPosts(ctx, []feed.PostID{gone.ID}); err != nil || len(got) != 0 {
		t.Errorf("after reopen GetPosts(deleted) = %v, %v; want []", got, err)
	}
	if got, err := s.ListUnpublished(ctx, 0, 10); err != nil || len(got) != 1 || got[0].ID != live.ID {
		t.Errorf("after reopen ListUnpublished = %v, %v; want [%v]", got, err, live)
	}
	if got, err := s.FollowerCount(ctx, "alice"); err != nil || got != 1 {
		t.Errorf("after reopen FollowerCount(alice) = %d, %v; want 1", got, err)
	}
	if got, err := s.Follow(ctx, "bob", "alice"); err != nil || got {
		t.Errorf("after reopen Follow(bob, alice) = %v, %v; want false", got, err)
	}
	retry := newPost(g, "alice", "retry")
	if got, created, err := s.CreatePost(ctx, retry, "key "+live.Text); err != nil || created || got.ID != live.ID {
		t.Errorf("after reopen CreatePost(retry) = %d, %v, %v; want %d, false, nil", got.ID, created, err, live.ID)
	}
}

func TestIdempotencyKeyExpires(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), pebblestore.Options{IdempotencyTTL: time.Hour})
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	pebblestore.SetClock(s, func() time.Time { return now })
	g, _ := idgen.New(1, nil)
	p := make([]feed.Post, 5)
	for i := range p {
		p[i] = newPost(g, "alice", fmt.Sprintf("attempt %d", i))
	}

	steps := []struct {
		name        string
		advance     time.Duration
		post        feed.Post
		wantCreated bool
		want        feed.Post
	}{
		{"first", 0, p[0], true, p[0]},
		{"replay at once", 0, p[1], false, p[0]},
		{"replay just inside the TTL", time.Hour - time.Nanosecond, p[2], false, p[0]},
		{"replay at the TTL", time.Nanosecond, p[3], true, p[3]},
		{"replay after the new record", time.Minute, p[4], false, p[3]},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		got, created, err := s.CreatePost(ctx, st.post, "k")
		if err != nil || created != st.wantCreated || got.ID != st.want.ID {
			t.Errorf("%s: CreatePost = %d, %v, %v; want %d, %v, nil", st.name, got.ID, created, err, st.want.ID, st.wantCreated)
		}
	}
	if got, err := s.ListByAuthor(ctx, "alice", 0, 10); err != nil || len(got) != 2 {
		t.Errorf("ListByAuthor(alice) = %v, %v; want 2 posts", got, err)
	}
}

func TestImportFollows(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), pebblestore.Options{})
	if _, err := s.Follow(ctx, "f00000", "star"); err != nil {
		t.Fatal(err)
	}
	var fs []string
	for i := range 25_000 {
		fs = append(fs, fmt.Sprintf("f%05d", i))
	}
	fs = append(fs, "f00001", "star") // a duplicate, and the followee itself
	added, err := s.ImportFollows(ctx, "star", fs)
	if err != nil || added != 24_999 {
		t.Fatalf("ImportFollows = %d, %v; want 24999 new (f00000 followed already)", added, err)
	}
	if n, err := s.FollowerCount(ctx, "star"); err != nil || n != 25_000 {
		t.Errorf("FollowerCount = %d, %v; want 25000", n, err)
	}
	if ok, err := s.IsFollowing(ctx, "f24999", "star"); err != nil || !ok {
		t.Errorf("IsFollowing(f24999, star) = %v, %v; want true", ok, err)
	}
	page, _, err := s.Following(ctx, "f12345", nil, 10)
	if err != nil || len(page) != 1 || page[0] != "star" {
		t.Errorf("Following(f12345) = %v, %v; want [star]", page, err)
	}
	if added, err := s.ImportFollows(ctx, "star", fs); err != nil || added != 0 {
		t.Errorf("second ImportFollows = %d, %v; want 0 new", added, err)
	}
	var listed int
	var state []byte
	for {
		page, next, err := s.Followers(ctx, "star", state, 1000)
		if err != nil {
			t.Fatal(err)
		}
		listed += len(page)
		if len(next) == 0 {
			break
		}
		state = next
	}
	if listed != 25_000 {
		t.Errorf("Followers listed %d; want 25000", listed)
	}

	// Each follower's following count takes the imported edge in, and the
	// limit counts it.
	if _, err := s.Follow(ctx, "f00002", "other"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user string
		want int64
	}{{"f00000", 1}, {"f00002", 2}, {"f24999", 1}, {"star", 0}} {
		if n, err := s.FollowingCount(ctx, c.user); err != nil || n != c.want {
			t.Errorf("FollowingCount(%s) after ImportFollows = %d, %v; want %d", c.user, n, err, c.want)
		}
	}
	if _, err := s.FollowLimited(ctx, "f00002", "third", 2); !errors.Is(err, feed.ErrFailedPrecondition) {
		t.Errorf("FollowLimited(f00002, third, 2) with an imported and a followed edge = %v; want feed.ErrFailedPrecondition", err)
	}
	if _, err := s.FollowLimited(ctx, "f00003", "third", 2); err != nil {
		t.Errorf("FollowLimited(f00003, third, 2) with one imported edge = %v; want nil", err)
	}
	if n, err := s.FollowingCount(ctx, "f00003"); err != nil || n != 2 {
		t.Errorf("FollowingCount(f00003) after a follow on top of an import = %d, %v; want 2", n, err)
	}
}
