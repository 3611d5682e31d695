package graph_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/herald-feed/herald/services/graph/internal/graph"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/pagetoken"
	"github.com/herald-feed/herald/services/platform/pebblestore"
)

var errInjected = errors.New("injected failure")

// recordingPublisher records the events it accepts; with err set it
// refuses them all.
type recordingPublisher struct {
	mu     sync.Mutex
	events []event.Event
	err    error
}

func (p *recordingPublisher) Publish(ctx context.Context, ev event.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.events = append(p.events, ev)
	return nil
}

func (p *recordingPublisher) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *recordingPublisher) published() []event.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

// faultyStore wraps the real store; a set error makes that method fail. It
// records the paging arguments it was given.
type faultyStore struct {
	graph.Store
	followErr, unfollowErr, listErr error

	mu        sync.Mutex
	calls     int // Follow and Unfollow calls
	lastState []byte
	lastLimit int
}

func (s *faultyStore) FollowLimited(ctx context.Context, follower, followee string, maxFollowing int64) (bool, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	if s.followErr != nil {
		return false, s.followErr
	}
	return s.Store.FollowLimited(ctx, follower, followee, maxFollowing)
}

func (s *faultyStore) Unfollow(ctx context.Context, follower, followee string) (bool, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	if s.unfollowErr != nil {
		return false, s.unfollowErr
	}
	return s.Store.Unfollow(ctx, follower, followee)
}

func (s *faultyStore) record(state []byte, limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastState, s.lastLimit = slices.Clone(state), limit
}

func (s *faultyStore) Followers(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error) {
	s.record(state, limit)
	if s.listErr != nil {
		return nil, nil, s.listErr
	}
	return s.Store.Followers(ctx, user, state, limit)
}

func (s *faultyStore) Following(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error) {
	s.record(state, limit)
	if s.listErr != nil {
		return nil, nil, s.listErr
	}
	return s.Store.Following(ctx, user, state, limit)
}

type fixture struct {
	svc    *graph.Service
	db     *pebblestore.Store
	store  *faultyStore
	pub    *recordingPublisher
	tokens *pagetoken.Codec
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureLimit(t, 0)
}

// newFixtureLimit is newFixture for a service run with -max-following
// maxFollowing (0: the default).
func newFixtureLimit(t *testing.T, maxFollowing int64) *fixture {
	t.Helper()
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatalf("pebblestore.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	f := &fixture{
		db:     db,
		store:  &faultyStore{Store: db},
		pub:    &recordingPublisher{},
		tokens: pagetoken.New([]byte("0123456789abcdef0123456789abcdef")),
	}
	f.svc = graph.New(f.store, f.pub, f.tokens, maxFollowing)
	return f
}

// following reports whether follower follows followee in the store, from
// both sides of the edge.
func (f *fixture) following(t *testing.T, follower, followee string) bool {
	t.Helper()
	ctx := context.Background()
	out, _, err := f.db.Following(ctx, follower, nil, 1000)
	if err != nil {
		t.Fatalf("store.Following(%q): %v", follower, err)
	}
	in, _, err := f.db.Followers(ctx, followee, nil, 1000)
	if err != nil {
		t.Fatalf("store.Followers(%q): %v", followee, err)
	}
	a, b := slices.Contains(out, followee), slices.Contains(in, follower)
	if a != b {
		t.Fatalf("store disagrees with itself: Following(%s) has %s = %v, Followers(%s) has %s = %v", follower, followee, a, followee, follower, b)
	}
	return a
}

func (f *fixture) follow(t *testing.T, follower, followee string) {
	t.Helper()
	if err := f.svc.Follow(context.Background(), follower, followee); err != nil {
		t.Fatalf("Follow(%q, %q) = %v; want nil", follower, followee, err)
	}
}

func isInvalid(err error, field string) bool {
	var inv *feed.InvalidError
	return errors.As(err, &inv) && inv.Field == field
}

// --- Follow and Unfollow --------------------------------------------------

