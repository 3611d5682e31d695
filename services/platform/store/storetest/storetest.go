// Package storetest is the contract suite for the durable-store ports in
// package store. Every adapter runs it from its own tests:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store { return openTestStore(t) })
//	}
//
// The suite assumes only what the doc comments in package store promise:
// nothing about key layout, paging-state format or the order of follower
// lists.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/store"
)

// Store is what an adapter under test provides: both ports.
type Store interface {
	store.Posts
	store.Graph
}

// Run runs the contract suite. open must return an empty store, and close
// it with t.Cleanup; it is called once per subtest.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"IdempotentCreate", testIdempotentCreate},
		{"EmptyKeyNeverDedupes", testEmptyKeyNeverDedupes},
		{"KeyIsPerAuthor", testKeyIsPerAuthor},
		{"GetPostsLeavesOutMissingAndDeleted", testGetPostsLeavesOut},
		{"DeletePost", testDeletePost},
		{"ListByAuthorOrderBoundLimit", testListByAuthorOrder},
		{"ListByAuthorPaging", testListByAuthorPaging},
		{"ListByAuthorPrefixNamedAuthors", testListByAuthorPrefixNames},
		{"Outbox", testOutbox},
		{"OutboxIdempotentReplay", testOutboxReplay},
		{"FollowUnfollowChanged", testFollowUnfollow},
		{"FollowersPaging", testFollowersPaging},
		{"FollowingPaging", testFollowingPaging},
		{"GraphPrefixNamedUsers", testGraphPrefixNames},
		{"FollowerCount", testFollowerCount},
		{"FollowingCount", testFollowingCount},
		{"FollowLimited", testFollowLimited},
		{"FollowLimitedRacing", testFollowLimitedRacing},
		{"IsFollowing", testIsFollowing},
		{"CancelledContext", testCancelledContext},
		{"ConcurrentWrites", testConcurrentWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// ids mints realistic, time-sortable post IDs.
type ids struct{ g *idgen.Generator }

func newIDs(t *testing.T) ids {
	t.Helper()
	g, err := idgen.New(3, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ids{g}
}

func (x ids) post(author, text string) feed.Post {
	id := x.g.Next()
	// Nanoseconds beyond the millisecond check that adapters keep at
	// least millisecond precision without demanding more.
	return feed.Post{ID: id, Author: author, Text: text, Created: idgen.Time(id).Add(123456 * time.Nanosecond)}
}

func samePost(a, b feed.Post) bool {
	d := a.Created.Sub(b.Created)
	return a.ID == b.ID && a.Author == b.Author && a.Text == b.Text && d > -time.Millisecond && d < time.Millisecond
}

func fmtPost(p feed.Post) string {
	return fmt.Sprintf("{%d %s %q %s}", p.ID, p.Author, p.Text, p.Created.UTC().Format(time.RFC3339Nano))
}

func fmtPosts(ps []feed.Post) string {
	s := "["
	for i, p := range ps {
		if i > 0 {
			s += " "
		}
		s += fmtPost(p)
	}
	return s + "]"
}

func postIDs(ps []feed.Post) []feed.PostID {
	out := make([]feed.PostID, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

func create(t *testing.T, s Store, p feed.Post, key string) feed.Post {
	t.Helper()
	got, created, err := s.CreatePost(context.Background(), p, key)
	if err != nil || !created || !samePost(got, p) {
		t.Fatalf("CreatePost(%s, %q) = %s, %v, %v; want the post, true, nil", fmtPost(p), key, fmtPost(got), created, err)
	}
	return got
}

// createMany creates n posts by author, oldest first.
func createMany(t *testing.T, s Store, x ids, author string, n int) []feed.Post {
	t.Helper()
	ps := make([]feed.Post, n)
	for i := range ps {
		ps[i] = create(t, s, x.post(author, fmt.Sprintf("post %d", i)), "")
	}
	return ps
}

func getPosts(t *testing.T, s Store, in ...feed.PostID) []feed.Post {
	t.Helper()
	got, err := s.GetPosts(context.Background(), in)
	if err != nil {
		t.Fatalf("GetPosts(%v) error: %v", in, err)
	}
	slices.SortFunc(got, func(a, b feed.Post) int { return cmpID(a.ID, b.ID) })
	return got
}

func cmpID(a, b feed.PostID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// wantPosts fails unless got holds exactly want, in order.
func wantPosts(t *testing.T, call string, got, want []feed.Post) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = samePost(got[i], want[i])
	}
	if !ok {
		t.Errorf("%s = %s; want %s", call, fmtPosts(got), fmtPosts(want))
	}
}

func listByAuthor(t *testing.T, s Store, author string, before feed.PostID, limit int) []feed.Post {
	t.Helper()
	got, err := s.ListByAuthor(context.Background(), author, before, limit)
	if err != nil {
		t.Fatalf("ListByAuthor(%q, %d, %d) error: %v", author, before, limit, err)
	}
	return got
}

func listUnpublished(t *testing.T, s Store, before feed.PostID, limit int) []feed.Post {
	t.Helper()
	got, err := s.ListUnpublished(context.Background(), before, limit)
	if err != nil {
		t.Fatalf("ListUnpublished(%d, %d) error: %v", before, limit, err)
	}
	return got
}

// newestFirst returns ps reversed, as a copy.
func newestFirst(ps []feed.Post) []feed.Post {
	out := slices.Clone(ps)
	slices.Reverse(out)
	return out
}

func testCreateAndGet(t *testing.T, s Store) {
	x := newIDs(t)
	tests := []struct {
		name string
		text string
	}{
		{"ascii", "hello"},
		{"utf8", "héllo, 世界 👋🏽 — ok"},
		{"newlines", "line one\nline two\n"},
		{"long", string(slices.Repeat([]rune("é"), feed.MaxTextRunes))},
	}
	var all []feed.Post
	for _, tt := range tests {
		p := x.post("alice", tt.text)
		all = append(all, create(t, s, p, ""))
		wantPosts(t, fmt.Sprintf("GetPosts(%d) for %s", p.ID, tt.name), getPosts(t, s, p.ID), []feed.Post{p})
	}
	wantPosts(t, "GetPosts(all)", getPosts(t, s, postIDs(all)...), all)
	if got := getPosts(t, s); len(got) != 0 {
		t.Errorf("GetPosts() = %s; want []", fmtPosts(got))
	}
}

func testIdempotentCreate(t *testing.T, s Store) {
	ctx := context.Background()
	x := newIDs(t)
	first := create(t, s, x.post("alice", "first"), "k1")
	retry := x.post("alice", "retry with a new ID")
	got, created, err := s.CreatePost(ctx, retry, "k1")
	if err != nil || created || !samePost(got, first) {
		t.Fatalf("CreatePost(retry, k1) = %s, %v, %v; want %s, false, nil", fmtPost(got), created, err, fmtPost(first))
	}
	wantPosts(t, "ListByAuthor(alice)", listByAuthor(t, s, "alice", 0, 10), []feed.Post{first})
	wantPosts(t, "GetPosts(retry ID)", getPosts(t, s, retry.ID), nil)
	wantPosts(t, "ListUnpublished", listUnpublished(t, s, 0, 10), []feed.Post{first})
}

func testEmptyKeyNeverDedupes(t *testing.T, s Store) {
	x := newIDs(t)
	a := create(t, s, x.post("alice", "same text"), "")
	b := create(t, s, x.post("alice", "same text"), "")
	wantPosts(t, "ListByAuthor(alice)", listByAuthor(t, s, "alice", 0, 10), []feed.Post{b, a})
}

func testKeyIsPerAuthor(t *testing.T, s Store) {
	x := newIDs(t)
	// Prefix-named authors share a key too: their records must not collide.
	authors := []string{"al", "alice", "alice_2", "a"}
	for _, a := range authors {
		create(t, s, x.post(a, "by "+a), "shared-key")
	}
	for _, a := range authors {
		if got := listByAuthor(t, s, a, 0, 10); len(got) != 1 || got[0].Author != a {
			t.Errorf("ListByAuthor(%q) = %s; want one post by %s", a, fmtPosts(got), a)
		}
	}
}

func testGetPostsLeavesOut(t *testing.T, s Store) {
	ctx := context.Background()
	x := newIDs(t)
	live := create(t, s, x.post("alice", "live"), "")
	dead := create(t, s, x.post("alice", "dead"), "")
	if _, err := s.DeletePost(ctx, dead.ID); err != nil {
		t.Fatalf("DeletePost(%d) error: %v", dead.ID, err)
	}
	missing := x.g.Next()
	wantPosts(t, "GetPosts(live, dead, missing)", getPosts(t, s, live.ID, dead.ID, missing), []feed.Post{live})
	wantPosts(t, "GetPosts(dead, missing)", getPosts(t, s, dead.ID, missing), nil)
}

func testDeletePost(t *testing.T, s Store) {
	ctx := context.Background()
	x := newIDs(t)
	keep := create(t, s, x.post("alice", "keep"), "")
	p := create(t, s, x.post("alice", "delete me"), "")

	got, err := s.DeletePost(ctx, p.ID)
	if err != nil || !samePost(got, p) {
		t.Fatalf("DeletePost(%d) = %s, %v; want %s, nil", p.ID, fmtPost(got), err, fmtPost(p))
	}
	wantPosts(t, "GetPosts(deleted)", getPosts(t, s, p.ID), nil)
	wantPosts(t, "ListByAuthor(alice)", listByAuthor(t, s, "alice", 0, 10), []feed.Post{keep})

	for _, tt := range []struct {
		name string
		id   feed.PostID
	}{
		{"again", p.ID},
		{"never created", x.g.Next()},
	} {
		if got, err := s.DeletePost(ctx, tt.id); !errors.Is(err, feed.ErrNotFound) {
			t.Errorf("DeletePost(%d) %s = %s, %v; want feed.ErrNotFound", tt.id, tt.name, fmtPost(got), err)
		}
	}
}

func testListByAuthorOrder(t *testing.T, s Store) {
	x := newIDs(t)
	ps := createMany(t, s, x, "alice", 5) // ps[4] is the newest
	tests := []struct {
		before feed.PostID
		limit  int
		want   []feed.Post
	}{
		{0, 10, newestFirst(ps)},
		{0, 5, newestFirst(ps)},
		{0, 2, []feed.Post{ps[4], ps[3]}},
		{0, 1, []feed.Post{ps[4]}},
		{ps[3].ID, 10, []feed.Post{ps[2], ps[1], ps[0]}},
		{ps[3].ID, 2, []feed.Post{ps[2], ps[1]}},
		{ps[3].ID + 1, 1, []feed.Post{ps[3]}},
		{ps[0].ID, 10, nil},
		{ps[4].ID + 1, 10, newestFirst(ps)},
		{1<<64 - 1, 10, newestFirst(ps)},
	}
	for _, tt := range tests {
		got := listByAuthor(t, s, "alice", tt.before, tt.limit)
		wantPosts(t, fmt.Sprintf("ListByAuthor(alice, %d, %d)", tt.before, tt.limit), got, tt.want)
	}
	wantPosts(t, "ListByAuthor(nobody)", listByAuthor(t, s, "nobody", 0, 10), nil)
}

func testListByAuthorPaging(t *testing.T, s Store) {
	x := newIDs(t)
	ps := createMany(t, s, x, "alice", 250)
	for _, limit := range []int{7, 100, 250, 1000} {
		var got []feed.Post
		var before feed.PostID
		for page := 0; ; page++ {
			if page > len(ps) {
				t.Fatalf("limit %d: paging did not end after %d pages", limit, page)
			}
			p := listByAuthor(t, s, "alice", before, limit)
			if len(p) > limit {
				t.Fatalf("ListByAuthor(alice, %d, %d) returned %d posts; want at most %d", before, limit, len(p), limit)
			}
			if len(p) == 0 {
				break
			}
			got = append(got, p...)
			before = p[len(p)-1].ID
		}
		if !slices.Equal(postIDs(got), postIDs(newestFirst(ps))) {
			t.Errorf("paging ListByAuthor by %d gave %d posts %v; want all %d newest first", limit, len(got), postIDs(got), len(ps))
		}
	}
}

func testListByAuthorPrefixNames(t *testing.T, s Store) {
	x := newIDs(t)
	byAuthor := map[string][]feed.Post{}
	authors := []string{"a", "al", "alice", "al_", "alicea", "b"}
	// Interleave so that a shared index would mix them.
	for i := range 3 {
		for _, a := range authors {
			byAuthor[a] = append(byAuthor[a], create(t, s, x.post(a, fmt.Sprintf("%s %d", a, i)), ""))
		}
	}
	for _, a := range authors {
		wantPosts(t, fmt.Sprintf("ListByAuthor(%q)", a), listByAuthor(t, s, a, 0, 100), newestFirst(byAuthor[a]))
	}
}

func testOutbox(t *testing.T, s Store) {
	ctx := context.Background()
	x := newIDs(t)
	ps := createMany(t, s, x, "alice", 3)
	ps = append(ps, create(t, s, x.post("bob", "by bob"), ""))

	tests := []struct {
		before feed.PostID
		limit  int
		want   []feed.Post
	}{
		{0, 10, ps},
		{0, 2, ps[:2]},
		{ps[2].ID, 10, ps[:2]},
		{ps[2].ID, 1, ps[:1]},
		{ps[0].ID, 10, nil},
		{ps[3].ID + 1, 10, ps},
	}
	for _, tt := range tests {
		got := listUnpublished(t, s, tt.before, tt.limit)
		wantPosts(t, fmt.Sprintf("ListUnpublished(%d, %d)", tt.before, tt.limit), got, tt.want)
	}

	for _, i := range []int{1, 3} {
		if err := s.MarkPublished(ctx, ps[i].ID); err != nil {
			t.Fatalf("MarkPublished(%d) error: %v", ps[i].ID, err)
		}
	}
	wantPosts(t, "ListUnpublished after MarkPublished", listUnpublished(t, s, 0, 10), []feed.Post{ps[0], ps[2]})

	// The relay delivers at least once, so marking twice must be harmless.
	if err := s.MarkPublished(ctx, ps[1].ID); err != nil {
		t.Errorf("MarkPublished(%d) again error: %v", ps[1].ID, err)
	}
	wantPosts(t, "GetPosts(published)", getPosts(t, s, ps[1].ID, ps[3].ID), []feed.Post{ps[1], ps[3]})
}

func testOutboxReplay(t *testing.T, s Store) {
	ctx := context.Background()
	x := newIDs(t)
	p := create(t, s, x.post("alice", "once"), "k")
	if err := s.MarkPublished(ctx, p.ID); err != nil {
		t.Fatalf("MarkPublished(%d) error: %v", p.ID, err)
	}
	got, created, err := s.CreatePost(ctx, x.post("alice", "once"), "k")
	if err != nil || created || !samePost(got, p) {
		t.Fatalf("CreatePost(replay) = %s, %v, %v; want %s, false, nil", fmtPost(got), created, err, fmtPost(p))
	}
	wantPosts(t, "ListUnpublished after replay", listUnpublished(t, s, 0, 10), nil)
}

func follow(t *testing.T, s Store, follower, followee string, want bool) {
	t.Helper()
	if got, err := s.Follow(context.Background(), follower, followee); err != nil || got != want {
		t.Fatalf("Follow(%q, %q) = %v, %v; want %v, nil", follower, followee, got, err, want)
	}
}

func unfollow(t *testing.T, s Store, follower, followee string, want bool) {
	t.Helper()
	if got, err := s.Unfollow(context.Background(), follower, followee); err != nil || got != want {
		t.Fatalf("Unfollow(%q, %q) = %v, %v; want %v, nil", follower, followee, got, err, want)
	}
}

type listFunc func(ctx context.Context, user string, state []byte, limit int) ([]string, []byte, error)

// pageAll pages through list and returns every ID in the order given.
func pageAll(t *testing.T, name string, list listFunc, user string, limit int) []string {
	t.Helper()
	var all []string
	var state []byte
	for page := 0; ; page++ {
		if page > 100000/limit+2 {
			t.Fatalf("%s(%q) by %d: paging did not end after %d pages", name, user, limit, page)
		}
		ids, next, err := list(context.Background(), user, state, limit)
		if err != nil {
			t.Fatalf("%s(%q, page %d, %d) error: %v", name, user, page, limit, err)
		}
		if len(ids) > limit {
			t.Fatalf("%s(%q, page %d, %d) returned %d IDs; want at most %d", name, user, page, limit, len(ids), limit)
		}
		if next != nil && len(ids) == 0 {
			t.Fatalf("%s(%q, page %d, %d) returned no IDs but a next state", name, user, page, limit)
		}
		all = append(all, ids...)
		if next == nil {
			return all
		}
		state = next
	}
}

// wantSet fails unless got holds each of want exactly once, in any order.
func wantSet(t *testing.T, call string, got, want []string) {
	t.Helper()
	seen := make(map[string]int, len(got))
	for _, id := range got {
		seen[id]++
	}
	var dups, missing []string
	for id, n := range seen {
		if n > 1 {
			dups = append(dups, id)
		}
	}
	for _, id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
		delete(seen, id)
	}
	var extra []string
	for id := range seen {
		extra = append(extra, id)
	}
	if len(dups)+len(missing)+len(extra) > 0 {
		slices.Sort(dups)
		slices.Sort(extra)
		t.Errorf("%s: got %d IDs, want %d; duplicated %v, missing %d %v, unexpected %v",
			call, len(got), len(want), head(dups), len(missing), head(missing), head(extra))
	}
}

func head(s []string) []string {
	if len(s) > 10 {
		return append(s[:10:10], "...")
	}
	return s
}

func testFollowUnfollow(t *testing.T, s Store) {
	follow(t, s, "alice", "bob", true)
	follow(t, s, "alice", "bob", false)
	unfollow(t, s, "alice", "bob", true)
	unfollow(t, s, "alice", "bob", false)
	unfollow(t, s, "carol", "dave", false)
	follow(t, s, "alice", "bob", true)
	// The reverse edge is a different edge.
	follow(t, s, "bob", "alice", true)

	wantSet(t, "Followers(bob)", pageAll(t, "Followers", s.Followers, "bob", 10), []string{"alice"})
	wantSet(t, "Following(alice)", pageAll(t, "Following", s.Following, "alice", 10), []string{"bob"})
	wantSet(t, "Followers(alice)", pageAll(t, "Followers", s.Followers, "alice", 10), []string{"bob"})
	unfollow(t, s, "bob", "alice", true)
	wantSet(t, "Followers(alice) after unfollow", pageAll(t, "Followers", s.Followers, "alice", 10), nil)
	wantSet(t, "Following(bob) after unfollow", pageAll(t, "Following", s.Following, "bob", 10), nil)
	wantSet(t, "Followers(nobody)", pageAll(t, "Followers", s.Followers, "nobody", 10), nil)
}

func testFollowersPaging(t *testing.T, s Store) {
	const n = 2500
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("u%d", i)
		follow(t, s, want[i], "star", true)
	}
	for _, limit := range []int{1000, 7, n, n + 1} {
		got := pageAll(t, "Followers", s.Followers, "star", limit)
		wantSet(t, fmt.Sprintf("Followers(star) paged by %d", limit), got, want)
	}
}

func testFollowingPaging(t *testing.T, s Store) {
	const n = 1200
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("u%d", i)
		follow(t, s, "fan", want[i], true)
	}
	for _, limit := range []int{1000, 7, n} {
		got := pageAll(t, "Following", s.Following, "fan", limit)
		wantSet(t, fmt.Sprintf("Following(fan) paged by %d", limit), got, want)
	}
}

