package cassandrastore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/herald-feed/herald/services/platform/cassandrastore"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/store/storetest"
	"github.com/herald-feed/herald/services/platform/testenv"
)

// Each test store gets a keyspace of its own, dropped when its test ends,
// because the contract suite wants an empty store per subtest.
var (
	runID    = randomHex(4)
	keyspace atomic.Int64
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func freshKeyspace() string { return fmt.Sprintf("test_%s_%d", runID, keyspace.Add(1)) }

// rawSession opens a driver session on the test cluster, bound to ks
// unless it is empty, and closes it when tb ends.
func rawSession(tb testing.TB, ks string) *gocql.Session {
	tb.Helper()
	cluster := gocql.NewCluster(testenv.Cassandra(tb)...)
	cluster.Authenticator = testenv.CassandraAuth(tb)
	cluster.ProtoVersion = 4
	cluster.Keyspace = ks
	cluster.Timeout = 20 * time.Second
	session, err := cluster.CreateSession()
	if err != nil {
		tb.Fatalf("connect to Cassandra: %v", err)
	}
	tb.Cleanup(session.Close)
	return session
}

func dropKeyspace(tb testing.TB, ks string) {
	tb.Helper()
	tb.Cleanup(func() {
		if err := rawSession(tb, "").Query("DROP KEYSPACE IF EXISTS " + ks).Exec(); err != nil {
			tb.Errorf("DROP KEYSPACE %s: %v", ks, err)
		}
	})
}

// openStore opens a Store on a fresh keyspace.
func openStore(tb testing.TB, cfg cassandrastore.Config) *cassandrastore.Store {
	tb.Helper()
	cfg.Hosts = testenv.Cassandra(tb)
	auth := testenv.CassandraAuth(tb)
	cfg.Username, cfg.Password = auth.Username, auth.Password
	if cfg.Keyspace == "" {
		cfg.Keyspace = freshKeyspace()
	}
	dropKeyspace(tb, cfg.Keyspace)
	s, err := cassandrastore.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Open(%s) error: %v", cfg.Keyspace, err)
	}
	tb.Cleanup(s.Close)
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openStore(t, cassandrastore.Config{})
	})
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	ctx := context.Background()
	ks := freshKeyspace()
	dropKeyspace(t, ks)
	session := rawSession(t, "")
	if err := cassandrastore.Migrate(ctx, session, ks, cassandrastore.DefaultReplication); err != nil {
		t.Fatalf("Migrate(%s) error: %v", ks, err)
	}
	versions := func() map[int]time.Time {
		t.Helper()
		out := map[int]time.Time{}
		iter := session.Query("SELECT version, applied_at FROM " + ks + ".schema_migrations").Iter()
		var v int
		var at time.Time
		for iter.Scan(&v, &at) {
			out[v] = at
		}
		if err := iter.Close(); err != nil {
			t.Fatalf("read schema_migrations: %v", err)
		}
		return out
	}
	first := versions()
	if first[1].IsZero() {
		t.Fatalf("schema_migrations after Migrate = %v; want version 1 recorded", first)
	}
	if err := cassandrastore.Migrate(ctx, session, ks, cassandrastore.DefaultReplication); err != nil {
		t.Fatalf("second Migrate(%s) error: %v", ks, err)
	}
	if second := versions(); !maps(first, second) {
		t.Errorf("schema_migrations after a second Migrate = %v; want it unchanged, %v", second, first)
	}
	// A store opens on the migrated keyspace and works.
	s := openStore(t, cassandrastore.Config{Keyspace: ks})
	if _, err := s.FollowerCount(ctx, "alice"); err != nil {
		t.Errorf("FollowerCount on the migrated keyspace: %v", err)
	}
}

