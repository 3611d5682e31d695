package fanout_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-feed/herald/services/fanout/internal/fanout"
	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/memcache"
)

// chunksOf returns the FanoutChunks among evs, failing on anything else.
func chunksOf(t *testing.T, evs []event.Event) []event.FanoutChunk {
	t.Helper()
	out := make([]event.FanoutChunk, len(evs))
	for i, ev := range evs {
		ch, ok := ev.(event.FanoutChunk)
		if !ok {
			t.Fatalf("published event %d is %T; want event.FanoutChunk", i, ev)
		}
		out[i] = ch
	}
	return out
}

// dedupeIDs returns the events' DedupeIDs without a chunk ID's hash of its
// followers (see chunkPlace), which the tests of IDs check on their own.
func dedupeIDs(evs []event.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = chunkPlace(ev.DedupeID())
	}
	return out
}

// chunkPlace strips the follower hash from a chunk's DedupeID
// ("chunk-<post>-<index>-<hash>"), leaving "chunk-<post>-<index>".
func chunkPlace(id string) string {
	if i := strings.LastIndexByte(id, '-'); strings.HasPrefix(id, "chunk-") && strings.Count(id, "-") == 3 {
		return id[:i]
	}
	return id
}

// TestChunkIDNamesItsFollowers: a chunk's DedupeID is the same for the same
// followers in the same place, and differs when the followers differ, so
// a redelivery over a follower list that shifted is not dropped as a copy.
func TestChunkIDNamesItsFollowers(t *testing.T) {
	a := event.FanoutChunk{Post: 8, Index: 2, Followers: []string{"f2", "f3"}}
	b := event.FanoutChunk{Post: 8, Index: 2, Followers: []string{"f2", "f3"}}
	c := event.FanoutChunk{Post: 8, Index: 2, Followers: []string{"f3", "f4"}}
	d := event.FanoutChunk{Post: 8, Index: 2, Followers: []string{"f2f", "3"}}
	if a.DedupeID() != b.DedupeID() {
		t.Errorf("DedupeIDs of equal chunks = %q and %q; want equal", a.DedupeID(), b.DedupeID())
	}
	for _, other := range []event.FanoutChunk{c, d} {
		if a.DedupeID() == other.DedupeID() {
			t.Errorf("DedupeID of %v = DedupeID of %v = %q; want them to differ", a.Followers, other.Followers, a.DedupeID())
		}
	}
	if got := chunkPlace(a.DedupeID()); got != "chunk-8-2" {
		t.Errorf("DedupeID = %q; want it to start chunk-8-2-", a.DedupeID())
	}
}

func TestChunking(t *testing.T) {
	tests := []struct {
		followers, chunk int
		wantPage         int // page size asked of the follower list
	}{
		{followers: 0, chunk: 3, wantPage: 3},
		{followers: 1, chunk: 3, wantPage: 3},
		{followers: 3, chunk: 3, wantPage: 3},
		{followers: 4, chunk: 3, wantPage: 3},
		{followers: 7, chunk: 3, wantPage: 3},
		{followers: 9, chunk: 3, wantPage: 3},
		{followers: 5, chunk: 1, wantPage: 1},
		{followers: 1001, chunk: 0, wantPage: fanout.DefaultChunkSize}, // 0: the default
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("n=%d/chunk=%d", tt.followers, tt.chunk), func(t *testing.T) {
			r := newRig(t, fanout.Config{ChunkSize: tt.chunk, Strategy: feed.Push}, nil)
			fs := users("f", tt.followers)
			r.follow("author", fs...)
			const id = feed.PostID(42)

			r.handle(postCreated("author", id))

			c := tt.wantPage
			if got := r.followers.pageSizes; !slices.Equal(got, []int{c}) {
				t.Errorf("page sizes asked = %v; want [%d]", got, c)
			}
			first := min(c, len(fs))
			// The first chunk is written at once, the rest only published.
			tls := r.timelines(fs...)
			for i, f := range fs {
				want := []feed.PostID(nil)
				if i < first {
					want = []feed.PostID{id}
				}
				if got := tls[f]; !slices.Equal(got, want) {
					t.Fatalf("after PostCreated, timeline(%s) = %v; want %v", f, got, want)
				}
			}
			r.wantRecent("author", id)

			wantChunks := 0
			if len(fs) > 0 {
				wantChunks = (len(fs)+c-1)/c - 1
			}
			chunks := chunksOf(t, r.pub.take())
			if len(chunks) != wantChunks {
				t.Fatalf("published %d chunks; want %d", len(chunks), wantChunks)
			}
			for i, ch := range chunks {
				index := uint32(i + 2)
				lo, hi := (i+1)*c, min((i+2)*c, len(fs))
				if ch.Index != index || ch.Post != id || ch.Author != "author" || !ch.Created.Equal(created) {
					t.Errorf("chunk %d = {Index %d, Post %d, Author %q, Created %v}; want {%d, %d, %q, %v}",
						i, ch.Index, ch.Post, ch.Author, ch.Created, index, id, "author", created)
				}
				if !slices.Equal(ch.Followers, fs[lo:hi]) {
					t.Errorf("chunk %d followers = %v; want %v", index, ch.Followers, fs[lo:hi])
				}
				if got, want := chunkPlace(ch.DedupeID()), fmt.Sprintf("chunk-%d-%d", id, index); got != want {
					t.Errorf("chunk %d DedupeID = %q; want %q", index, got, want)
				}
				if ch.Kind() != event.KindFanoutChunk {
					t.Errorf("chunk %d Kind = %q; want %q", index, ch.Kind(), event.KindFanoutChunk)
				}
			}
			if got := r.metric("herald_fanout_chunks_published_total", ""); got != float64(wantChunks) {
				t.Errorf("chunks_published_total = %v; want %d", got, wantChunks)
			}
			if got := r.metric("herald_fanout_deliveries_total", ""); got != float64(first) {
				t.Errorf("deliveries_total after the first chunk = %v; want %d", got, first)
			}

			// Another instance handles the published chunks.
			for _, ch := range chunks {
				r.handle(ch)
			}
			if evs := r.pub.take(); len(evs) != 0 {
				t.Errorf("handling chunks published %d events; want none", len(evs))
			}
			for f, got := range r.timelines(fs...) {
				if !slices.Equal(got, []feed.PostID{id}) {
					t.Errorf("after all chunks, timeline(%s) = %v; want [%d]", f, got, id)
				}
			}
			if got := r.metric("herald_fanout_deliveries_total", ""); got != float64(len(fs)) {
				t.Errorf("deliveries_total = %v; want %d", got, len(fs))
			}
			wantWrites := 0
			if len(fs) > 0 {
				wantWrites = wantChunks + 1
			}
			if got := r.metric("herald_fanout_lag_seconds", ""); got != float64(wantWrites) {
				t.Errorf("lag observations = %v; want one per chunk written, %d", got, wantWrites)
			}
			if got := r.metric("herald_fanout_chunk_seconds", ""); got != float64(wantWrites) {
				t.Errorf("chunk_seconds observations = %v; want %d", got, wantWrites)
			}
			if got := r.metric("herald_fanout_posts_total", "push"); got != 1 {
				t.Errorf("posts_total{mode=push} = %v; want 1", got)
			}
		})
	}
}