func testGraphPrefixNames(t *testing.T, s Store) {
	follow(t, s, "x", "al", true)
	follow(t, s, "y", "alice", true)
	follow(t, s, "z", "al_", true)
	follow(t, s, "al", "x", true)
	follow(t, s, "alice", "y", true)
	tests := []struct {
		name string
		list listFunc
		user string
		want []string
	}{
		{"Followers", s.Followers, "al", []string{"x"}},
		{"Followers", s.Followers, "alice", []string{"y"}},
		{"Followers", s.Followers, "al_", []string{"z"}},
		{"Followers", s.Followers, "a", nil},
		{"Following", s.Following, "al", []string{"x"}},
		{"Following", s.Following, "alice", []string{"y"}},
		{"Following", s.Following, "a", nil},
	}
	for _, tt := range tests {
		for _, limit := range []int{1, 100} {
			got := pageAll(t, tt.name, tt.list, tt.user, limit)
			wantSet(t, fmt.Sprintf("%s(%q) by %d", tt.name, tt.user, limit), got, tt.want)
		}
	}
}

func testFollowerCount(t *testing.T, s Store) {
	ctx := context.Background()
	steps := []struct {
		op                 string // "follow" or "unfollow"
		follower, followee string
		changed            bool
		bob, alice         int64
	}{
		{"", "", "", false, 0, 0},
		{"follow", "alice", "bob", true, 1, 0},
		{"follow", "alice", "bob", false, 1, 0},
		{"follow", "carol", "bob", true, 2, 0},
		{"follow", "bob", "alice", true, 2, 1},
		{"unfollow", "alice", "bob", true, 1, 1},
		{"unfollow", "alice", "bob", false, 1, 1},
		{"unfollow", "dave", "bob", false, 1, 1},
		{"unfollow", "carol", "bob", true, 0, 1},
		{"unfollow", "carol", "bob", false, 0, 1},
	}
	for i, st := range steps {
		switch st.op {
		case "follow":
			follow(t, s, st.follower, st.followee, st.changed)
		case "unfollow":
			unfollow(t, s, st.follower, st.followee, st.changed)
		}
		for _, c := range []struct {
			user string
			want int64
		}{{"bob", st.bob}, {"alice", st.alice}} {
			if got, err := s.FollowerCount(ctx, c.user); err != nil || got != c.want {
				t.Errorf("step %d (%s %s -> %s): FollowerCount(%q) = %d, %v; want %d, nil",
					i, st.op, st.follower, st.followee, c.user, got, err, c.want)
			}
		}
	}
}

