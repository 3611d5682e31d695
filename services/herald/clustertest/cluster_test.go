package clustertest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/rediscache"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// The tests below run in this order, the ones that restart shared servers
// last. None is parallel: each owns the servers while it runs.

// TestClusterBehaviour runs the API behaviour suite against the cluster,
// through one etcd resolver connection per service.
func TestClusterBehaviour(t *testing.T) {
	c := startCluster(t)
	systemtest.Run(t, c.Client(t))
	t.Run("Auth", func(t *testing.T) { systemtest.RunAuth(t, c.Client(t)) })
	c.CheckAlive(t)
}

// TestClusterOverHTTP runs the behaviour suite over the HTTP/JSON API of
// one timeline instance, which serves every route: its own service in
// process, post and graph through etcd, the calls acting as the user each
// names with a token of the deployment's key.
func TestClusterOverHTTP(t *testing.T) {
	c := startCluster(t)
	addr := c.Instances["timeline"][0].HTTPAddr()
	if addr == "" {
		t.Fatalf("%s logs no HTTP address", c.Instances["timeline"][0].Name)
	}
	systemtest.Run(t, systemtest.NewHTTPClient("http://"+addr, c.userKey))
	c.CheckAlive(t)
}

// TestDrillTimelineInstanceKilled kills -9 one timeline instance while a
// client keeps reading through the resolver, and others post, follow and
// read: reads go on, any errors end once the instance's lease has expired,
// the instance's key leaves etcd when its lease expires, and a restarted
// instance comes back into rotation.
//
// How many reads fail, and for how long, is a figure the drill reports; it
// asserts only outcomes and the lease bound.
func TestDrillTimelineInstanceKilled(t *testing.T) {
	c := startCluster(t)
	d := newDrill(t, c)
	d.report("timeline instance killed", c.srv.clusterKind())
	ws := d.startLoad("ti", 2)
	api := c.Client(t)
	const a, b = "death_a", "death_b"
	api.Follow(t, b, a)
	var want []string
	for i := range 5 {
		want = append(want, api.CreatePost(t, a, fmt.Sprintf("post %d", i), "").GetPostId())
	}
	slices.Reverse(want)
	api.WaitHome(t, b, waitfor.Deadline, fmt.Sprintf("the %d posts of %s", len(want), a), func(got []string) bool {
		return slices.Equal(got, want)
	})

	victim := c.Instances["timeline"][0]
	survivor := c.Instances["timeline"][1].Addr()
	oldAddr := victim.Addr()
	r := startReader(t, c.Dial(t, "timeline"), b, want)
	defer r.stop()

	// Let the reader see both instances before the kill.
	if !waitfor.True(waitfor.Deadline, waitfor.Interval, func() bool { return r.servedBy(oldAddr, time.Time{}) && r.servedBy(survivor, time.Time{}) }) {
		t.Fatalf("reads through the resolver within %v reached %v; want both timeline instances %s and %s", waitfor.Deadline, r.peers(), oldAddr, survivor)
	}
	pid := victim.PID()
	killed := time.Now()
	victim.Kill()
	t.Logf("killed %s (pid %d, %s) with SIGKILL", victim.Name, pid, oldAddr)

	// The key goes when the lease expires, without anyone deleting it: at
	// most the TTL after the last keep-alive, plus etcd's expiry check
	// (every 500ms) and the revoke, which a loaded machine delays. The
	// margin holds under load; a key that outlived it was kept by something
	// other than the lease.
	var keyGone time.Duration
	if !waitfor.True(leaseTTL+leaseMargin, waitfor.Interval, func() bool {
		eps, err := c.Endpoints("timeline")
		if err != nil || slices.Contains(eps, oldAddr) {
			return false
		}
		keyGone = time.Since(killed)
		return true
	}) {
		eps, err := c.Endpoints("timeline")
		t.Errorf("timeline endpoints %v after the kill = %v, %v; want %s gone", leaseTTL+leaseMargin, eps, err, oldAddr)
	} else {
		t.Logf("key of the killed instance left etcd %v after the kill (lease TTL %v)", keyGone.Round(time.Millisecond), leaseTTL)
	}
	// Read on until reads that began after the key left etcd have
	// succeeded, so that errors after it would show.
	// The resolver hears of the deletion through an etcd watch: allow it
	// resolverLag to reach the client.
	const resolverLag = 2 * time.Second
	settled := killed.Add(keyGone + resolverLag)
	if !waitfor.True(waitfor.Deadline, waitfor.Interval, func() bool { return r.succeededSince(settled) >= 10 }) {
		t.Fatalf("%d reads that began after the killed instance left etcd succeeded within %v; want 10: %v", r.succeededSince(settled), waitfor.Deadline, r.peers())
	}

	restarted := time.Now()
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	newAddr := victim.Addr()
	t.Logf("restarted %s at %s; registered %v after start", victim.Name, newAddr, time.Since(restarted).Round(time.Millisecond))
	if eps, err := c.Endpoints("timeline"); err != nil || !slices.Contains(eps, newAddr) {
		t.Errorf("timeline endpoints after the restart = %v, %v; want them to hold %s", eps, err, newAddr)
	}
	// It serves when dialled directly...
	direct, err := grpc.NewClient(newAddr, c.DialOptions()...)
	if err != nil {
		t.Fatalf("dial %s: %v", newAddr, err)
	}
	defer direct.Close()
	ctx, cancel := systemtest.RPCContext()
	defer cancel()
	resp, err := feedv1.NewTimelineServiceClient(direct).GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: b})
	if err != nil || !slices.Equal(systemtest.IDs(resp.GetPosts()), want) {
		t.Errorf("GetHomeTimeline(%s) on the restarted instance %s = %v, %v; want %v", b, newAddr, systemtest.IDs(resp.GetPosts()), err, want)
	}
	// ...and the resolver connection sends it reads again.
	if !waitfor.True(waitfor.Deadline, waitfor.Interval, func() bool { return r.servedBy(newAddr, restarted) }) {
		t.Errorf("reads through the resolver within %v of the restart reached %v; want the restarted instance %s among them", waitfor.Deadline, r.peers(), newAddr)
	}
	r.stop()

	reads := r.results()
	var errs []read
	afterKill, okAfterKill := 0, 0
	for _, rd := range reads {
		if rd.err != nil {
			errs = append(errs, rd)
		}
		if rd.start.After(killed) {
			afterKill++
			if rd.err == nil {
				okAfterKill++
			}
		}
	}
	var window time.Duration
	for _, e := range errs {
		if e.end.Before(killed) {
			t.Errorf("read at %v, before the kill, failed: %v", e.start.Format(time.StampMilli), e.err)
			continue
		}
		window = max(window, e.end.Sub(killed))
		t.Logf("read failed %v after the kill (took %v, peer %q): %v", e.end.Sub(killed).Round(time.Millisecond), e.end.Sub(e.start).Round(time.Millisecond), e.peer, e.err)
	}
	t.Logf("%d reads, %d after the kill, of which %d succeeded; %d failed; error window %v after the kill (lease TTL %v)", len(reads), afterKill, okAfterKill, len(errs), window.Round(time.Millisecond), leaseTTL)
	var spans []span
	for _, e := range errs {
		spans = append(spans, span{e.start, e.end})
	}
	d.failedCalls("GetHomeTimeline (the reader, no retries)", spans)
	d.recovered(keyGone, fmt.Sprintf("from the SIGKILL to the killed instance's key leaving etcd (lease TTL %v)", leaseTTL))
	d.note("the reader without retries: %d reads after the kill, %d failed, the last %v after it", afterKill, len(errs), window.Round(time.Millisecond))
	// Once the dead instance has left etcd the resolver no longer offers
	// it: a read that began after that and failed is a real error, not
	// the kill's.
	for _, e := range errs {
		if e.start.After(settled) {
			t.Errorf("read that began %v after the kill, once the killed instance had left etcd (%v), failed: %v", e.start.Sub(killed).Round(time.Millisecond), keyGone.Round(time.Millisecond), e.err)
		}
	}
	ws.finish()
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
}