func TestFanoutChunkWritesExactlyItsFollowers(t *testing.T) {
	r := newRig(t, fanout.Config{ChunkSize: 2, Strategy: feed.Push}, nil)
	fs := users("f", 5)
	r.follow("author", fs...)

	r.handle(event.FanoutChunk{Post: 7, Author: "author", Created: created, Index: 3, Followers: []string{"f1", "f3"}})

	want := map[string][]feed.PostID{"f0": nil, "f1": {7}, "f2": nil, "f3": {7}, "f4": nil}
	for f, got := range r.timelines(fs...) {
		if !slices.Equal(got, want[f]) {
			t.Errorf("timeline(%s) = %v; want %v", f, got, want[f])
		}
	}
	// A chunk is a write only: the post handler owns the recent list and
	// the other chunks.
	r.wantRecent("author")
	if evs := r.pub.take(); len(evs) != 0 {
		t.Errorf("handling a chunk published %v; want nothing", evs)
	}
	if n := len(r.followers.pageSizes); n != 0 {
		t.Errorf("handling a chunk paged the follower list %d times; want 0", n)
	}
}

func TestRedeliveredPostCreatedIsIdempotent(t *testing.T) {
	r := newRig(t, fanout.Config{ChunkSize: 3, Strategy: feed.Push}, nil)
	fs := users("f", 8)
	r.follow("author", fs...)
	ev := postCreated("author", 42)

	r.handle(ev)
	first := r.pub.take()
	for _, ch := range first {
		r.handle(ch)
	}
	before := r.timelines(fs...)
	wantIDs := []string{"chunk-42-2", "chunk-42-3"}
	if got := dedupeIDs(first); !slices.Equal(got, wantIDs) {
		t.Fatalf("first delivery published %v; want %v", got, wantIDs)
	}

	// The post event and its chunks are delivered again.
	r.handle(ev)
	again := r.pub.take()
	if got := dedupeIDs(again); !slices.Equal(got, wantIDs) {
		t.Errorf("redelivery published %v; want the same IDs %v", got, wantIDs)
	}
	if !slices.EqualFunc(chunksOf(t, first), chunksOf(t, again), func(a, b event.FanoutChunk) bool {
		return a.Index == b.Index && slices.Equal(a.Followers, b.Followers)
	}) {
		t.Errorf("redelivery chunks = %+v; want %+v", again, first)
	}
	for _, ch := range again {
		r.handle(ch)
	}
	if after := r.timelines(fs...); !maps.EqualFunc(before, after, slices.Equal) {
		t.Errorf("timelines after redelivery = %v; want unchanged %v", after, before)
	}
	r.wantRecent("author", 42)
}