func testFollowingCount(t *testing.T, s Store) {
	ctx := context.Background()
	steps := []struct {
		op                 string // "follow" or "unfollow"
		follower, followee string
		changed            bool
		alice, carol       int64
	}{
		{"", "", "", false, 0, 0},
		{"follow", "alice", "bob", true, 1, 0},
		{"follow", "alice", "bob", false, 1, 0},
		{"follow", "alice", "carol", true, 2, 0},
		{"follow", "carol", "alice", true, 2, 1},
		{"follow", "dave", "alice", true, 2, 1},
		{"unfollow", "alice", "bob", true, 1, 1},
		{"unfollow", "alice", "bob", false, 1, 1},
		{"unfollow", "alice", "dave", false, 1, 1},
		{"unfollow", "bob", "alice", false, 1, 1},
		{"unfollow", "alice", "carol", true, 0, 1},
		{"unfollow", "alice", "carol", false, 0, 1},
		{"follow", "alice", "carol", true, 1, 1},
	}
	for i, st := range steps {
		switch st.op {
		case "follow":
			follow(t, s, st.follower, st.followee, st.changed)
		case "unfollow":
			unfollow(t, s, st.follower, st.followee, st.changed)
		}
		for _, c := range []struct {
			user string
			want int64
		}{{"alice", st.alice}, {"carol", st.carol}} {
			if got, err := s.FollowingCount(ctx, c.user); err != nil || got != c.want {
				t.Errorf("step %d (%s %s -> %s): FollowingCount(%q) = %d, %v; want %d, nil",
					i, st.op, st.follower, st.followee, c.user, got, err, c.want)
			}
		}
	}
}