// read is one GetHomeTimeline call of a reader.
type read struct {
	start, end time.Time
	peer       string
	err        error
}

// reader calls GetHomeTimeline every ~20ms through a resolver connection
// and records each call.
type reader struct {
	mu    sync.Mutex
	reads []read
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// readerLimit bounds how long a reader runs if nobody stops it.
const readerLimit = 3 * time.Minute

// startReader reads user's home timeline through conn until stopped; a
// read fails unless it returns exactly want.
func startReader(t *testing.T, conn grpc.ClientConnInterface, user string, want []string) *reader {
	r := &reader{done: make(chan struct{})}
	tl := feedv1.NewTimelineServiceClient(conn)
	r.wg.Go(func() {
		limit := time.After(readerLimit)
		for {
			var p peer.Peer
			ctx, cancel := context.WithTimeout(context.Background(), systemtest.CallTimeout)
			start := time.Now()
			resp, err := tl.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user}, grpc.Peer(&p))
			end := time.Now()
			cancel()
			if got := systemtest.IDs(resp.GetPosts()); err == nil && !slices.Equal(got, want) {
				err = fmt.Errorf("GetHomeTimeline(%s) = %v; want %v", user, got, want)
			}
			rd := read{start: start, end: end, err: err}
			if p.Addr != nil {
				rd.peer = p.Addr.String()
			}
			r.mu.Lock()
			r.reads = append(r.reads, rd)
			r.mu.Unlock()
			select {
			case <-r.done:
				return
			case <-limit:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	t.Cleanup(r.stop)
	return r
}

func (r *reader) stop() {
	r.once.Do(func() { close(r.done) })
	r.wg.Wait()
}

// servedBy reports whether a read that started after since succeeded on
// addr.
func (r *reader) servedBy(addr string, since time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.reads, func(rd read) bool {
		return rd.err == nil && rd.peer == addr && rd.start.After(since)
	})
}

// succeededSince counts the successful reads that started after since.
func (r *reader) succeededSince(since time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rd := range r.reads {
		if rd.err == nil && rd.start.After(since) {
			n++
		}
	}
	return n
}

// peers counts successful reads by server address.
func (r *reader) peers() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for _, rd := range r.reads {
		if rd.err == nil {
			m[rd.peer]++
		}
	}
	return m
}

func (r *reader) results() []read {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reads)
}