func TestPostEventsCommute(t *testing.T) {
	orders := [][]feed.PostID{{5, 9, 7}, {9, 7, 5}, {7, 5, 9, 5}}
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			r := newRig(t, fanout.Config{ChunkSize: 10, Strategy: feed.Push}, nil)
			r.follow("author", "a", "b")
			for _, id := range order {
				r.handle(postCreated("author", id))
			}
			r.want("a", 9, 7, 5)
			r.want("b", 9, 7, 5)
			r.wantRecent("author", 9, 7, 5)
		})
	}
}

func TestStrategies(t *testing.T) {
	tests := []struct {
		name      string
		strategy  feed.Strategy
		followers int
		pushed    bool
		celeb     bool
	}{
		{"push", feed.Push, 2, true, false},
		{"push ignores the threshold", feed.Push, 4, true, false},
		{"pull", feed.Pull, 2, false, false},
		{"hybrid below the threshold", feed.Hybrid, 2, true, false},
		{"hybrid at the threshold", feed.Hybrid, 3, false, true},
		{"hybrid above the threshold", feed.Hybrid, 4, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, fanout.Config{ChunkSize: 1, Strategy: tt.strategy, Threshold: 3}, nil)
			fs := users("f", tt.followers)
			r.follow("author", fs...)

			r.handle(postCreated("author", 11))

			want := []feed.PostID(nil)
			if tt.pushed {
				want = []feed.PostID{11}
			}
			// Under push, ChunkSize 1 puts only f0 in the first chunk.
			if got := timeline(t, r.home, "f0"); !slices.Equal(got, want) {
				t.Errorf("timeline(f0) = %v; want %v", got, want)
			}
			wantChunks := 0
			if tt.pushed {
				wantChunks = tt.followers - 1
			}
			if evs := r.pub.take(); len(evs) != wantChunks {
				t.Errorf("published %d chunks; want %d", len(evs), wantChunks)
			}
			r.wantRecent("author", 11)
			if got := r.isCeleb("author"); got != tt.celeb {
				t.Errorf("author in celebrity set = %v; want %v", got, tt.celeb)
			}
			mode, other := "push", "pull"
			if !tt.pushed {
				mode, other = other, mode
			}
			if got := r.metric("herald_fanout_posts_total", mode); got != 1 {
				t.Errorf("posts_total{mode=%s} = %v; want 1", mode, got)
			}
			if got := r.metric("herald_fanout_posts_total", other); got != 0 {
				t.Errorf("posts_total{mode=%s} = %v; want 0", other, got)
			}
			if tt.strategy != feed.Hybrid && r.graphW.countCalls != 0 {
				t.Errorf("%s asked the follower count %d times; want 0", tt.strategy, r.graphW.countCalls)
			}
		})
	}
}

