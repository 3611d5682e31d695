package pebblestore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/herald-feed/herald/services/platform/feed"
)

// TestCorruptRecordIsDataLoss: a record that does not decode is
// ErrDataLoss, which no retry heals, never ErrUnavailable ("retry").
func TestCorruptRecordIsDataLoss(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	p := feed.Post{ID: 42, Author: "alice", Text: "hi", Created: time.Now()}
	if _, _, err := s.CreatePost(ctx, p, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Set(idKey(prefixPost, p.ID), []byte{0xff}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetPosts(ctx, []feed.PostID{p.ID})
	if !errors.Is(err, feed.ErrDataLoss) || errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("GetPosts of a corrupt record = %v; want an error wrapping feed.ErrDataLoss, not feed.ErrUnavailable", err)
	}
}