func TestFollowUnfollowRejectBadInput(t *testing.T) {
	tests := []struct {
		name, follower, followee, field string
	}{
		{"empty follower", "", "bob", "follower_id"},
		{"empty followee", "alice", "", "followee_id"},
		{"both empty: follower first", "", "", "follower_id"},
		{"upper-case follower", "Alice", "bob", "follower_id"},
		{"follower with a space", "al ice", "bob", "follower_id"},
		{"follower too long", strings.Repeat("a", 65), "bob", "follower_id"},
		{"followee with a dash", "alice", "b-ob", "followee_id"},
		{"followee too long", "alice", strings.Repeat("b", 65), "followee_id"},
		{"both bad: follower first", "A", "B", "follower_id"},
		{"self-follow", "alice", "alice", "followee_id"},
	}
	ops := []struct {
		name string
		call func(s *graph.Service, follower, followee string) error
	}{
		{"Follow", func(s *graph.Service, a, b string) error { return s.Follow(context.Background(), a, b) }},
		{"Unfollow", func(s *graph.Service, a, b string) error { return s.Unfollow(context.Background(), a, b) }},
	}
	for _, op := range ops {
		for _, tt := range tests {
			t.Run(op.name+"/"+tt.name, func(t *testing.T) {
				f := newFixture(t)
				err := op.call(f.svc, tt.follower, tt.followee)
				if !isInvalid(err, tt.field) {
					t.Errorf("%s(%q, %q) = %v; want an *feed.InvalidError naming %s", op.name, tt.follower, tt.followee, err, tt.field)
				}
				if f.store.calls != 0 {
					t.Errorf("%s(%q, %q) reached the store %d times; want 0", op.name, tt.follower, tt.followee, f.store.calls)
				}
				if evs := f.pub.published(); len(evs) != 0 {
					t.Errorf("%s(%q, %q) published %v; want nothing", op.name, tt.follower, tt.followee, evs)
				}
			})
		}
	}
}

func TestSelfFollowReason(t *testing.T) {
	f := newFixture(t)
	err := f.svc.Follow(context.Background(), "alice", "alice")
	var inv *feed.InvalidError
	if !errors.As(err, &inv) || inv.Field != "followee_id" || inv.Reason == "" {
		t.Fatalf("Follow(alice, alice) = %v; want an InvalidError naming followee_id with a reason", err)
	}
	if f.following(t, "alice", "alice") {
		t.Error("Follow(alice, alice) stored a self-edge")
	}
}

func TestFollowAndUnfollow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	f.follow(t, "alice", "bob")
	if !f.following(t, "alice", "bob") {
		t.Fatal("after Follow(alice, bob), alice does not follow bob")
	}
	if f.following(t, "bob", "alice") {
		t.Error("Follow(alice, bob) made bob follow alice")
	}
	want := []event.Event{event.Followed{Follower: "alice", Followee: "bob"}}
	if evs := f.pub.published(); !slices.Equal(evs, want) {
		t.Errorf("Follow(alice, bob) published %v; want %v", evs, want)
	}

	// Idempotent: the edge stays single, and the event goes out again.
	f.follow(t, "alice", "bob")
	if n, err := f.db.FollowerCount(ctx, "bob"); err != nil || n != 1 {
		t.Errorf("FollowerCount(bob) after two Follows = %d, %v; want 1", n, err)
	}
	want = append(want, event.Followed{Follower: "alice", Followee: "bob"})
	if evs := f.pub.published(); !slices.Equal(evs, want) {
		t.Errorf("second Follow(alice, bob) published %v; want %v", evs, want)
	}

	if err := f.svc.Unfollow(ctx, "alice", "bob"); err != nil {
		t.Fatalf("Unfollow(alice, bob) = %v; want nil", err)
	}
	if f.following(t, "alice", "bob") {
		t.Error("after Unfollow(alice, bob), alice still follows bob")
	}
	want = append(want, event.Unfollowed{Follower: "alice", Followee: "bob"})
	if evs := f.pub.published(); !slices.Equal(evs, want) {
		t.Errorf("Unfollow(alice, bob) published %v; want %v", evs, want)
	}

	// Unfollowing again, or someone never followed, succeeds and publishes.
	if err := f.svc.Unfollow(ctx, "alice", "bob"); err != nil {
		t.Errorf("second Unfollow(alice, bob) = %v; want nil", err)
	}
	if err := f.svc.Unfollow(ctx, "carol", "dave"); err != nil {
		t.Errorf("Unfollow(carol, dave) without an edge = %v; want nil", err)
	}
	want = append(want, event.Unfollowed{Follower: "alice", Followee: "bob"}, event.Unfollowed{Follower: "carol", Followee: "dave"})
	if evs := f.pub.published(); !slices.Equal(evs, want) {
		t.Errorf("repeated Unfollows published %v; want %v", evs, want)
	}
	if n, err := f.db.FollowerCount(ctx, "bob"); err != nil || n != 0 {
		t.Errorf("FollowerCount(bob) after Unfollows = %d, %v; want 0", n, err)
	}
}