// TestDrillRedisRestartedEmpty restarts Redis with an empty dataset under
// populated timelines while clients post, follow and read: the next reads
// rebuild them from Cassandra without an error or a lost post, and posting
// and fan-out go on.
func TestDrillRedisRestartedEmpty(t *testing.T) {
	c := startCluster(t)
	// Runs before the cluster's cleanup: Redis is up again whatever
	// happens below.
	t.Cleanup(func() { runScript(t, "redis.sh") })
	d := newDrill(t, c)
	d.report("Redis restarted empty", c.srv.clusterKind())
	ws := d.startLoad("re", 2)
	api := c.Client(t)

	const a1, a2 = "rr_a1", "rr_a2"
	follows := map[string][]string{ // follower -> followees
		"rr_f1": {a1, a2},
		"rr_f2": {a1, a2},
		"rr_f3": {a2},
		"rr_f4": {a1}, // not read after the restart until a new post is out
	}
	for f, ees := range follows {
		for _, ee := range ees {
			api.Follow(t, f, ee)
		}
		api.Home(t, f) // cached from here on, so fan-out fills it
	}
	posts := map[string][]string{} // author -> post IDs, oldest first
	for i := range 3 {
		for _, a := range []string{a1, a2} {
			posts[a] = append(posts[a], api.CreatePost(t, a, fmt.Sprintf("%s before the restart %d", a, i), "").GetPostId())
		}
	}
	wantHome := func(f string) []string {
		var ids []string
		for _, ee := range follows[f] {
			ids = append(ids, posts[ee]...)
		}
		slices.SortFunc(ids, func(x, y string) int { return -comparePostIDs(t, x, y) })
		return ids
	}
	for f := range follows {
		want := wantHome(f)
		api.WaitHome(t, f, waitfor.Deadline, fmt.Sprintf("%v", want), func(got []string) bool { return slices.Equal(got, want) })
	}

	rdb := serversFromEnv(t).redisClient()
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tlKey := rediscache.HomeTimelineKey(c.NS+":", "rr_f1")
	if n, err := rdb.Exists(ctx, tlKey).Result(); err != nil || n != 1 {
		t.Fatalf("EXISTS %s before the restart = %d, %v; want 1 (the timeline cached in Redis)", tlKey, n, err)
	}

	stopped := time.Now()
	runScript(t, "stop.sh", "redis")
	runScript(t, "redis.sh")
	restarted := time.Now()
	// The drill's clients write to it at once; the timelines filled before
	// the restart are what must be gone.
	var cached []string
	for f := range follows {
		key := rediscache.HomeTimelineKey(c.NS+":", f)
		if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
			cached = append(cached, fmt.Sprintf("%s: %d, %v", key, n, err))
		}
	}
	if len(cached) > 0 {
		t.Fatalf("timelines still cached after the restart, want none (an empty Redis): %v", cached)
	}

	// The first read of each follower succeeds, with every post.
	rebuilt := time.Now()
	for _, f := range []string{"rr_f1", "rr_f2", "rr_f3"} {
		if got, want := api.Home(t, f), wantHome(f); !slices.Equal(got, want) {
			t.Errorf("first home timeline of %s after the Redis restart = %v; want %v", f, got, want)
		}
	}
	t.Logf("3 timelines rebuilt from Cassandra on first read in %v", time.Since(rebuilt).Round(time.Millisecond))
	if n, err := rdb.Exists(ctx, tlKey).Result(); err != nil || n != 1 {
		t.Errorf("EXISTS %s after the rebuilding read = %d, %v; want 1", tlKey, n, err)
	}
	for _, a := range []string{a1, a2} {
		want := slices.Clone(posts[a])
		slices.Reverse(want)
		if got := api.AllUserPosts(t, a); !slices.Equal(got, want) {
			t.Errorf("ListUserPosts(%s) after the Redis restart = %v; want %v", a, got, want)
		}
	}
	pctx, pcancel := systemtest.RPCContext()
	defer pcancel()
	if resp, err := api.Post.GetPost(pctx, &feedv1.GetPostRequest{PostId: posts[a1][0]}); err != nil || resp.GetPost().GetAuthorId() != a1 {
		t.Errorf("GetPost(%s) after the Redis restart = %v, %v; want the post by %s", posts[a1][0], resp.GetPost(), err, a1)
	}

	// Posting and fan-out work again: into the rebuilt timelines, and into
	// the one still missing (rr_f4), which its first read rebuilds.
	p := api.CreatePost(t, a1, "after the restart", "")
	posts[a1] = append(posts[a1], p.GetPostId())
	for _, f := range []string{"rr_f1", "rr_f2", "rr_f4"} {
		want := wantHome(f)
		api.WaitHome(t, f, waitfor.Deadline, fmt.Sprintf("%v", want), func(got []string) bool { return slices.Equal(got, want) })
	}
	if got, want := api.Home(t, "rr_f3"), wantHome("rr_f3"); !slices.Equal(got, want) {
		t.Errorf("home timeline of rr_f3 = %v; want %v (no post by %s, which it does not follow)", got, want, a1)
	}
	writes := ws.finish()
	first := time.Duration(0)
	for _, w := range writes {
		if w.err == nil && !w.start.Before(stopped) && (first == 0 || w.end.Sub(stopped) < first) {
			first = w.end.Sub(stopped)
		}
	}
	d.recovered(first, "from the stop of Redis to the first client call begun after it that succeeded")
	d.note("Redis down and back in %v; 3 timelines rebuilt from Cassandra on first read in %v", restarted.Sub(stopped).Round(time.Millisecond), time.Since(rebuilt).Round(time.Millisecond))
	summarize(t, "calls during and after the restart", writes, stopped, time.Now())
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
}

