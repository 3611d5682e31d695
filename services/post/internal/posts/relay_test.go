package posts_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
)

// bounded returns a context that ends after 10s, so that a relay which
// never drains its outbox fails the test (the store then refuses the
// context) instead of hanging it.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// --- Relay ---------------------------------------------------------------

func TestRelayRepublishesStalePosts(t *testing.T) {
	f := newFixture(t)
	ctx := bounded(t)
	f.pub.fail()
	p := f.create(t, "alice", "hello", "")
	f.pub.restore()
	r := f.relay(5 * time.Second)

	// Not yet stale: the relay leaves it alone.
	n, err := r.Scan(ctx, base.Add(5*time.Second-time.Millisecond))
	if n != 0 || err != nil {
		t.Errorf("Scan before the timeout = %d, %v; want 0, nil", n, err)
	}
	if evs := f.pub.published(); len(evs) != 0 {
		t.Errorf("Scan before the timeout published %v; want nothing", evs)
	}
	if got, want := f.pending(t), []feed.PostID{p.ID}; !slices.Equal(got, want) {
		t.Errorf("outbox = %v; want %v", got, want)
	}

	n, err = r.Scan(ctx, base.Add(6*time.Second))
	if n != 1 || err != nil {
		t.Fatalf("Scan after the timeout = %d, %v; want 1, nil", n, err)
	}
	evs := f.pub.published()
	want := event.PostCreated{Post: p.ID, Author: "alice", Created: p.Created}
	if len(evs) != 1 {
		t.Fatalf("Scan published %v; want [%+v]", evs, want)
	}
	if pc, ok := evs[0].(event.PostCreated); !ok || pc.Post != want.Post || pc.Author != want.Author || !pc.Created.Equal(want.Created) {
		t.Errorf("Scan published %+v; want %+v", evs[0], want)
	}
	if got := f.pending(t); len(got) != 0 {
		t.Errorf("outbox after Scan = %v; want empty", got)
	}

	// Nothing is left to republish.
	if n, err := r.Scan(ctx, base.Add(time.Hour)); n != 0 || err != nil {
		t.Errorf("second Scan = %d, %v; want 0, nil", n, err)
	}
	if evs := f.pub.published(); len(evs) != 1 {
		t.Errorf("second Scan published %v; want nothing new", evs[1:])
	}
}

func TestRelayOnlyStalePostsAndManyPages(t *testing.T) {
	f := newFixture(t)
	ctx := bounded(t)
	f.pub.fail()
	const total = 230 // more than the relay's page of 100
	for i := range total {
		f.create(t, "alice", fmt.Sprintf("post %d", i), "")
	}
	f.pub.restore()
	r := f.relay(time.Second)

	// As of base+1s+200ms, posts 0..199 (minted at base+0..199ms) are
	// older than the timeout, and 200..229 are not.
	n, err := r.Scan(ctx, base.Add(time.Second+200*time.Millisecond))
	if n != 200 || err != nil {
		t.Fatalf("Scan = %d, %v; want 200, nil", n, err)
	}
	seen := make(map[feed.PostID]bool)
	for _, ev := range f.pub.published() {
		pc, ok := ev.(event.PostCreated)
		if !ok {
			t.Fatalf("Scan published %T; want event.PostCreated", ev)
		}
		if seen[pc.Post] {
			t.Errorf("Scan published post %d twice", pc.Post)
		}
		seen[pc.Post] = true
	}
	for i := range total {
		if want := i < 200; seen[idAt(i)] != want {
			t.Errorf("post %d (minted at base+%dms) republished = %v; want %v", idAt(i), i, seen[idAt(i)], want)
		}
	}
	if got := f.pending(t); len(got) != total-200 || got[0] != idAt(200) {
		t.Errorf("outbox after Scan holds %d posts from %v; want %d from %d", len(got), got[:min(1, len(got))], total-200, idAt(200))
	}
}

func TestRelayPublishFailureStopsScan(t *testing.T) {
	f := newFixture(t)
	ctx := bounded(t)
	f.pub.fail()
	for i := range 3 {
		f.create(t, "alice", fmt.Sprintf("post %d", i), "")
	}
	// The first republish lands, then NATS goes away again.
	f.pub.mu.Lock()
	f.pub.failAfter = 1
	f.pub.mu.Unlock()

	n, err := f.relay(time.Second).Scan(ctx, base.Add(time.Hour))
	if n != 1 || !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("Scan = %d, %v; want 1, ErrUnavailable", n, err)
	}
	if got, want := f.pending(t), []feed.PostID{idAt(1), idAt(2)}; !slices.Equal(got, want) {
		t.Errorf("outbox = %v; want %v (oldest republished first)", got, want)
	}
}

func TestRelayOutboxError(t *testing.T) {
	f := newFixture(t)
	f.pub.fail()
	f.create(t, "alice", "hello", "")
	f.pub.restore()
	r := f.relay(time.Second)
	r.Outbox = &faultyOutbox{Outbox: f.db, err: unavailable("pebble")}
	n, err := r.Scan(bounded(t), base.Add(time.Hour))
	if n != 0 || !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("Scan with the outbox down = %d, %v; want 0, ErrUnavailable", n, err)
	}
	if evs := f.pub.published(); len(evs) != 0 {
		t.Errorf("Scan published %v; want nothing", evs)
	}
}

func TestRelaySkipsDeletedPosts(t *testing.T) {
	f := newFixture(t)
	ctx := bounded(t)
	f.pub.fail()
	gone := f.create(t, "alice", "deleted", "")
	kept := f.create(t, "alice", "kept", "")
	f.pub.restore()
	if err := f.svc.Delete(ctx, gone.ID, "alice"); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	before := len(f.pub.published())
	n, err := f.relay(time.Second).Scan(ctx, base.Add(time.Hour))
	if n != 1 || err != nil {
		t.Fatalf("Scan = %d, %v; want 1, nil", n, err)
	}
	evs := f.pub.published()[before:]
	if len(evs) != 1 || evs[0].(event.PostCreated).Post != kept.ID {
		t.Errorf("Scan published %v; want only PostCreated of %d", evs, kept.ID)
	}
}

func TestRelayRun(t *testing.T) {
	f := newFixture(t)
	f.pub.fail()
	p := f.create(t, "alice", "hello", "")
	f.pub.restore()

	// The outbox says when a scan has found it empty: by then the relay
	// has republished the post and cleared its marker.
	drained := make(chan struct{}, 1)
	r := f.relay(time.Second)
	r.Outbox = &faultyOutbox{Outbox: f.db, drained: drained}

	// The post was minted at base, long before the real clock's now, so
	// the first tick republishes it.
	ctx, cancel := context.WithCancel(bounded(t))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not drain the outbox within 10s")
	}
	evs := f.pub.published()
	if len(evs) != 1 || evs[0].(event.PostCreated).Post != p.ID {
		t.Errorf("Run published %v; want one PostCreated of %d", evs, p.ID)
	}
	if got := f.pending(t); len(got) != 0 {
		t.Errorf("outbox after Run's scan = %v; want empty", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v; want nil after its context ends", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context ending")
	}
}