// TestFollowingCountOnOlderKeyspace: a keyspace migrated before 0002 has
// following rows and no following count. Opening it adds the column; the
// count of its users comes from their rows, the limit holds, and the next
// write stores the count.
func TestFollowingCountOnOlderKeyspace(t *testing.T) {
	ctx := context.Background()
	ks := freshKeyspace()
	dropKeyspace(t, ks)
	session := rawSession(t, "")
	if err := cassandrastore.Migrate(ctx, session, ks, cassandrastore.DefaultReplication); err != nil {
		t.Fatalf("Migrate(%s) error: %v", ks, err)
	}
	// Back to the schema of version 1, then what its Follow wrote: both
	// rows of each edge and the follower count.
	for _, stmt := range []string{
		"ALTER TABLE " + ks + ".following DROP n",
		"DELETE FROM " + ks + ".schema_migrations WHERE version = 2",
	} {
		if err := session.Query(stmt).Exec(); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for _, followee := range []string{"b1", "b2", "b3"} {
		since := time.Now()
		if err := session.Query("INSERT INTO "+ks+".followers (user, follower, since, n) VALUES (?, 'alice', ?, 1)", followee, since).Exec(); err != nil {
			t.Fatal(err)
		}
		if err := session.Query("INSERT INTO "+ks+".following (user, followee, since) VALUES ('alice', ?, ?)", followee, since).Exec(); err != nil {
			t.Fatal(err)
		}
	}

	s := openStore(t, cassandrastore.Config{Keyspace: ks})
	if n, err := s.FollowingCount(ctx, "alice"); err != nil || n != 3 {
		t.Fatalf("FollowingCount(alice) with rows from before 0002 = %d, %v; want 3, from the rows", n, err)
	}
	if _, err := s.FollowLimited(ctx, "alice", "b4", 3); !errors.Is(err, feed.ErrFailedPrecondition) {
		t.Errorf("FollowLimited(alice, b4, 3) with 3 older rows = %v; want feed.ErrFailedPrecondition", err)
	}
	if changed, err := s.FollowLimited(ctx, "alice", "b2", 3); err != nil || changed {
		t.Errorf("FollowLimited(alice, b2, 3) of an older edge = %v, %v; want false, nil", changed, err)
	}
	if changed, err := s.Unfollow(ctx, "alice", "b1"); err != nil || !changed {
		t.Fatalf("Unfollow(alice, b1) = %v, %v; want true, nil", changed, err)
	}
	var n *int64
	if err := session.Query("SELECT n FROM " + ks + ".following WHERE user = 'alice' LIMIT 1").Scan(&n); err != nil || n == nil || *n != 2 {
		t.Errorf("stored following count of alice after an Unfollow = %v, %v; want 2", n, err)
	}
	if _, err := s.FollowLimited(ctx, "alice", "b4", 3); err != nil {
		t.Errorf("FollowLimited(alice, b4, 3) after an Unfollow = %v; want nil", err)
	}
	if n, err := s.FollowingCount(ctx, "alice"); err != nil || n != 3 {
		t.Errorf("FollowingCount(alice) = %d, %v; want 3", n, err)
	}
	if n, err := s.FollowerCount(ctx, "b4"); err != nil || n != 1 {
		t.Errorf("FollowerCount(b4) = %d, %v; want 1", n, err)
	}

	// A migration cut short after its ALTER runs again in full.
	if err := session.Query("DELETE FROM " + ks + ".schema_migrations WHERE version = 2").Exec(); err != nil {
		t.Fatal(err)
	}
	if err := cassandrastore.Migrate(ctx, session, ks, cassandrastore.DefaultReplication); err != nil {
		t.Errorf("Migrate(%s) again over an applied 0002 = %v; want nil", ks, err)
	}
}

// TestFollowLimitedCompletesHalfEdge: a followers row without its
// following row (a Follow by an older version that failed half way) is an
// edge that exists, so following it again at the limit completes it
// rather than being refused.
func TestFollowLimitedCompletesHalfEdge(t *testing.T) {
	ctx := context.Background()
	ks := freshKeyspace()
	s := openStore(t, cassandrastore.Config{Keyspace: ks})
	for _, b := range []string{"b1", "b2"} {
		if _, err := s.Follow(ctx, "alice", b); err != nil {
			t.Fatal(err)
		}
	}
	// The followers row of alice -> half, with no following row.
	if err := rawSession(t, ks).Query("UPDATE followers SET n = 1, since = ? WHERE user = 'half' AND follower = 'alice'", time.Now()).Exec(); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.FollowLimited(ctx, "alice", "half", 2); err != nil || changed {
		t.Fatalf("FollowLimited(alice, half, 2) at the limit with only the followers row = %v, %v; want false, nil", changed, err)
	}
	page, _, err := s.Following(ctx, "alice", nil, 10)
	if err != nil || !slices.Equal(page, []string{"b1", "b2", "half"}) {
		t.Errorf("Following(alice) = %v, %v; want [b1 b2 half]", page, err)
	}
	if n, err := s.FollowingCount(ctx, "alice"); err != nil || n != 3 {
		t.Errorf("FollowingCount(alice) = %d, %v; want 3", n, err)
	}
	if _, err := s.FollowLimited(ctx, "alice", "b3", 2); !errors.Is(err, feed.ErrFailedPrecondition) {
		t.Errorf("FollowLimited(alice, b3, 2) = %v; want feed.ErrFailedPrecondition", err)
	}
}

// TestFollowLimitedAcrossStores: follows racing at one below the limit
// from two stores (two processes: their in-process locks do not meet)
// still admit one edge, by the lightweight transaction on the following
// count.
func TestFollowLimitedAcrossStores(t *testing.T) {
	ctx := context.Background()
	ks := freshKeyspace()
	a := openStore(t, cassandrastore.Config{Keyspace: ks})
	b := openStore(t, cassandrastore.Config{Keyspace: ks})
	const limit, racers = 3, 8
	for _, f := range []string{"b1", "b2"} {
		if _, err := a.FollowLimited(ctx, "alice", f, limit); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg           sync.WaitGroup
		won, refused atomic.Int64
	)
	start := make(chan struct{})
	for i := range racers {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			<-start
			changed, err := s.FollowLimited(ctx, "alice", fmt.Sprintf("r%d", i), limit)
			switch {
			case err == nil && changed:
				won.Add(1)
			case errors.Is(err, feed.ErrFailedPrecondition):
				refused.Add(1)
			default:
				t.Errorf("FollowLimited(alice, r%d, %d) = %v, %v; want a new edge or FAILED_PRECONDITION", i, limit, changed, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 || refused.Load() != racers-1 {
		t.Errorf("%d follows racing from two stores at %d of %d: %d made, %d refused; want 1 and %d", racers, limit-1, limit, won.Load(), refused.Load(), racers-1)
	}
	if n, err := b.FollowingCount(ctx, "alice"); err != nil || n != limit {
		t.Errorf("FollowingCount(alice) = %d, %v; want %d", n, err, limit)
	}
	if page, _, err := b.Following(ctx, "alice", nil, 10); err != nil || len(page) != limit {
		t.Errorf("Following(alice) = %v, %v; want %d accounts", page, err, limit)
	}
}

func maps(a, b map[int]time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !b[k].Equal(v) {
			return false
		}
	}
	return true
}

func TestOpenRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  cassandrastore.Config
	}{
		{"no hosts", cassandrastore.Config{}},
		{"bad consistency", cassandrastore.Config{Hosts: []string{"127.0.0.1:1"}, Consistency: "SOMETIMES"}},
		{"bad keyspace", cassandrastore.Config{Hosts: []string{"127.0.0.1:1"}, Keyspace: "herald; DROP"}},
		{"bad replication", cassandrastore.Config{Hosts: []string{"127.0.0.1:1"}, Replication: "SimpleStrategy"}},
	}
	for _, tt := range tests {
		tt.cfg.Timeout = 200 * time.Millisecond
		s, err := cassandrastore.Open(context.Background(), tt.cfg)
		if err == nil {
			s.Close()
			t.Errorf("Open(%s) = nil error; want an error", tt.name)
			continue
		}
		if errors.Is(err, feed.ErrUnavailable) {
			t.Errorf("Open(%s) = %v; want a configuration error, not ErrUnavailable", tt.name, err)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	start := time.Now()
	s, err := cassandrastore.Open(context.Background(), cassandrastore.Config{
		Hosts:   []string{"127.0.0.1:1"},
		Timeout: 500 * time.Millisecond,
	})
	if err == nil {
		s.Close()
		t.Fatal("Open(127.0.0.1:1) = nil error; want ErrUnavailable")
	}
	if !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("Open(127.0.0.1:1) error = %v; want one wrapping feed.ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open(127.0.0.1:1) took %v to fail", d)
	}
}

// A keyspace that wants three replicas on a one-node cluster makes every
// QUORUM request fail with Cassandra's own Unavailable error.
func TestNotEnoughReplicasIsUnavailable(t *testing.T) {
	ks := freshKeyspace()
	dropKeyspace(t, ks)
	auth := testenv.CassandraAuth(t)
	s, err := cassandrastore.Open(context.Background(), cassandrastore.Config{
		Hosts:       testenv.Cassandra(t),
		Username:    auth.Username,
		Password:    auth.Password,
		Keyspace:    ks,
		Consistency: "QUORUM",
		Replication: "{'class': 'SimpleStrategy', 'replication_factor': 3}",
	})
	if err == nil {
		s.Close()
		t.Fatal("Open(RF 3 on one node, QUORUM) = nil error; want ErrUnavailable")
	}
	var unavailable *gocql.RequestErrUnavailable
	if !errors.Is(err, feed.ErrUnavailable) || !errors.As(err, &unavailable) {
		t.Errorf("Open(RF 3 on one node, QUORUM) error = %v; want feed.ErrUnavailable wrapping *gocql.RequestErrUnavailable", err)
	}
}

// Snowflake IDs use 63 bits; the top ones must survive the trip through a
// bigint.
func TestLargeIDsRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, cassandrastore.Config{})
	for _, id := range []feed.PostID{1<<62 + 12345, 1<<63 - 1, 1} {
		p := feed.Post{ID: id, Author: "alice", Text: fmt.Sprintf("id %d", id), Created: time.UnixMilli(1700000000123).UTC()}
		if _, created, err := s.CreatePost(ctx, p, ""); err != nil || !created {
			t.Fatalf("CreatePost(%d) = %v, %v; want true, nil", id, created, err)
		}
		got, err := s.GetPosts(ctx, []feed.PostID{id})
		if err != nil || len(got) != 1 || got[0] != p {
			t.Errorf("GetPosts(%d) = %v, %v; want [%v]", id, got, err, p)
		}
		if got, err := s.ListByAuthor(ctx, "alice", id+1, 1); id < 1<<63-1 && (err != nil || len(got) != 1 || got[0] != p) {
			t.Errorf("ListByAuthor(alice, %d, 1) = %v, %v; want [%v]", id+1, got, err, p)
		}
		if got, err := s.ListUnpublished(ctx, 0, 10); err != nil || !slices.Contains(got, p) {
			t.Errorf("ListUnpublished = %v, %v; want it to hold %v", got, err, p)
		}
	}
	if got, err := s.ListByAuthor(ctx, "alice", 0, 10); err != nil || len(got) != 3 || got[0].ID != 1<<63-1 || got[2].ID != 1 {
		t.Errorf("ListByAuthor(alice) = %v, %v; want the three posts newest first", got, err)
	}

	// An ID above 2^63 - 1 can never have been stored.
	const huge = feed.PostID(1 << 63)
	if got, err := s.GetPosts(ctx, []feed.PostID{huge}); err != nil || len(got) != 0 {
		t.Errorf("GetPosts(2^63) = %v, %v; want [], nil", got, err)
	}
	if _, err := s.DeletePost(ctx, huge); !errors.Is(err, feed.ErrNotFound) {
		t.Errorf("DeletePost(2^63) error = %v; want feed.ErrNotFound", err)
	}
	if _, _, err := s.CreatePost(ctx, feed.Post{ID: huge, Author: "alice", Text: "x", Created: time.Now()}, ""); err == nil {
		t.Error("CreatePost(ID 2^63) = nil error; want an error")
	}
}