// followLimited calls FollowLimited and fails t unless it returns changed
// and no error.
func followLimited(t *testing.T, s Store, follower, followee string, limit int64, changed bool) {
	t.Helper()
	if got, err := s.FollowLimited(context.Background(), follower, followee, limit); err != nil || got != changed {
		t.Fatalf("FollowLimited(%q, %q, %d) = %v, %v; want %v, nil", follower, followee, limit, got, err, changed)
	}
}

// wantRefused fails t unless FollowLimited refuses the edge with
// feed.ErrFailedPrecondition.
func wantRefused(t *testing.T, s Store, follower, followee string, limit int64) {
	t.Helper()
	got, err := s.FollowLimited(context.Background(), follower, followee, limit)
	if !errors.Is(err, feed.ErrFailedPrecondition) || got {
		t.Fatalf("FollowLimited(%q, %q, %d) = %v, %v; want false and an error wrapping feed.ErrFailedPrecondition", follower, followee, limit, got, err)
	}
}

func wantFollowingCount(t *testing.T, s Store, when, user string, want int64) {
	t.Helper()
	if got, err := s.FollowingCount(context.Background(), user); err != nil || got != want {
		t.Errorf("%s: FollowingCount(%q) = %d, %v; want %d, nil", when, user, got, err, want)
	}
}