func TestHybridCelebrityIsSticky(t *testing.T) {
	cfg := fanout.Config{ChunkSize: 10, Strategy: feed.Hybrid, Threshold: 3}
	r := newRig(t, cfg, nil)
	r.follow("star", "a", "b", "c")
	r.follow("plain", "a")
	r.post("star", 1, 2, 3)
	r.post("plain", 4)

	r.handle(postCreated("star", 1))
	if !r.isCeleb("star") {
		t.Fatalf("star with 3 followers at threshold 3 is not in the celebrity set")
	}
	r.handle(postCreated("plain", 4))
	if r.isCeleb("plain") {
		t.Errorf("plain with 1 follower is in the celebrity set")
	}

	// star drops below the threshold, and stays pulled.
	for _, f := range []string{"b", "c"} {
		if _, err := r.store.Unfollow(r.ctx, f, "star"); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := r.store.FollowerCount(r.ctx, "star"); n != 1 {
		t.Fatalf("FollowerCount(star) = %d; want 1", n)
	}
	r.handle(postCreated("star", 2))

	// So does another instance, which knows only the shared set.
	calls := r.graphW.countCalls
	other := fanout.New(cfg, r.deps(), prometheus.NewRegistry())
	if err := other.Handle(r.ctx, postCreated("star", 3)); err != nil {
		t.Fatalf("Handle on a second engine: %v", err)
	}
	if r.graphW.countCalls != calls {
		t.Errorf("a known celebrity's post asked the follower count %d times; want 0", r.graphW.countCalls-calls)
	}

	r.want("a", 4) // plain's post only
	r.want("b")
	r.wantRecent("star", 3, 2, 1)
	if evs := r.pub.take(); len(evs) != 0 {
		t.Errorf("pulled posts published %v; want nothing", evs)
	}

	// A follow of a celebrity backfills nothing: reads merge its posts.
	if _, err := r.store.Follow(r.ctx, "z", "star"); err != nil {
		t.Fatal(err)
	}
	r.handle(event.Followed{Follower: "z", Followee: "star"})
	r.want("z")
	if len(r.postsW.limits) != 0 {
		t.Errorf("backfill of a celebrity listed its posts %d times; want 0", len(r.postsW.limits))
	}
}

func TestDefaults(t *testing.T) {
	r := newRig(t, fanout.Config{}, nil) // hybrid at 10,000, chunks of 1000, backfill 800
	r.follow("big", "a")
	r.follow("small", "a")
	r.graphW.count = map[string]int64{"big": feed.DefaultCelebrityThreshold, "small": feed.DefaultCelebrityThreshold - 1}
	r.post("small", 1)

	r.handle(postCreated("big", 2))
	r.handle(postCreated("small", 3))
	r.want("a", 3)
	if !r.isCeleb("big") || r.isCeleb("small") {
		t.Errorf("celebrities: big %v, small %v; want true, false", r.isCeleb("big"), r.isCeleb("small"))
	}
	if got := r.followers.pageSizes; !slices.Equal(got, []int{fanout.DefaultChunkSize}) {
		t.Errorf("page sizes = %v; want [%d]", got, fanout.DefaultChunkSize)
	}

	if _, err := r.store.Follow(r.ctx, "b", "small"); err != nil {
		t.Fatal(err)
	}
	r.handle(event.Followed{Follower: "b", Followee: "small"})
	if got := r.postsW.limits; !slices.Equal(got, []int{fanout.DefaultBackfill}) {
		t.Errorf("backfill limits = %v; want [%d]", got, fanout.DefaultBackfill)
	}
	if fanout.DefaultChunkSize != 1000 {
		t.Errorf("DefaultChunkSize = %d; want 1000, as documented", fanout.DefaultChunkSize)
	}
	if fanout.DefaultBackfill != cache.DefaultCap {
		t.Errorf("DefaultBackfill = %d; want the timeline cap %d", fanout.DefaultBackfill, cache.DefaultCap)
	}
	r.want("b", 1)
}

func TestRetractOnDelete(t *testing.T) {
	r := newRig(t, fanout.Config{ChunkSize: 2, Strategy: feed.Push}, nil)
	fs := users("f", 5)
	r.follow("author", fs...)
	r.follow("other", "f0")
	for _, ev := range []event.PostCreated{postCreated("author", 1), postCreated("author", 2), postCreated("other", 3)} {
		r.handle(ev)
	}
	for _, ch := range r.pub.take() {
		r.handle(ch)
	}
	r.want("f4", 2, 1)

	del := event.PostDeleted{Post: 1, Author: "author"}
	r.handle(del)
	r.handle(del) // redelivered: nothing left to remove

	r.wantRecent("author", 2)
	r.wantRecent("other", 3)
	r.want("f0", 3, 2)
	for _, f := range fs[1:] {
		r.want(f, 2)
	}
	if got := r.followers.pageSizes[len(r.followers.pageSizes)-1]; got != 2 {
		t.Errorf("retract paged by %d; want the chunk size 2", got)
	}
	if evs := r.pub.take(); len(evs) != 0 {
		t.Errorf("retract published %v; want nothing", evs)
	}
}

func TestRetractOfPulledAuthorsPost(t *testing.T) {
	// An author who became pulled may have posts in timelines from a
	// backfill or push before; deleting one still removes it.
	r := newRig(t, fanout.Config{ChunkSize: 10, Strategy: feed.Hybrid, Threshold: 2}, nil)
	r.follow("star", "a", "b")
	if err := r.home.Add(r.ctx, []cache.Entry{{User: "a", Post: 1}, {User: "b", Post: 1}, {User: "b", Post: 9}}); err != nil {
		t.Fatal(err)
	}
	r.handle(postCreated("star", 1)) // pulled: recent list only
	r.handle(event.PostDeleted{Post: 1, Author: "star"})
	r.want("a")
	r.want("b", 9)
	r.wantRecent("star")
}

func TestFollowBackfillsUnfollowPurges(t *testing.T) {
	r := newRig(t, fanout.Config{Backfill: 2, Strategy: feed.Push}, nil)
	r.post("bob", 1, 2, 3)
	r.post("carol", 10)
	for _, f := range []string{"bob", "carol"} {
		if _, err := r.store.Follow(r.ctx, "alice", f); err != nil {
			t.Fatal(err)
		}
	}

	r.handle(event.Followed{Follower: "alice", Followee: "carol"})
	r.want("alice", 10)
	r.handle(event.Followed{Follower: "alice", Followee: "bob"})
	r.want("alice", 10, 3, 2)                                    // bob's newest Backfill=2 posts
	r.handle(event.Followed{Follower: "alice", Followee: "bob"}) // a repeat is harmless
	r.want("alice", 10, 3, 2)

	if _, err := r.store.Unfollow(r.ctx, "alice", "bob"); err != nil {
		t.Fatal(err)
	}
	r.handle(event.Unfollowed{Follower: "alice", Followee: "bob"})
	r.want("alice", 10)
	if got := r.postsW.limits; !slices.Equal(got, []int{2, 2, 2, 2}) {
		t.Errorf("ListByAuthor limits = %v; want the Backfill 2 each time", got)
	}

	// A followee without posts: nothing to write, and no error.
	if _, err := r.store.Follow(r.ctx, "alice", "dave"); err != nil {
		t.Fatal(err)
	}
	r.handle(event.Followed{Follower: "alice", Followee: "dave"})
	r.want("alice", 10)
}

func TestUnfollowMarkSkipsQueuedChunk(t *testing.T) {
	r := newRig(t, fanout.Config{ChunkSize: 1, Strategy: feed.Push}, nil)
	r.follow("bob", "alice", "carol")
	r.post("bob", 10, 11)

	r.handle(postCreated("bob", 10))
	queued := r.pub.take() // carol's chunk waits in the stream
	if len(queued) != 1 {
		t.Fatalf("published %d chunks; want 1", len(queued))
	}
	// carol leaves before the chunk is handled.
	if _, err := r.store.Unfollow(r.ctx, "carol", "bob"); err != nil {
		t.Fatal(err)
	}
	r.handle(event.Unfollowed{Follower: "carol", Followee: "bob"})
	r.handle(queued[0])
	r.want("carol")
	r.want("alice", 10)

	// A chunk with a leaver and a stayer writes the stayer only.
	r.handle(event.FanoutChunk{Post: 11, Author: "bob", Created: created, Index: 2, Followers: []string{"alice", "carol"}})
	r.want("alice", 11, 10)
	r.want("carol")
	if got := r.metric("herald_fanout_deliveries_total", ""); got != 2 {
		t.Errorf("deliveries_total = %v; want 2 (alice twice, carol never)", got)
	}

	// carol comes back: the backfill restores bob's posts and the mark no
	// longer stops writes.
	if _, err := r.store.Follow(r.ctx, "carol", "bob"); err != nil {
		t.Fatal(err)
	}
	r.handle(event.Followed{Follower: "carol", Followee: "bob"})
	r.want("carol", 11, 10)
	r.handle(event.FanoutChunk{Post: 12, Author: "bob", Created: created, Index: 2, Followers: []string{"carol"}})
	r.want("carol", 12, 11, 10)
}

func TestFollowChangedConvergesToStore(t *testing.T) {
	tests := []struct {
		name    string
		ev      event.Event
		prefill bool // alice's timeline holds bob's posts before
		edge    bool // the store's edge alice -> bob when the event is handled
	}{
		{"followed, still following", event.Followed{Follower: "alice", Followee: "bob"}, false, true},
		{"followed, unfollowed since", event.Followed{Follower: "alice", Followee: "bob"}, false, false},
		{"unfollowed, still unfollowed", event.Unfollowed{Follower: "alice", Followee: "bob"}, true, false},
		{"unfollowed, re-followed since", event.Unfollowed{Follower: "alice", Followee: "bob"}, true, true},
		{"unfollowed, re-followed since, empty timeline", event.Unfollowed{Follower: "alice", Followee: "bob"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, fanout.Config{ChunkSize: 10, Strategy: feed.Push}, nil)
			r.post("bob", 1, 2)
			entries := []cache.Entry{{User: "alice", Post: 5}} // carol's post, not bob's
			if tt.prefill {
				entries = append(entries, cache.Entry{User: "alice", Post: 1}, cache.Entry{User: "alice", Post: 2})
			}
			if err := r.home.Add(r.ctx, entries); err != nil {
				t.Fatal(err)
			}
			if tt.edge {
				if _, err := r.store.Follow(r.ctx, "alice", "bob"); err != nil {
					t.Fatal(err)
				}
			}

			r.handle(tt.ev)

			want := []feed.PostID{5}
			if tt.edge {
				want = []feed.PostID{5, 2, 1}
			}
			r.want("alice", want...)
			// The unfollow mark matches the edge too: a later chunk of
			// bob's lands only for a follower.
			r.handle(event.FanoutChunk{Post: 9, Author: "bob", Created: created, Index: 2, Followers: []string{"alice"}})
			if tt.edge {
				want = append([]feed.PostID{9}, want...)
			}
			r.want("alice", want...)
		})
	}
}