// ListByAuthor must walk week buckets, skipping empty ones, and stop at the
// author's oldest. The contract suite's posts all fall in one week.
func TestListByAuthorAcrossBuckets(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, cassandrastore.Config{})
	now := time.Date(2025, 1, 6, 12, 0, 0, 0, time.UTC)
	g, err := idgen.New(7, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	var all []feed.Post
	// Several posts a week for a while, then a year of silence, then more;
	// a few land on the same millisecond.
	steps := []time.Duration{0, 0, 5 * 24 * time.Hour, 3 * 24 * time.Hour, 9 * 24 * time.Hour, time.Hour, 365 * 24 * time.Hour, 2 * 24 * time.Hour, 0, 6 * 24 * time.Hour, 20 * 24 * time.Hour}
	for i, step := range slices.Repeat(steps, 3) {
		now = now.Add(step)
		id := g.Next()
		p := feed.Post{ID: id, Author: "alice", Text: fmt.Sprintf("post %d", i), Created: idgen.Time(id)}
		if _, _, err := s.CreatePost(ctx, p, ""); err != nil {
			t.Fatalf("CreatePost(%d) error: %v", i, err)
		}
		all = append(all, p)
	}
	// Another author in the same weeks must not show up.
	if _, _, err := s.CreatePost(ctx, feed.Post{ID: g.Next(), Author: "alicea", Text: "other", Created: now}, ""); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(all)

	for _, limit := range []int{1, 2, 5, 100} {
		var got []feed.Post
		var before feed.PostID
		for range len(all) + 1 {
			page, err := s.ListByAuthor(ctx, "alice", before, limit)
			if err != nil {
				t.Fatalf("ListByAuthor(alice, %d, %d) error: %v", before, limit, err)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			before = page[len(page)-1].ID
		}
		if !slices.Equal(got, all) {
			t.Errorf("paging ListByAuthor(alice) by %d = %d posts %v; want %d newest first", limit, len(got), got, len(all))
		}
	}
	// A bound inside a silent year starts from the older posts.
	mid := idgen.MinID(idgen.Time(all[len(all)/2].ID).Add(100 * 24 * time.Hour))
	want := slices.DeleteFunc(slices.Clone(all), func(p feed.Post) bool { return p.ID >= mid })
	if got, err := s.ListByAuthor(ctx, "alice", mid, 100); err != nil || !slices.Equal(got, want) {
		t.Errorf("ListByAuthor(alice, %d, 100) = %v, %v; want %v", mid, got, err, want)
	}
}

// A claimed idempotency key whose post was never written (the batch after
// the claim failed) is completed by the retry, under the claimed ID.
func TestCreatePostRecoversClaimWithoutPost(t *testing.T) {
	ctx := context.Background()
	ks := freshKeyspace()
	s := openStore(t, cassandrastore.Config{Keyspace: ks})
	g, _ := idgen.New(1, nil)
	lost := g.Next()
	err := rawSession(t, ks).Query("INSERT INTO idempotency (author, key, post_id) VALUES (?, ?, ?) USING TTL 60", "alice", "k", int64(lost)).Exec()
	if err != nil {
		t.Fatal(err)
	}

	retryID := g.Next()
	retry := feed.Post{ID: retryID, Author: "alice", Text: "hello", Created: idgen.Time(retryID)}
	got, created, err := s.CreatePost(ctx, retry, "k")
	want := retry
	want.ID = lost
	if err != nil || !created || got != want {
		t.Fatalf("CreatePost(retry of a lost write) = %v, %v, %v; want %v, true, nil", got, created, err, want)
	}
	if ps, err := s.GetPosts(ctx, []feed.PostID{lost, retryID}); err != nil || len(ps) != 1 || ps[0] != want {
		t.Errorf("GetPosts(lost, retry) = %v, %v; want [%v]", ps, err, want)
	}
	if ps, err := s.ListUnpublished(ctx, 0, 10); err != nil || len(ps) != 1 || ps[0] != want {
		t.Errorf("ListUnpublished = %v, %v; want [%v]", ps, err, want)
	}
	if ps, err := s.ListByAuthor(ctx, "alice", 0, 10); err != nil || len(ps) != 1 || ps[0] != want {
		t.Errorf("ListByAuthor(alice) = %v, %v; want [%v]", ps, err, want)
	}
	again := feed.Post{ID: g.Next(), Author: "alice", Text: "hello", Created: time.Now()}
	if got, created, err := s.CreatePost(ctx, again, "k"); err != nil || created || got != want {
		t.Errorf("CreatePost(second retry) = %v, %v, %v; want %v, false, nil", got, created, err, want)
	}
}

func TestIdempotencyKeyHasTTL(t *testing.T) {
	ctx := context.Background()
	ks := freshKeyspace()
	s := openStore(t, cassandrastore.Config{Keyspace: ks, IdempotencyTTL: time.Hour})
	g, _ := idgen.New(1, nil)
	id := g.Next()
	if _, _, err := s.CreatePost(ctx, feed.Post{ID: id, Author: "alice", Text: "x", Created: idgen.Time(id)}, "k"); err != nil {
		t.Fatal(err)
	}
	var ttl int
	if err := rawSession(t, ks).Query("SELECT TTL(post_id) FROM idempotency WHERE author = ? AND key = ?", "alice", "k").Scan(&ttl); err != nil {
		t.Fatal(err)
	}
	if ttl <= 3500 || ttl > 3600 {
		t.Errorf("TTL of the idempotency record = %d s; want about 3600", ttl)
	}
}

// A paging state the store did not make (a page token from the Pebble
// store, say) is bad input, not a server failure.
func TestFollowersRejectsForeignPageState(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, cassandrastore.Config{})
	for i := range 5 {
		if _, err := s.Follow(ctx, fmt.Sprintf("u%d", i), "star"); err != nil {
			t.Fatal(err)
		}
	}
	ids, next, err := s.Followers(ctx, "star", nil, 2)
	if err != nil || len(ids) != 2 || next == nil {
		t.Fatalf("Followers(star, nil, 2) = %v, %v, %v; want 2 IDs and a next state", ids, next, err)
	}
	var inv *feed.InvalidError
	for _, state := range [][]byte{[]byte("u1"), []byte("not a paging state at all")} {
		if _, _, err := s.Following(ctx, "star", state, 2); !errors.As(err, &inv) || inv.Field != "page_token" {
			t.Errorf("Following(star, %q) error = %v; want a feed.InvalidError for page_token", state, err)
		}
	}
}