// comparePostIDs orders two decimal post IDs numerically.
func comparePostIDs(t *testing.T, x, y string) int {
	a, b := systemtest.PostID(t, x), systemtest.PostID(t, y)
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestDrillCassandraStopped stops Cassandra: CreatePost says UNAVAILABLE
// and stores nothing, and once Cassandra is back posting works again
// without a restart of any service.
func TestDrillCassandraStopped(t *testing.T) {
	c := startCluster(t)
	// Runs before the cluster's cleanup, which needs Cassandra to drop the
	// keyspace.
	t.Cleanup(func() { runScript(t, "cassandra.sh") })
	d := newDrill(t, c)
	d.report("Cassandra stopped", c.srv.clusterKind())
	api := c.Client(t)

	const a, b = "cd_a", "cd_b"
	api.Follow(t, b, a)
	d.followed(b, a)
	api.Home(t, b)
	p0 := api.CreatePost(t, a, "before the outage", "")
	d.acked(uint64(systemtest.PostID(t, p0.GetPostId())), a, "before the outage")
	var failedSpans []span
	api.WaitHome(t, b, waitfor.Deadline, "the post "+p0.GetPostId(), func(got []string) bool {
		return slices.Equal(got, []string{p0.GetPostId()})
	})
	pids := map[string]int{}
	for _, svc := range services {
		for _, in := range c.Instances[svc] {
			pids[in.Name] = in.PID()
		}
	}

	// createPost makes one CreatePost call with a 5s deadline.
	createPost := func(text, key string) (*feedv1.Post, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := api.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: a, Text: text, IdempotencyKey: key})
		return resp.GetPost(), time.Since(start), err
	}

	runScript(t, "stop.sh", "cassandra")
	stopped := time.Now()

	// The driver may take a moment to notice; then CreatePost must say
	// UNAVAILABLE, promptly, every time.
	const unavailableWithin, streak = 30 * time.Second, 4
	var failed []string // texts of the posts whose CreatePost failed
	var firstUnavailable time.Duration
	for run, i := 0, 0; run < streak; i++ {
		if time.Since(stopped) > unavailableWithin {
			t.Fatalf("CreatePost did not return UNAVAILABLE %d times in a row within %v of stopping Cassandra", streak, unavailableWithin)
		}
		// With a key the store claims the key first; without one it
		// writes the post at once. Both must fail cleanly.
		text, key := fmt.Sprintf("during the outage %d", i), ""
		if i%2 == 0 {
			key = fmt.Sprintf("down-%d", i)
		}
		p, took, err := createPost(text, key)
		if err == nil {
			t.Fatalf("CreatePost with Cassandra stopped = %v; want UNAVAILABLE", p)
		}
		failedSpans = append(failedSpans, span{time.Now().Add(-took), time.Now()})
		failed = append(failed, text)
		switch code := status.Code(err); code {
		case codes.Unavailable:
			if run++; firstUnavailable == 0 {
				firstUnavailable = time.Since(stopped)
			}
			t.Logf("CreatePost %d with Cassandra stopped: UNAVAILABLE after %v: %v", i, took.Round(time.Millisecond), status.Convert(err).Message())
		case codes.DeadlineExceeded:
			run = 0
			t.Logf("CreatePost %d with Cassandra stopped: deadline exceeded after %v", i, took.Round(time.Millisecond))
		default:
			run = 0
			t.Errorf("CreatePost %d with Cassandra stopped error = %v after %v; want code Unavailable", i, err, took)
		}
	}
	t.Logf("first UNAVAILABLE %v after Cassandra stopped", firstUnavailable.Round(time.Millisecond))

	restart := time.Now()
	runScript(t, "cassandra.sh")
	ready := time.Now()
	t.Logf("Cassandra ready %v after the restart began", ready.Sub(restart).Round(time.Millisecond))

	// Posting works again without restarting anything. Every attempt is a
	// retry of one post (one idempotency key), so an attempt that timed out
	// after its write landed cannot add a second post.
	const recoverWithin = 90 * time.Second
	var p1 *feedv1.Post
	var attempts int
	for p1 == nil {
		if time.Since(ready) > recoverWithin {
			t.Fatalf("CreatePost still failing %v after Cassandra was ready again", recoverWithin)
		}
		attempts++
		p, took, err := createPost("after the outage", "after-the-outage")
		if err == nil {
			p1 = p
			break
		}
		failedSpans = append(failedSpans, span{time.Now().Add(-took), time.Now()})
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("CreatePost while Cassandra comes back error = %v after %v; want nil, or code Unavailable", err, took)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("CreatePost succeeded %v after Cassandra was ready (%v after the restart began), attempt %d",
		time.Since(ready).Round(time.Millisecond), time.Since(restart).Round(time.Millisecond), attempts)
	d.acked(uint64(systemtest.PostID(t, p1.GetPostId())), a, "after-the-outage")
	d.failedCalls("CreatePost (no retries)", failedSpans)
	d.recovered(time.Since(restart), "from the restart of Cassandra beginning to a CreatePost succeeding")
	d.note("first UNAVAILABLE %v after the stop; Cassandra ready %v after its restart began", firstUnavailable.Round(time.Millisecond), ready.Sub(restart).Round(time.Millisecond))

	// Each instance's driver reconnects on its own, within its reconnect
	// interval (2 s, longer on a loaded machine), so the instance that
	// served the post may be back before the others. Wait until every
	// instance that reads Cassandra answers a call that reads it, each
	// dialled directly, so that no instance can hide behind another.
	readsBack := time.Now()
	for _, svc := range []string{"graph", "post", "timeline"} {
		for _, in := range c.Instances[svc] {
			waitfor.Until(t, waitfor.Deadline, in.Name+" to read Cassandra again", func() (bool, any) {
				err := readsCassandra(in, a)
				return err == nil, err
			})
		}
	}
	t.Logf("every instance read Cassandra again %v after the first successful CreatePost", time.Since(readsBack).Round(time.Millisecond))

	for name, pid := range pids {
		for _, in := range slices.Concat(c.Instances["graph"], c.Instances["post"], c.Instances["fanout"], c.Instances["timeline"]) {
			if in.Name == name && in.PID() != pid {
				t.Errorf("%s runs as pid %d; want the same process %d as before the outage", name, in.PID(), pid)
			}
		}
	}
	c.CheckAlive(t)

	// Nothing of the failed posts was written: not in the author's list,
	// not in any timeline.
	want := []string{p1.GetPostId(), p0.GetPostId()}
	if got := api.AllUserPosts(t, a); !slices.Equal(got, want) {
		t.Errorf("ListUserPosts(%s) after the outage = %v; want %v", a, got, want)
	}
	ps, _ := api.UserPosts(t, a, 100, "")
	checkNoFailed(t, "ListUserPosts("+a+")", ps, failed)
	api.WaitHome(t, b, waitfor.Deadline, fmt.Sprintf("%v: the new post fanned out", want), func(got []string) bool {
		return slices.Equal(got, want)
	})
	for _, u := range []string{a, b} {
		ps, _ := api.HomePage(t, u, 100, "")
		if got := systemtest.IDs(ps); !slices.Equal(got, want) {
			t.Errorf("home timeline of %s after the outage = %v; want %v", u, got, want)
		}
		checkNoFailed(t, "home timeline of "+u, ps, failed)
	}
	d.check(waitfor.Deadline)
}