func testFollowLimited(t *testing.T, s Store) {
	ctx := context.Background()
	const limit = 3
	for _, b := range []string{"b1", "b2", "b3"} {
		followLimited(t, s, "alice", b, limit, true)
	}
	wantFollowingCount(t, s, "at the limit", "alice", 3)

	// Past the limit: refused, and nothing stored on either side.
	wantRefused(t, s, "alice", "b4", limit)
	wantSet(t, "Following(alice) after a refused follow", pageAll(t, "Following", s.Following, "alice", 10), []string{"b1", "b2", "b3"})
	wantSet(t, "Followers(b4) after a refused follow", pageAll(t, "Followers", s.Followers, "b4", 10), nil)
	if n, err := s.FollowerCount(ctx, "b4"); err != nil || n != 0 {
		t.Errorf("FollowerCount(b4) after a refused follow = %d, %v; want 0", n, err)
	}
	if ok, err := s.IsFollowing(ctx, "alice", "b4"); err != nil || ok {
		t.Errorf("IsFollowing(alice, b4) after a refused follow = %v, %v; want false", ok, err)
	}
	wantFollowingCount(t, s, "after a refused follow", "alice", 3)

	// An edge that exists is never refused, not even under a lower limit.
	followLimited(t, s, "alice", "b2", limit, false)
	followLimited(t, s, "alice", "b1", 2, false)
	wantRefused(t, s, "alice", "b5", 2)
	if n, err := s.FollowerCount(ctx, "b2"); err != nil || n != 1 {
		t.Errorf("FollowerCount(b2) after following again at the limit = %d, %v; want 1", n, err)
	}

	// The limit is the follower's: others follow b4 freely.
	followLimited(t, s, "bob", "b4", limit, true)

	// An unfollow makes room.
	unfollow(t, s, "alice", "b1", true)
	wantFollowingCount(t, s, "after an unfollow", "alice", 2)
	followLimited(t, s, "alice", "b4", limit, true)
	wantSet(t, "Following(alice) after unfollow and follow", pageAll(t, "Following", s.Following, "alice", 10), []string{"b2", "b3", "b4"})
	if n, err := s.FollowerCount(ctx, "b4"); err != nil || n != 2 {
		t.Errorf("FollowerCount(b4) = %d, %v; want 2 (bob and alice)", n, err)
	}

	// No limit: maxFollowing <= 0, or Follow.
	followLimited(t, s, "alice", "b5", 0, true)
	followLimited(t, s, "alice", "b6", -1, true)
	follow(t, s, "alice", "b7", true)
	wantFollowingCount(t, s, "past the limit by unlimited follows", "alice", 6)
	wantRefused(t, s, "alice", "b8", limit)
	wantFollowingCount(t, s, "after a refused follow past the limit", "alice", 6)
}