func TestFollowBurstConvergesInAnyOrder(t *testing.T) {
	// alice follows, unfollows and follows bob again (or unfollows last);
	// instances handle the events in any order after the store holds the
	// final edge. Every handler leaves the timeline matching it.
	f := event.Followed{Follower: "alice", Followee: "bob"}
	u := event.Unfollowed{Follower: "alice", Followee: "bob"}
	perms := [][]event.Event{{f, u, f}, {f, f, u}, {u, f, f}, {u, u, f}, {u, f, u}, {f, u, u}}
	for _, final := range []bool{true, false} {
		for _, perm := range perms {
			t.Run(fmt.Sprintf("final=%v/%s", final, kinds(perm)), func(t *testing.T) {
				r := newRig(t, fanout.Config{Strategy: feed.Push}, nil)
				r.post("bob", 1, 2)
				if final {
					if _, err := r.store.Follow(r.ctx, "alice", "bob"); err != nil {
						t.Fatal(err)
					}
				}
				want := []feed.PostID(nil)
				if final {
					want = []feed.PostID{2, 1}
				}
				for i, ev := range perm {
					r.handle(ev)
					if got := timeline(t, r.home, "alice"); !slices.Equal(got, want) {
						t.Fatalf("after event %d (%s), timeline(alice) = %v; want %v", i, ev.Kind(), got, want)
					}
				}
			})
		}
	}
}