func TestConcurrentFollowsCountExactly(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, cassandrastore.Config{})
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			if _, err := s.Follow(ctx, fmt.Sprintf("fan%d", i), "star"); err != nil {
				errs <- err
			}
		})
		if i%4 == 0 {
			// The same edge twice at once must count once.
			wg.Go(func() {
				if _, err := s.Follow(ctx, fmt.Sprintf("fan%d", i), "star"); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Follow error: %v", err)
	}
	if got, err := s.FollowerCount(ctx, "star"); err != nil || got != n {
		t.Errorf("FollowerCount(star) after %d concurrent follows = %d, %v; want %d", n, got, err, n)
	}
}

func BenchmarkCreatePost(b *testing.B) {
	for _, withKey := range []bool{false, true} {
		b.Run(fmt.Sprintf("key=%v", withKey), func(b *testing.B) {
			ctx := context.Background()
			s := openStore(b, cassandrastore.Config{})
			g, _ := idgen.New(1, nil)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				id := g.Next()
				key := ""
				if withKey {
					key = fmt.Sprintf("k%d", i)
				}
				if _, _, err := s.CreatePost(ctx, feed.Post{ID: id, Author: "alice", Text: "benchmark post", Created: idgen.Time(id)}, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkListByAuthor(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, cassandrastore.Config{})
	g, _ := idgen.New(1, nil)
	for i := range 200 {
		id := g.Next()
		if _, _, err := s.CreatePost(ctx, feed.Post{ID: id, Author: "alice", Text: fmt.Sprintf("post %d", i), Created: idgen.Time(id)}, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		ps, err := s.ListByAuthor(ctx, "alice", 0, feed.DefaultPageSize)
		if err != nil || len(ps) != feed.DefaultPageSize {
			b.Fatalf("ListByAuthor = %d posts, %v", len(ps), err)
		}
	}
}

func BenchmarkFollow(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, cassandrastore.Config{})
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Follow(ctx, fmt.Sprintf("fan%d", i), "star"); err != nil {
			b.Fatal(err)
		}
	}
}