// probes numbers readsCassandra's fresh users.
var probes atomic.Int64

// readsCassandra makes one call on instance in, dialled directly, that
// reads the durable store.
func readsCassandra(in *Instance, user string) error {
	conn, err := grpc.NewClient(in.Addr(), in.c.DialOptions()...)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := systemtest.RPCContext()
	defer cancel()
	switch in.Service {
	case "graph":
		_, err = feedv1.NewGraphServiceClient(conn).ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: user})
	case "post":
		_, err = feedv1.NewPostServiceClient(conn).ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: user})
	case "timeline":
		// A user never seen before has no cached timeline: the read
		// rebuilds it from the store.
		probe := fmt.Sprintf("%s_probe%d", user, probes.Add(1))
		_, err = feedv1.NewTimelineServiceClient(conn).GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: probe})
	}
	return err
}

// checkNoFailed fails t if any post in ps has one of the failed texts.
func checkNoFailed(t *testing.T, what string, ps []*feedv1.Post, failed []string) {
	t.Helper()
	for _, p := range ps {
		if slices.Contains(failed, p.GetText()) || strings.HasPrefix(p.GetText(), "during the outage") {
			t.Errorf("%s holds post %s %q, whose CreatePost failed", what, p.GetPostId(), p.GetText())
		}
	}
}