func TestPublishFailure(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	down := feed.Unavailable("nats", errInjected)
	f.pub.setErr(down)

	err := f.svc.Follow(ctx, "alice", "bob")
	if !errors.Is(err, feed.ErrUnavailable) || !errors.Is(err, errInjected) {
		t.Errorf("Follow with NATS down = %v; want the publisher's error %v", err, down)
	}
	// The edge is stored; the client's retry publishes the event.
	if !f.following(t, "alice", "bob") {
		t.Error("Follow with NATS down did not store the edge")
	}
	f.pub.setErr(nil)
	f.follow(t, "alice", "bob")
	if evs, want := f.pub.published(), []event.Event{event.Followed{Follower: "alice", Followee: "bob"}}; !slices.Equal(evs, want) {
		t.Errorf("retried Follow published %v; want %v", evs, want)
	}

	f.pub.setErr(down)
	if err := f.svc.Unfollow(ctx, "alice", "bob"); !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("Unfollow with NATS down = %v; want ErrUnavailable", err)
	}
	if f.following(t, "alice", "bob") {
		t.Error("Unfollow with NATS down did not remove the edge")
	}
	f.pub.setErr(nil)
	if err := f.svc.Unfollow(ctx, "alice", "bob"); err != nil {
		t.Errorf("retried Unfollow = %v; want nil", err)
	}
	if evs := f.pub.published(); len(evs) != 2 || evs[1] != event.Event(event.Unfollowed{Follower: "alice", Followee: "bob"}) {
		t.Errorf("retried Unfollow published %v; want a Followed then an Unfollowed", evs)
	}
}

func TestStoreFailure(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.store.followErr = feed.Unavailable("pebble", errInjected)
	f.store.unfollowErr = feed.Unavailable("pebble", errInjected)
	if err := f.svc.Follow(ctx, "alice", "bob"); !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("Follow with the store down = %v; want ErrUnavailable", err)
	}
	if err := f.svc.Unfollow(ctx, "alice", "bob"); !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("Unfollow with the store down = %v; want ErrUnavailable", err)
	}
	if evs := f.pub.published(); len(evs) != 0 {
		t.Errorf("failed store writes published %v; want nothing", evs)
	}
}

// --- Followers and Following ---------------------------------------------

// lists names the two paged lists, for tests that run on both.
var lists = []struct {
	name string
	call func(s *graph.Service, user string, size int32, token string) ([]string, string, error)
}{
	{"Followers", func(s *graph.Service, u string, n int32, tok string) ([]string, string, error) {
		return s.Followers(context.Background(), u, n, tok)
	}},
	{"Following", func(s *graph.Service, u string, n int32, tok string) ([]string, string, error) {
		return s.Following(context.Background(), u, n, tok)
	}},
}