func kinds(evs []event.Event) string {
	s := make([]string, len(evs))
	for i, ev := range evs {
		s[i] = strings.TrimPrefix(string(ev.Kind()), "graph.")
	}
	return strings.Join(s, ",")
}

func TestInactiveFollowersGetNoWrites(t *testing.T) {
	clock := &fakeClock{t: created}
	const window = time.Hour
	home := memcache.NewActiveClock(0, window, clock.now)
	r := newRig(t, fanout.Config{ChunkSize: 10, Strategy: feed.Push}, home)
	r.follow("bob", "active", "idle", "claimed")
	r.post("bob", 1)
	if err := home.Store(r.ctx, "active", nil); err != nil { // active read their timeline
		t.Fatal(err)
	}
	if ok, err := home.Claim(r.ctx, "claimed", time.Minute); !ok || err != nil { // a rebuild is under way
		t.Fatalf("Claim = %v, %v", ok, err)
	}

	r.handle(postCreated("bob", 1))

	if ids, ok, _ := home.Range(r.ctx, "active", 0, 10); !ok || !slices.Equal(ids, []feed.PostID{1}) {
		t.Errorf("active: Range = %v, ok %v; want [1], true", ids, ok)
	}
	if ids, ok, _ := home.Range(r.ctx, "idle", 0, 10); ok {
		t.Errorf("idle: Range = %v, ok true; want no timeline", ids)
	}
	r.want("idle")       // a read now builds it, without the post
	r.want("claimed", 1) // the claimed timeline took the write

	// A follow backfills nothing into an inactive timeline either.
	if _, err := r.store.Follow(r.ctx, "newbie", "bob"); err != nil {
		t.Fatal(err)
	}
	r.handle(event.Followed{Follower: "newbie", Followee: "bob"})
	if ids, ok, _ := home.Range(r.ctx, "newbie", 0, 10); ok {
		t.Errorf("newbie: Range = %v, ok true; want no timeline", ids)
	}
	r.want("newbie")

	// idle read, so now takes writes; then every timeline outlives the
	// window but one read again.
	r.handle(postCreated("bob", 2))
	r.want("idle", 2)
	clock.advance(window + time.Minute)
	r.want("idle") // expired; Store(nil) makes a new, empty one, as a read would
	r.handle(postCreated("bob", 3))
	if ids, ok, _ := home.Range(r.ctx, "active", 0, 10); ok {
		t.Errorf("active after the window: Range = %v, ok true; want expired", ids)
	}
	r.want("active") // expired: post 3 was not written
	r.want("idle", 3)
	// Entries are counted as sent, whether or not the cache kept them.
	if got := r.metric("herald_fanout_deliveries_total", ""); got != 9 {
		t.Errorf("deliveries_total = %v; want 9 (3 posts x 3 followers sent)", got)
	}
}

// bogusEvent is an event the engine does not consume.
type bogusEvent struct{}

func (bogusEvent) Kind() event.Kind { return "bogus.kind" }
func (bogusEvent) DedupeID() string { return "" }

func TestUnknownEventIsPermanent(t *testing.T) {
	r := newRig(t, fanout.Config{}, nil)
	for _, ev := range []event.Event{bogusEvent{}, nil, &event.PostCreated{Post: 1, Author: "a"}} {
		err := r.eng.Handle(r.ctx, ev)
		if !errors.Is(err, event.ErrPermanent) {
			t.Errorf("Handle(%T) = %v; want an error wrapping event.ErrPermanent", ev, err)
		}
	}
	if err := r.eng.Handle(r.ctx, bogusEvent{}); err == nil || !strings.Contains(err.Error(), "bogusEvent") {
		t.Errorf("Handle(bogusEvent) = %v; want the event type named", err)
	}
}

func TestKindsAreHandled(t *testing.T) {
	r := newRig(t, fanout.Config{Strategy: feed.Push}, nil)
	byKind := map[event.Kind]event.Event{
		event.KindPostCreated: postCreated("a", 1),
		event.KindFanoutChunk: event.FanoutChunk{Post: 1, Author: "a", Created: created, Index: 2, Followers: []string{"b"}},
		event.KindPostDeleted: event.PostDeleted{Post: 1, Author: "a"},
		event.KindFollowed:    event.Followed{Follower: "b", Followee: "a"},
		event.KindUnfollowed:  event.Unfollowed{Follower: "b", Followee: "a"},
	}
	if len(fanout.Kinds) != len(byKind) {
		t.Errorf("Kinds = %v; want the %d kinds the engine handles", fanout.Kinds, len(byKind))
	}
	for _, k := range fanout.Kinds {
		ev, ok := byKind[k]
		if !ok {
			t.Errorf("Kinds lists %q, which the test does not know", k)
			continue
		}
		if err := r.eng.Handle(r.ctx, ev); err != nil {
			t.Errorf("Handle(%s) = %v; want nil", k, err)
		}
	}
}