// TestRateLimitShared: a user's rate limit holds across instances. Posts
// go round-robin over both post instances, 16 at a time; if each
// instance kept its own bucket, twice the burst would pass.
func TestRateLimitShared(t *testing.T) {
	c := startCluster(t)
	post := c.Client(t).Post
	const calls, burst, rate = 300, 50, 10 // the default -rate-posts 10:50
	var ok, limited atomic.Int64
	start := time.Now()
	err := systemtest.Each(make([]int, calls), 16, func(int) error {
		ctx, cancel := systemtest.RPCContext()
		defer cancel()
		_, err := post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "rl_user", Text: "a post"})
		switch status.Code(err) {
		case codes.OK:
			ok.Add(1)
		case codes.ResourceExhausted:
			if _, has := systemtest.RetryDelay(err); !has {
				return fmt.Errorf("RESOURCE_EXHAUSTED without a RetryInfo: %w", err)
			}
			limited.Add(1)
		default:
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// One shared bucket allows the burst plus what refilled meanwhile;
	// a bucket per instance would allow twice that.
	most := burst + int(math.Ceil(rate*took.Seconds())) + 1
	t.Logf("%d calls in %v: %d accepted, %d refused; one shared bucket allows at most %d", calls, took.Round(time.Millisecond), ok.Load(), limited.Load(), most)
	if int(ok.Load()) > most {
		t.Errorf("%d posts accepted in %v; want at most %d: the instances do not share the bucket", ok.Load(), took, most)
	}
	if ok.Load() < burst {
		t.Errorf("%d posts accepted; want at least the burst, %d", ok.Load(), burst)
	}
}