func TestFollowersAndFollowingPages(t *testing.T) {
	f := newFixture(t)
	// hub is followed by, and follows, each of u00..u24.
	var users []string
	for i := range 25 {
		u := fmt.Sprintf("u%02d", i)
		users = append(users, u)
		f.follow(t, u, "hub")
		f.follow(t, "hub", u)
	}
	f.follow(t, "zed", "other") // not hub's

	for _, l := range lists {
		var got []string
		var sizes []int
		token := ""
		for page := 0; ; page++ {
			if page > 10 {
				t.Fatalf("%s(hub) did not end after %d pages", l.name, page)
			}
			ids, next, err := l.call(f.svc, "hub", 10, token)
			if err != nil {
				t.Fatalf("%s(hub, 10, page %d) = %v", l.name, page, err)
			}
			got = append(got, ids...)
			sizes = append(sizes, len(ids))
			if next == "" {
				break
			}
			if next == token {
				t.Fatalf("%s(hub) page %d returned the token it was given", l.name, page)
			}
			token = next
		}
		if !slices.Equal(sizes, []int{10, 10, 5}) {
			t.Errorf("%s(hub, 10) page sizes = %v; want [10 10 5]", l.name, sizes)
		}
		if !slices.Equal(got, users) {
			t.Errorf("%s(hub) over all pages = %v; want %v", l.name, got, users)
		}
	}

	// A page that ends the list exactly has no token.
	for _, l := range lists {
		ids, next, err := l.call(f.svc, "hub", 25, "")
		if err != nil || len(ids) != 25 || next != "" {
			t.Errorf("%s(hub, 25) = %d IDs, token %q, %v; want 25 IDs and no token", l.name, len(ids), next, err)
		}
		ids, next, err = l.call(f.svc, "nobody", 0, "")
		if err != nil || len(ids) != 0 || next != "" {
			t.Errorf("%s(nobody) = %v, %q, %v; want an empty last page", l.name, ids, next, err)
		}
	}
}

func TestPageTokenCarriesStoreState(t *testing.T) {
	f := newFixture(t)
	for _, u := range []string{"a1", "a2", "a3"} {
		f.follow(t, u, "hub")
	}
	_, token, err := f.svc.Followers(context.Background(), "hub", 2, "")
	if err != nil || token == "" {
		t.Fatalf("Followers(hub, 2) = token %q, %v; want a token", token, err)
	}
	if f.store.lastState != nil {
		t.Errorf("first page passed state %q to the store; want nil", f.store.lastState)
	}
	ids, _, err := f.svc.Followers(context.Background(), "hub", 2, token)
	if err != nil || !slices.Equal(ids, []string{"a3"}) {
		t.Errorf("Followers(hub, 2, token) = %v, %v; want [a3]", ids, err)
	}
	if string(f.store.lastState) != "a2" {
		t.Errorf("second page passed state %q to the store; want the first page's %q", f.store.lastState, "a2")
	}
}

func TestPageSize(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// More followers than the largest page, loaded in bulk.
	var many []string
	for i := range feed.MaxGraphPageSize + 1 {
		many = append(many, fmt.Sprintf("f%04d", i))
	}
	if n, err := f.db.ImportFollows(ctx, "star", many); err != nil || n != len(many) {
		t.Fatalf("ImportFollows = %d, %v; want %d", n, err, len(many))
	}

	tests := []struct {
		size     int32
		wantLen  int
		wantNext bool
	}{
		{0, feed.DefaultPageSize, true},
		{1, 1, true},
		{feed.MaxGraphPageSize, feed.MaxGraphPageSize, true},
		{feed.MaxGraphPageSize + 1, feed.MaxGraphPageSize, true},
		{1 << 30, feed.MaxGraphPageSize, true},
	}
	for _, tt := range tests {
		ids, next, err := f.svc.Followers(ctx, "star", tt.size, "")
		if err != nil || len(ids) != tt.wantLen || (next != "") != tt.wantNext {
			t.Errorf("Followers(star, %d) = %d IDs, token %q, %v; want %d IDs, token %v", tt.size, len(ids), next, err, tt.wantLen, tt.wantNext)
		}
		if f.store.lastLimit != tt.wantLen {
			t.Errorf("Followers(star, %d) asked the store for %d; want %d", tt.size, f.store.lastLimit, tt.wantLen)
		}
	}

	// The second page of the largest size holds the one left over.
	_, token, _ := f.svc.Followers(ctx, "star", 5000, "")
	ids, next, err := f.svc.Followers(ctx, "star", 5000, token)
	if err != nil || !slices.Equal(ids, many[feed.MaxGraphPageSize:]) || next != "" {
		t.Errorf("Followers(star, 5000, page 2) = %v, %q, %v; want %v and no token", ids, next, err, many[feed.MaxGraphPageSize:])
	}
	// Following is paged with the same size rules.
	if ids, _, err := f.svc.Following(ctx, "f0001", -1, ""); !isInvalid(err, "page_size") || ids != nil {
		t.Errorf("Following(f0001, -1) = %v, %v; want an InvalidError naming page_size", ids, err)
	}
	if ids, _, err := f.svc.Following(ctx, "f0001", 0, ""); err != nil || !slices.Equal(ids, []string{"star"}) {
		t.Errorf("Following(f0001, 0) = %v, %v; want [star]", ids, err)
	}
}

