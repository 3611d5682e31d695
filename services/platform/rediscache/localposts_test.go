package rediscache_test

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/rediscache"
)

// localPair returns two Caches on one Redis and key prefix, as two
// instances see it: a reader that keeps post bodies in process, on clock,
// and a writer that does not. It returns the raw client and the prefix too.
func localPair(t *testing.T, clock func() time.Time) (reader, writer *rediscache.Cache, raw func(ctx context.Context, keys ...string)) {
	return localPairWith(t, rediscache.Options{Clock: clock})
}

// localPairWith is localPair with the reader's other options.
func localPairWith(t *testing.T, opts rediscache.Options) (reader, writer *rediscache.Cache, raw func(ctx context.Context, keys ...string)) {
	rdb, prefix := client(t)
	opts.Prefix, opts.LocalPosts = prefix, 100
	reader = rediscache.New(rdb, opts)
	writer = rediscache.New(rdb, rediscache.Options{Prefix: prefix})
	del := func(ctx context.Context, keys ...string) {
		for _, k := range keys {
			if err := rdb.Del(ctx, prefix+k).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return reader, writer, del
}

func postKey(id feed.PostID) string { return "post:{" + id.String() + "}" }

// asOf reads ids through reader for a read that began at start.
func asOf(t *testing.T, reader *rediscache.Cache, start time.Time, ids ...feed.PostID) map[feed.PostID]feed.Post {
	t.Helper()
	got, err := reader.GetPostsAsOf(context.Background(), ids, start)
	if err != nil {
		t.Fatalf("GetPostsAsOf(%v) error: %v", ids, err)
	}
	return got
}

// timelineRead is the timeline read that checks the delete log on the way.
func timelineRead(t *testing.T, c *rediscache.Cache) {
	t.Helper()
	if _, _, err := c.Range(context.Background(), "alice", 0, 1); err != nil {
		t.Fatalf("Range error: %v", err)
	}
}

// TestLocalPostsServeFromProcess: after a timeline read has checked the
// delete log, a read's bodies come from the process, not Redis: they are
// still served once Redis no longer holds them.
func TestLocalPostsServeFromProcess(t *testing.T) {
	ctx := context.Background()
	reader, writer, del := localPair(t, nil)
	a := feed.Post{ID: 901, Author: "bob", Text: "one", Created: time.UnixMilli(1).UTC()}
	if err := writer.PutPosts(ctx, []feed.Post{a}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	timelineRead(t, reader)
	if got := asOf(t, reader, start, a.ID); got[a.ID] != a {
		t.Fatalf("first read = %v; want %v from Redis", got, a)
	}
	del(ctx, postKey(a.ID))
	start = time.Now()
	timelineRead(t, reader)
	if got := asOf(t, reader, start, a.ID); got[a.ID] != a {
		t.Errorf("read after Redis lost the body = %v; want %v from the process", got, a)
	}
	if got, err := writer.GetPosts(ctx, []feed.PostID{a.ID}); err != nil || len(got) != 0 {
		t.Errorf("writer's GetPosts = %v, %v; want a miss: only the reader keeps bodies", got, err)
	}

	// The reader counts where its bodies came from: the first read's
	// from Redis (a miss), the second's from the process (a hit).
	reg := prometheus.NewRegistry()
	reg.MustRegister(reader)
	want := map[string]float64{"hit": 1, "miss": 1}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("herald_post_cache_local_lookups_total by result = %v; want %v", got, want)
	}
}

// TestLocalPostsSeeDeletesAtOnce: a delete shows in every read that
// began after DeletePosts returned, whether or not a timeline read
// checked the delete log in between, though the reader holds the body.
func TestLocalPostsSeeDeletesAtOnce(t *testing.T) {
	t.Run("pipelines", func(t *testing.T) { testSeeDeletesAtOnce(t, rediscache.Options{}) })
	t.Run("autopipelined", func(t *testing.T) { testSeeDeletesAtOnce(t, rediscache.Options{AutoPipelineReads: true}) })
}

func testSeeDeletesAtOnce(t *testing.T, opts rediscache.Options) {
	ctx := context.Background()
	reader, writer, del := localPairWith(t, opts)
	a := feed.Post{ID: 911, Author: "bob", Text: "a", Created: time.UnixMilli(1).UTC()}
	b := feed.Post{ID: 912, Author: "bob", Text: "b", Created: time.UnixMilli(2).UTC()}
	if err := writer.PutPosts(ctx, []feed.Post{a, b}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	timelineRead(t, reader)
	asOf(t, reader, start, a.ID, b.ID) // both now in process

	// No timeline read after the delete: GetPostsAsOf checks the log.
	if err := writer.DeletePosts(ctx, []feed.PostID{a.ID}); err != nil {
		t.Fatal(err)
	}
	if got := asOf(t, reader, time.Now(), a.ID); !got[a.ID].Deleted {
		t.Errorf("read begun after DeletePosts = %v; want a tombstone", got)
	}

	// A timeline read after the delete: its check applies it. The
	// tombstone then answers from the process, though Redis lost it.
	if err := writer.DeletePosts(ctx, []feed.PostID{b.ID}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	timelineRead(t, reader)
	del(ctx, postKey(b.ID))
	if got := asOf(t, reader, start, b.ID); !got[b.ID].Deleted {
		t.Errorf("read begun after DeletePosts, past a timeline read = %v; want the tombstone", got)
	}
}

// TestLocalPostsFillKeepsTombstone: a body fetched from Redis does not
// replace a tombstone the process holds, so a fetch that raced a delete
// cannot put the body back.
func TestLocalPostsFillKeepsTombstone(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := client(t)
	reader := rediscache.New(rdb, rediscache.Options{Prefix: prefix, LocalPosts: 100})
	writer := rediscache.New(rdb, rediscache.Options{Prefix: prefix})
	a := feed.Post{ID: 921, Author: "bob", Text: "a", Created: time.UnixMilli(1).UTC()}
	timelineRead(t, reader) // finds the log's end
	if err := writer.DeletePosts(ctx, []feed.PostID{a.ID}); err != nil {
		t.Fatal(err)
	}
	timelineRead(t, reader) // applies the delete: a tombstone in process
	// What a fetch begun before the delete would bring back: the body.
	if err := rdb.Del(ctx, prefix+postKey(a.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := writer.PutPosts(ctx, []feed.Post{a}); err != nil {
		t.Fatal(err)
	}
	// A read begun after the last check fetches from Redis, and fills.
	asOf(t, reader, time.Now(), a.ID)
	start := time.Now()
	timelineRead(t, reader)
	if got := asOf(t, reader, start, a.ID); !got[a.ID].Deleted {
		t.Errorf("read = %v; want the tombstone the process held before the fill", got)
	}
}

// TestLocalPostsPurgeAfterSilence: a reader that has not checked the
// delete log for half its retention may have missed trimmed entries, so
// it drops its bodies before it serves any again.
func TestLocalPostsPurgeAfterSilence(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	reader, writer, del := localPair(t, clock)
	a := feed.Post{ID: 931, Author: "bob", Text: "a", Created: time.UnixMilli(1).UTC()}
	if err := writer.PutPosts(ctx, []feed.Post{a}); err != nil {
		t.Fatal(err)
	}
	start := clock()
	timelineRead(t, reader)
	asOf(t, reader, start, a.ID)
	del(ctx, postKey(a.ID))

	advance(31 * time.Minute) // past half the log's hour
	start = clock()
	timelineRead(t, reader)
	if got := asOf(t, reader, start, a.ID); len(got) != 0 {
		t.Errorf("read after a silence = %v; want a miss: the process dropped its bodies", got)
	}
}