// testFollowLimitedRacing: racing follows by a user one below the limit
// admit exactly one new edge, while racing follows of edges that exist
// all succeed.
func testFollowLimitedRacing(t *testing.T, s Store) {
	ctx := context.Background()
	const limit, racers = 5, 24
	var have []string
	for i := range limit - 1 {
		have = append(have, fmt.Sprintf("old%d", i))
		followLimited(t, s, "racer", have[i], limit, true)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		won     []string
		refused int
		others  []error
	)
	start := make(chan struct{}) // lines the racers up
	for i := range racers {
		wg.Go(func() {
			<-start
			followee := fmt.Sprintf("new%02d", i)
			changed, err := s.FollowLimited(ctx, "racer", followee, limit)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && changed:
				won = append(won, followee)
			case errors.Is(err, feed.ErrFailedPrecondition) && !changed:
				refused++
			default:
				others = append(others, fmt.Errorf("FollowLimited(racer, %s, %d) = %v, %v", followee, limit, changed, err))
			}
		})
		// Following again what racer follows already is never refused.
		wg.Go(func() {
			<-start
			if _, err := s.FollowLimited(ctx, "racer", have[i%len(have)], limit); err != nil {
				mu.Lock()
				others = append(others, fmt.Errorf("FollowLimited(racer, %s, %d) of an existing edge: %w", have[i%len(have)], limit, err))
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range others {
		t.Error(err)
	}
	if len(won) != 1 || refused != racers-1 {
		t.Fatalf("%d racing FollowLimited by a user one below the limit: %d succeeded (%v), %d refused; want 1 and %d", racers, len(won), won, refused, racers-1)
	}
	wantFollowingCount(t, s, "after the race", "racer", limit)
	wantSet(t, "Following(racer) after the race", pageAll(t, "Following", s.Following, "racer", 10), append(have, won[0]))
}

func testCancelledContext(t *testing.T, s Store) {
	x := newIDs(t)
	live := create(t, s, x.post("alice", "live"), "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := x.post("alice", "never")

	calls := []struct {
		name string
		call func() error
	}{
		{"CreatePost", func() error { _, _, err := s.CreatePost(ctx, p, "k"); return err }},
		{"GetPosts", func() error { _, err := s.GetPosts(ctx, []feed.PostID{live.ID}); return err }},
		{"DeletePost", func() error { _, err := s.DeletePost(ctx, live.ID); return err }},
		{"ListByAuthor", func() error { _, err := s.ListByAuthor(ctx, "alice", 0, 10); return err }},
		{"MarkPublished", func() error { return s.MarkPublished(ctx, live.ID) }},
		{"ListUnpublished", func() error { _, err := s.ListUnpublished(ctx, 0, 10); return err }},
		{"Follow", func() error { _, err := s.Follow(ctx, "alice", "bob"); return err }},
		{"FollowLimited", func() error { _, err := s.FollowLimited(ctx, "alice", "bob", 10); return err }},
		{"Unfollow", func() error { _, err := s.Unfollow(ctx, "alice", "bob"); return err }},
		{"Followers", func() error { _, _, err := s.Followers(ctx, "bob", nil, 10); return err }},
		{"Following", func() error { _, _, err := s.Following(ctx, "alice", nil, 10); return err }},
		{"FollowerCount", func() error { _, err := s.FollowerCount(ctx, "bob"); return err }},
		{"FollowingCount", func() error { _, err := s.FollowingCount(ctx, "alice"); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s(cancelled ctx) error = %v; want context.Canceled", c.name, err)
		}
	}

	// Nothing a cancelled call was asked to do may have happened.
	wantPosts(t, "ListByAuthor(alice)", listByAuthor(t, s, "alice", 0, 10), []feed.Post{live})
	wantPosts(t, "ListUnpublished", listUnpublished(t, s, 0, 10), []feed.Post{live})
	wantSet(t, "Followers(bob)", pageAll(t, "Followers", s.Followers, "bob", 10), nil)
}

func testIsFollowing(t *testing.T, s Store) {
	ctx := context.Background()
	check := func(when, follower, followee string, want bool) {
		t.Helper()
		got, err := s.IsFollowing(ctx, follower, followee)
		if err != nil || got != want {
			t.Errorf("%s: IsFollowing(%s, %s) = %v, %v; want %v", when, follower, followee, got, err, want)
		}
	}
	check("before any follow", "alice", "bob", false)
	if _, err := s.Follow(ctx, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	check("after Follow", "alice", "bob", true)
	check("the other direction", "bob", "alice", false)
	check("a prefix-named followee", "alice", "bo", false)
	if _, err := s.Unfollow(ctx, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	check("after Unfollow", "alice", "bob", false)
}

// testConcurrentWrites: racing writes of one subject stay exact: the same
// follow from many goroutines counts once, and racing creates with one
// idempotency key store one post.
func testConcurrentWrites(t *testing.T, s Store) {
	ctx := context.Background()
	const fans, copies = 20, 3
	var wg sync.WaitGroup
	errs := make(chan error, fans*copies+10)
	for i := range fans {
		for range copies {
			wg.Go(func() {
				if _, err := s.Follow(ctx, fmt.Sprintf("fan_%02d", i), "idol"); err != nil {
					errs <- err
				}
			})
		}
	}
	x := newIDs(t)
	posts := make([]feed.Post, 10)
	for i := range posts {
		posts[i] = x.post("alice", "racing")
	}
	results := make([]feed.Post, len(posts))
	for i, p := range posts {
		wg.Go(func() {
			got, _, err := s.CreatePost(ctx, p, "race-key")
			if err != nil {
				errs <- err
			}
			results[i] = got
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, err := s.FollowerCount(ctx, "idol"); err != nil || n != fans {
		t.Errorf("FollowerCount(idol) after %d racing follows each of %d fans = %d, %v; want %d", copies, fans, n, err, fans)
	}
	for i := range fans {
		wantFollowingCount(t, s, fmt.Sprintf("after %d racing follows of idol", copies), fmt.Sprintf("fan_%02d", i), 1)
	}
	for _, r := range results[1:] {
		if r.ID != results[0].ID {
			t.Errorf("racing CreatePost with one key returned posts %d and %d; want one post", results[0].ID, r.ID)
		}
	}
	if got := listByAuthor(t, s, "alice", 0, 20); len(got) != 1 {
		t.Errorf("ListByAuthor(alice) after racing creates with one key = %d posts; want 1", len(got))
	}
}