func TestErrorsAreReturnedForRetry(t *testing.T) {
	posted := postCreated("bob", 3)
	chunk := event.FanoutChunk{Post: 3, Author: "bob", Created: created, Index: 2, Followers: []string{"a2", "a3"}}
	deleted := event.PostDeleted{Post: 1, Author: "bob"}
	followed := event.Followed{Follower: "a0", Followee: "bob"}
	unfollowed := event.Unfollowed{Follower: "a0", Followee: "bob"}
	tests := []struct {
		name     string
		strategy feed.Strategy
		fault    func(r *rig)
		ev       event.Event
		check    func(t *testing.T, r *rig) // state after the failure
	}{
		{"post: recent list", feed.Push, func(r *rig) { r.recentW.addErr = errBoom }, posted, func(t *testing.T, r *rig) {
			r.want("a0")
			if n := len(r.pub.take()); n != 0 {
				t.Errorf("published %d chunks; want 0", n)
			}
		}},
		{"post: follower list", feed.Push, func(r *rig) { r.followers.err = errBoom }, posted, nil},
		{"post: timelines", feed.Push, func(r *rig) { r.homeW.addErr = errBoom }, posted, func(t *testing.T, r *rig) {
			if n := len(r.pub.take()); n != 0 {
				t.Errorf("published %d chunks after the first chunk failed; want 0", n)
			}
		}},
		{"post: publisher", feed.Push, func(r *rig) { r.pub.err = errBoom }, posted, func(t *testing.T, r *rig) {
			r.want("a0", 3) // the first chunk was written
			r.want("a2")
		}},
		{"post: unfollow marks", feed.Push, func(r *rig) { r.unfW.queryErr = errBoom }, posted, nil},
		{"post: follower count", feed.Hybrid, func(r *rig) { r.graphW.countErr = errBoom }, posted, func(t *testing.T, r *rig) {
			r.want("a0")
		}},
		{"post: celebrity set", feed.Hybrid, func(r *rig) { r.celebW.listErr = errBoom }, posted, nil},
		{"post: celebrity add", feed.Hybrid, func(r *rig) {
			r.celebW.addErr = errBoom
			r.graphW.count = map[string]int64{"bob": 100}
		}, posted, func(t *testing.T, r *rig) {
			if r.isCeleb("bob") {
				t.Errorf("bob in the celebrity set after a failed add")
			}
		}},
		{"chunk: timelines", feed.Push, func(r *rig) { r.homeW.addErr = errBoom }, chunk, nil},
		{"chunk: unfollow marks", feed.Push, func(r *rig) { r.unfW.queryErr = errBoom }, chunk, func(t *testing.T, r *rig) {
			if r.homeW.adds != 0 {
				t.Errorf("wrote timelines %d times without the marks; want 0", r.homeW.adds)
			}
		}},
		{"delete: recent list", feed.Push, func(r *rig) { r.recentW.removeErr = errBoom }, deleted, nil},
		{"delete: timelines", feed.Push, func(r *rig) { r.homeW.removeErr = errBoom }, deleted, nil},
		{"delete: follower list", feed.Push, func(r *rig) { r.followers.err = errBoom }, deleted, nil},
		{"follow: unfollow marks", feed.Push, func(r *rig) { r.unfW.clearErr = errBoom }, followed, nil},
		{"follow: celebrity set", feed.Hybrid, func(r *rig) { r.celebW.listErr = errBoom }, followed, nil},
		{"follow: posts", feed.Push, func(r *rig) { r.postsW.err = errBoom }, followed, nil},
		{"follow: timelines", feed.Push, func(r *rig) { r.homeW.addErr = errBoom }, followed, nil},
		{"follow: edge", feed.Push, func(r *rig) { r.graphW.followingErr = errBoom }, followed, nil},
		{"unfollow: unfollow marks", feed.Push, func(r *rig) { r.unfW.markErr = errBoom }, unfollowed, nil},
		{"unfollow: posts", feed.Push, func(r *rig) { r.postsW.err = errBoom }, unfollowed, nil},
		{"unfollow: timelines", feed.Push, func(r *rig) { r.homeW.removeErr = errBoom }, unfollowed, nil},
		{"unfollow: edge", feed.Push, func(r *rig) { r.graphW.followingErr = errBoom }, unfollowed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, fanout.Config{ChunkSize: 2, Strategy: tt.strategy, Threshold: 10}, nil)
			r.follow("bob", users("a", 4)...)
			r.post("bob", 1, 2)
			tt.fault(r)

			err := r.eng.Handle(r.ctx, tt.ev)
			if !errors.Is(err, errBoom) {
				t.Fatalf("Handle = %v; want the injected error", err)
			}
			if errors.Is(err, event.ErrPermanent) {
				t.Errorf("Handle = %v; want a retryable error, not event.ErrPermanent", err)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestPublishFailureRetryRepublishesSameChunks(t *testing.T) {
	r := newRig(t, fanout.Config{ChunkSize: 1, Strategy: feed.Push}, nil)
	fs := users("f", 4)
	r.follow("author", fs...)
	r.pub.err, r.pub.failAt = errBoom, 2 // the second publish fails

	ev := postCreated("author", 8)
	if err := r.eng.Handle(r.ctx, ev); !errors.Is(err, errBoom) {
		t.Fatalf("Handle = %v; want the publisher's error", err)
	}
	if got, want := dedupeIDs(r.pub.take()), []string{"chunk-8-2"}; !slices.Equal(got, want) {
		t.Errorf("before the failure published %v; want %v", got, want)
	}
	r.handle(ev) // the redelivery
	got := r.pub.take()
	if ids, want := dedupeIDs(got), []string{"chunk-8-2", "chunk-8-3", "chunk-8-4"}; !slices.Equal(ids, want) {
		t.Errorf("retry published %v; want %v", ids, want)
	}
	for _, ch := range got {
		r.handle(ch)
	}
	for f, tl := range r.timelines(fs...) {
		if !slices.Equal(tl, []feed.PostID{8}) {
			t.Errorf("timeline(%s) = %v; want [8]", f, tl)
		}
	}
}

func TestRedeliveryAfterFollowerListShiftLosesNoFollower(t *testing.T) {
	r := newRig(t, fanout.Config{ChunkSize: 2, Strategy: feed.Push}, nil)
	fs := users("f", 6)
	r.follow("author", fs...)
	r.post("author", 8)
	r.pub.dedupe = true
	r.pub.err, r.pub.failAt = errBoom, 2 // chunk 2 ([f2 f3]) is stored, chunk 3 ([f4 f5]) fails

	ev := postCreated("author", 8)
	if err := r.eng.Handle(r.ctx, ev); !errors.Is(err, errBoom) {
		t.Fatalf("Handle = %v; want the publisher's error", err)
	}
	// f0 leaves before the redelivery: the pages become [f1 f2] [f3 f4] [f5].
	r.unfollow("f0", "author")
	r.handle(event.Unfollowed{Follower: "f0", Followee: "author"})
	r.handle(ev)
	// Every chunk the stream kept is handled.
	for _, ch := range r.pub.take() {
		r.handle(ch)
	}
	for _, f := range fs[1:] {
		if got := timeline(t, r.home, f); !slices.Equal(got, []feed.PostID{8}) {
			t.Errorf("timeline(%s) = %v; want [8] (chunks dropped as duplicates: %+v)", f, got, r.pub.dropped)
		}
	}
	r.want("f0")
}

func TestUnfollowDuringChunkWriteLeavesNoPost(t *testing.T) {
	t.Skip("BUG: write checks the unfollow marks, then adds; an unfollow purged between the two " +
		"(another instance) is undone by the add, and nothing re-reads the edge after a push " +
		"(fanout.go write: Unfollowed then timelines.Add)")
	r := newRig(t, fanout.Config{ChunkSize: 10, Strategy: feed.Push}, nil)
	r.follow("bob", "alice", "carol")
	r.post("bob", 10)
	// Another instance handles carol's unfollow after this one read the
	// marks and before its write.
	r.homeW.beforeAdd = func() {
		r.unfollow("carol", "bob")
		r.handle(event.Unfollowed{Follower: "carol", Followee: "bob"})
	}

	r.handle(postCreated("bob", 10))

	r.want("alice", 10)
	r.want("carol") // carol no longer follows bob and was purged
}

// TestStaleFollowRereadConverges: a handler that read a stale edge and
// wrote the opposite must read the edge again after that write. Here one
// instance handles an old Followed event, reads the edge while bob has
// unfollowed, and purges; before its purge lands, bob follows again and
// another instance handles that Followed event to the end. The stale purge
// lands last, so only a re-read after it restores alice's post.
func TestStaleFollowRereadConverges(t *testing.T) {
	r := newRig(t, fanout.Config{Strategy: feed.Push}, nil)
	r.follow("alice", "bob")
	r.post("alice", 10)
	r.unfollow("bob", "alice") // the edge the first handler will read
	r.homeW.beforeRemove = func() {
		// bob follows again, and the other instance handles it fully.
		r.follow("alice", "bob")
		r.handle(event.Followed{Follower: "bob", Followee: "alice"})
	}
	r.handle(event.Followed{Follower: "bob", Followee: "alice"}) // the old event
	if got := timeline(t, r.home, "bob"); !slices.Equal(got, []feed.PostID{10}) {
		t.Errorf("timeline(bob) = %v; want [10]: bob follows alice, and a stale purge landed after the last backfill", got)
	}
}