func TestListsReject(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, u := range []string{"a1", "a2", "a3"} {
		f.follow(t, u, "hub")
		f.follow(t, "hub", u)
		f.follow(t, u, "other")
	}
	_, followersTok, err := f.svc.Followers(ctx, "hub", 1, "")
	if err != nil || followersTok == "" {
		t.Fatalf("Followers(hub, 1) = token %q, %v; want a token", followersTok, err)
	}
	_, followingTok, err := f.svc.Following(ctx, "hub", 1, "")
	if err != nil || followingTok == "" {
		t.Fatalf("Following(hub, 1) = token %q, %v; want a token", followingTok, err)
	}
	_, otherTok, err := f.svc.Followers(ctx, "other", 1, "")
	if err != nil || otherTok == "" {
		t.Fatalf("Followers(other, 1) = token %q, %v; want a token", otherTok, err)
	}
	cur, err := f.tokens.Decode("followers:hub", followersTok)
	if err != nil {
		t.Fatalf("decode the service's own token: %v", err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(followersTok)
	if err != nil {
		t.Fatalf("page token %q is not base64url: %v", followersTok, err)
	}
	raw[len(raw)/2] ^= 1
	tampered := base64.RawURLEncoding.EncodeToString(raw)
	foreign := pagetoken.New([]byte("another key, another deployment")).Encode("followers:hub", cur)

	tests := []struct {
		name  string
		list  int // index in lists
		user  string
		size  int32
		token string
		field string // "" means pagetoken.ErrInvalid
	}{
		{"empty user", 0, "", 0, "", "user_id"},
		{"bad user", 1, "Hub", 0, "", "user_id"},
		{"negative page size", 0, "hub", -1, "", "page_size"},
		{"tampered token", 0, "hub", 0, tampered, ""},
		{"truncated token", 0, "hub", 0, followersTok[:len(followersTok)-3], ""},
		{"not base64", 1, "hub", 0, "***", ""},
		{"followers token to Following", 1, "hub", 0, followersTok, ""},
		{"following token to Followers", 0, "hub", 0, followingTok, ""},
		{"another user's token", 0, "hub", 0, otherTok, ""},
		{"token for hub used for other", 0, "other", 0, followersTok, ""},
		{"token under another key", 0, "hub", 0, foreign, ""},
	}
	for _, tt := range tests {
		l := lists[tt.list]
		ids, next, err := l.call(f.svc, tt.user, tt.size, tt.token)
		ok := errors.Is(err, pagetoken.ErrInvalid)
		want := "pagetoken.ErrInvalid"
		if tt.field != "" {
			ok, want = isInvalid(err, tt.field), "an InvalidError naming "+tt.field
		}
		if !ok || ids != nil || next != "" {
			t.Errorf("%s: %s(%q, %d, %q) = %v, %q, %v; want no IDs and %s", tt.name, l.name, tt.user, tt.size, tt.token, ids, next, err, want)
		}
	}

	// The genuine tokens still work, each on its own list.
	if ids, _, err := f.svc.Followers(ctx, "hub", 1, followersTok); err != nil || !slices.Equal(ids, []string{"a2"}) {
		t.Errorf("Followers(hub, 1, token) = %v, %v; want [a2]", ids, err)
	}
	if ids, _, err := f.svc.Following(ctx, "hub", 1, followingTok); err != nil || !slices.Equal(ids, []string{"a2"}) {
		t.Errorf("Following(hub, 1, token) = %v, %v; want [a2]", ids, err)
	}
}

func TestListsStoreError(t *testing.T) {
	f := newFixture(t)
	f.store.listErr = feed.Unavailable("pebble", errInjected)
	for _, l := range lists {
		ids, next, err := l.call(f.svc, "hub", 0, "")
		if !errors.Is(err, feed.ErrUnavailable) || ids != nil || next != "" {
			t.Errorf("%s with the store down = %v, %q, %v; want ErrUnavailable", l.name, ids, next, err)
		}
	}
}
