package clustertest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/cassandrastore"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// The Cassandra drills on the three-node ring (deploy/local/cassandra-cluster.sh): Herald's HA
// cluster with its keyspace at three replicas, one node killed under load, then two, at
// LOCAL_QUORUM and at ONE. With two nodes down the consistency level decides what a client
// gets: LOCAL_QUORUM refuses what two replicas cannot answer, ONE answers from the node left,
// stale or not. Neither writes a post or a follow: a post is a logged batch, whose batchlog
// Cassandra writes to a node other than the coordinator, and a follow is a lightweight
// transaction, which needs a quorum whatever the level.

const (
	// ringCallTimeout bounds each direct call of the two-nodes-down drill:
	// longer than a coordinator's own write and read timeouts, so that a
	// call ends with the cluster's answer rather than the client's deadline.
	ringCallTimeout = 5 * time.Second
	// outageCalls is how many calls of each kind the two-nodes-down drill
	// makes with only node 1 up.
	outageCalls = 10
	// ringRecoverWithin bounds the start of two downed nodes (45 to 100 s
	// on this machine, the script's own waits included) until a CreatePost
	// succeeds.
	ringRecoverWithin = 4 * time.Minute
	// refusedMessage is how Cassandra's coordinator says it has too few
	// replicas up for the level (an UnavailableException), before it
	// writes anything; the store passes it on in the UNAVAILABLE status.
	refusedMessage = "Cannot achieve consistency level"
)

// serversOnRing is serversHA with the durable store on the three-node ring, started (or
// reused) through deploy/local: the instances create the keyspace with the ring's replication
// (three replicas) and read and write it at consistency.
//
// When the test ends, after the cluster's cleanup has dropped its keyspace, it checks that the
// ring's nodes agree on the schema again (see healRingSchema).
func serversOnRing(t testing.TB, consistency string) servers {
	t.Helper()
	srv := serversHA(t)
	runScript(t, "cassandra-cluster.sh", "start")
	srv.cassandra = strings.Split(scriptEnv(t, "cassandra-cluster.sh", "HERALD_CASSANDRA_RING_HOSTS"), ",")
	srv.cassandraReplication = scriptEnv(t, "cassandra-cluster.sh", "HERALD_CASSANDRA_REPLICATION")
	srv.cassandraConsistency = consistency
	t.Cleanup(func() { healRingSchema(t, srv) })
	return srv
}

// schemaAgreeWithin bounds the wait for the ring's nodes to agree on the schema: a node that
// differs pulls its peers' schema every minute.
const schemaAgreeWithin = 75 * time.Second

// healRingSchema waits until every node of the ring reports the same schema version, and
// restarts the nodes that still differ. Cassandra 5.0 can leave a node's schema behind when a
// keyspace is dropped while writes to it still arrive at that node (a node that was just
// restarted replays its batchlog and receives hints, every 10 s): its schema thread fails
// with "Unknown CF" half way through the drop, the node stays on its old schema, and the
// next cluster's CREATE KEYSPACE through it fails the same way. A restart reloads its schema
// from disk and pulls its peers'.
func healRingSchema(t testing.TB, srv servers) {
	t.Helper()
	var versions []string
	agree := func() bool {
		versions = ringSchemaVersions(srv)
		for _, v := range versions {
			if v != versions[0] || strings.HasPrefix(v, "error") {
				return false
			}
		}
		return true
	}
	if waitfor.True(schemaAgreeWithin, time.Second, agree) {
		return
	}
	t.Logf("the ring's nodes disagree on the schema %v after the keyspace's drop: %v; restarting the nodes that differ", schemaAgreeWithin, versions)
	counts := map[string]int{}
	for _, v := range versions {
		counts[v]++
	}
	common := slices.MaxFunc(versions, func(x, y string) int { return counts[x] - counts[y] })
	for i, v := range versions {
		if v != common {
			runScript(t, "cassandra-cluster.sh", "stop", strconv.Itoa(i+1))
			runScript(t, "cassandra-cluster.sh", "start", strconv.Itoa(i+1))
		}
	}
	if !waitfor.True(schemaAgreeWithin, time.Second, agree) {
		t.Errorf("the ring's nodes still disagree on the schema after restarting those that differed: %v", versions)
	}
}

// ringSchemaVersions returns each node's schema version, as the node itself says, or the
// error that kept it from saying.
func ringSchemaVersions(srv servers) []string {
	out := make([]string, len(srv.cassandra))
	for i, host := range srv.cassandra {
		cc := gocql.NewCluster(host)
		cc.Authenticator = srv.cassandraLogin
		cc.ProtoVersion = 4
		cc.Timeout, cc.ConnectTimeout = 5*time.Second, 5*time.Second
		// This node alone: its own view, not a coordinator's.
		cc.DisableInitialHostLookup = true
		cc.HostFilter = gocql.WhiteListHostFilter(host)
		s, err := cc.CreateSession()
		if err != nil {
			out[i] = fmt.Sprintf("error: %s: %v", host, err)
			continue
		}
		var v gocql.UUID
		if err := s.Query("SELECT schema_version FROM system.local").Scan(&v); err != nil {
			out[i] = fmt.Sprintf("error: %s: %v", host, err)
		} else {
			out[i] = v.String()
		}
		s.Close()
	}
	return out
}

// TestDrillCassandraNodesDown kills nodes of the Cassandra ring under Herald's HA cluster.
// Each subtest is a row of the drills' table, on a cluster and keyspace of its own:
//
//   - one node down at LOCAL_QUORUM: clients post, follow and read on, with retries, and
//     nothing is lost;
//   - two nodes down at LOCAL_QUORUM: CreatePost and Follow fail with UNAVAILABLE and write
//     nothing, and every read the store must answer fails too; then node 3, which missed
//     writes while it was down, is left alone, and refuses reads rather than answer stale;
//   - the same at ONE: the reads go on with one node up, and those node 3 answers alone miss
//     the writes it missed (stale reads), until hinted handoff brings it up to date.
//
// It took 6 minutes on the two-core test machine at a load average of 5 to 10: every kill
// waits 18 to 22 s until the nodes left see the node down, every start takes 18 to 30 s
// (up to 100 s under heavier load), and each subtest starts a cluster of its own.
func TestDrillCassandraNodesDown(t *testing.T) {
	t.Run("OneNodeDown_LOCAL_QUORUM", drillCassandraOneNodeDown)
	var quorum *twoDownFigures
	t.Run("TwoNodesDown_LOCAL_QUORUM", func(t *testing.T) {
		quorum = drillCassandraTwoNodesDown(t, "LOCAL_QUORUM", "cq", nil)
	})
	t.Run("TwoNodesDown_ONE", func(t *testing.T) {
		drillCassandraTwoNodesDown(t, "ONE", "co", quorum)
	})
}

// drillCassandraOneNodeDown kills node 3 while clients post, follow and read at LOCAL_QUORUM:
// two of three replicas answer every call, so the calls begun after the kill succeed, and
// after node 3 rejoins the model check finds nothing lost.
func drillCassandraOneNodeDown(t *testing.T) {
	srv := serversOnRing(t, "LOCAL_QUORUM")
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report("Cassandra: one node down (LOCAL_QUORUM)", srv.clusterKind())
	r := newRingNodes(t)
	ws := d.startLoad("c1", 2)

	killed := time.Now()
	seen := r.kill(3)
	down := time.Now()
	if !ws.waitDone(10, down, waitfor.Deadline) {
		t.Fatalf("10 calls begun after nodes 1 and 2 saw node 3 down did not succeed within %v", waitfor.Deadline)
	}
	// The load stops itself after writerLimit, shorter than a kill and a
	// start together: a second one spans node 3's return.
	ws1 := ws.finish()
	ws = d.startLoad("c1r", 2)
	restart := time.Now()
	rejoin := r.start(3)
	back := time.Now()
	if !ws.waitDone(10, back, waitfor.Deadline) {
		t.Fatalf("10 calls begun after node 3 rejoined did not succeed within %v", waitfor.Deadline)
	}
	writes := slices.Concat(ws1, ws.finish())

	// Each kind of call went on while node 3 was down.
	downCalls := byKind(writes, killed, restart)
	for _, kind := range []string{"CreatePost", "Follow", "GetHomeTimeline"} {
		if downCalls.tally[kind].ok == 0 {
			t.Errorf("no %s begun with node 3 down succeeded: %v", kind, downCalls)
		}
	}
	// What the failed attempts said: until nodes 1 and 2 see node 3 down, they still send it
	// their share of a request.
	said := map[string]bool{}
	for _, w := range writes {
		for _, err := range w.failed {
			kind, _, _ := strings.Cut(w.what, "(")
			said[fmt.Sprintf("%s: %v: %s", kind, status.Code(err), status.Convert(err).Message())] = true
		}
	}
	for _, s := range slices.Sorted(maps.Keys(said)) {
		t.Logf("failed attempt: %s", s)
	}
	firstPost := time.Duration(0)
	for _, w := range writes {
		if w.err == nil && w.post != 0 && !w.start.Before(killed) && (firstPost == 0 || w.end.Sub(killed) < firstPost) {
			firstPost = w.end.Sub(killed)
		}
	}
	d.recovered(rejoin, "from `cassandra-cluster.sh start 3` to nodes 1 and 2 seeing node 3 Up and Normal; the clients had no outage to recover from")
	d.note("consistency LOCAL_QUORUM, replication 3; node 3 SIGKILLed, seen down by nodes 1 and 2 after %v; first post acknowledged %v after the kill", seen.Round(time.Millisecond), firstPost.Round(time.Millisecond))
	d.note("calls begun while node 3 was down (%v), succeeded and failed attempts by kind: %v; while it rejoined (%v): %v",
		restart.Sub(killed).Round(time.Second), downCalls, back.Sub(restart).Round(time.Second), byKind(writes, restart, back))
	summarize(t, "calls before the kill", writes, time.Time{}, killed)
	summarize(t, "calls while nodes 1 and 2 noticed the kill", writes, killed, down)
	summarize(t, "calls with node 3 down", writes, down, restart)
	summarize(t, "calls while node 3 rejoined", writes, restart, back)
	summarize(t, "calls after node 3 rejoined", writes, back, time.Now())
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
}

// kindTally is how the calls of one kind fared.
type kindTally struct {
	ok, failedAttempts int
}

// kindTallies are the tallies of each kind of call.
type kindTallies struct{ tally map[string]kindTally }

// String is "CreatePost 18 ok (18 failed attempts), ...", sorted by kind.
func (k kindTallies) String() string {
	var parts []string
	for _, kind := range slices.Sorted(maps.Keys(k.tally)) {
		parts = append(parts, fmt.Sprintf("%s %d ok (%d failed attempts)", kind, k.tally[kind].ok, k.tally[kind].failedAttempts))
	}
	return strings.Join(parts, ", ")
}

// byKind tallies the writes begun in [from, to) by the kind of call (CreatePost, Follow,
// GetHomeTimeline).
func byKind(writes []*write, from, to time.Time) kindTallies {
	out := kindTallies{tally: map[string]kindTally{}}
	for _, w := range writes {
		if w.start.Before(from) || !w.start.Before(to) {
			continue
		}
		kind, _, _ := strings.Cut(w.what, "(")
		k := out.tally[kind]
		if w.err == nil {
			k.ok++
		}
		k.failedAttempts += len(w.failed)
		out.tally[kind] = k
	}
	return out
}

// twoDownFigures are the availability and staleness figures of one two-nodes-down drill,
// which the drill at the other consistency level sets beside its own.
type twoDownFigures struct {
	consistency string
	node1Alone  *availability
	node3Alone  *availability
}

// drillCassandraTwoNodesDown runs the two-nodes-down drill at consistency, with user names
// under prefix; other, if not nil, are the figures of the drill at another level, which the
// notes set beside these.
//
// The ring goes through four states. All up: b follows a, a posts p0. Node 3 down: more users
// follow a and a posts p1; nodes 1 and 2 hold these writes, node 3 only as their hints. Nodes
// 2 and 3 down: CreatePost must fail with UNAVAILABLE, and outageCalls calls of each kind
// count what is available. Node 1 killed too and node 3 started alone: its reads at ONE miss
// what it missed, at LOCAL_QUORUM they fail. Then nodes 1 and 2 start while a CreatePost is
// tried every half second (the recovery figure), and nothing a failed call made may show.
func drillCassandraTwoNodesDown(t *testing.T, consistency, prefix string, other *twoDownFigures) *twoDownFigures {
	srv := serversOnRing(t, consistency)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report(fmt.Sprintf("Cassandra: two nodes down (%s)", consistency), srv.clusterKind())
	r := newRingNodes(t)
	api := d.api
	a, b := prefix+"_a", prefix+"_b"
	// late follow a while node 3 is down and are read at once; cold likewise, but are first
	// read when node 3 is alone, so that their timelines are built then, and the model check
	// does not read them (see the notes); joiners try to follow a with two nodes down.
	late, cold, joiners := names(prefix+"_l", 4), names(prefix+"_z", 2), names(prefix+"_j", outageCalls)

	mustDo(t, "follow", func() (*write, error) { return d.follow(b, a) })
	d.readAll([]string{a, b}, 2)
	p0 := mustPost(t, d, a, prefix+"-p0")

	// Node 3 down: the writes go to nodes 1 and 2, and wait for node 3 as hints.
	seen3 := r.kill(3)
	for _, f := range late {
		mustDo(t, "follow", func() (*write, error) { return d.follow(f, a) })
	}
	d.readAll(late, 4)
	for _, f := range cold {
		mustDo(t, "follow", func() (*write, error) { return d.followOutsideModel(f, a) })
	}
	p1 := mustPost(t, d, a, prefix+"-p1")
	acked := []string{p0, p1} // a's posts the drill must find
	for _, u := range append([]string{b}, late...) {
		api.WaitHome(t, u, waitfor.Deadline, fmt.Sprintf("posts %v", acked), func(got []string) bool { return systemtest.ContainsAll(got, acked...) })
	}

	// Nodes 2 and 3 down: node 1 alone.
	seen2 := r.kill(2)
	downAt := time.Now()
	var failedPosts []failedPost
	var failedFollows []failedFollow
	createPost := func(ctx context.Context, text, key string) error {
		resp, err := api.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: a, Text: text, IdempotencyKey: key})
		if err != nil {
			failedPosts = append(failedPosts, failedPost{text: text, key: key, err: err})
			return err
		}
		t.Errorf("CreatePost(%s, %q) with two nodes down = post %s; want UNAVAILABLE (its batchlog needs another node up)", a, text, resp.GetPost().GetPostId())
		id := systemtest.PostID(t, resp.GetPost().GetPostId())
		d.acked(id, a, cmp.Or(key, text))
		acked = append(acked, resp.GetPost().GetPostId())
		return nil
	}

	// The instances' drivers may take a moment to drop their connections to node 2 (a call
	// may time out); then CreatePost must say UNAVAILABLE, every time. With a key the store
	// claims the key first (a lightweight transaction); without one it writes the batch at
	// once: both must fail.
	untilRefused := newAvailability("CreatePost until UNAVAILABLE")
	const unavailableWithin, streak = 60 * time.Second, 3
	var firstUnavailable time.Duration
	for run, i := 0, 0; run < streak; i++ {
		if time.Since(downAt) > unavailableWithin {
			t.Fatalf("CreatePost did not fail with UNAVAILABLE %d times in a row within %v of two nodes down: %v", streak, unavailableWithin, untilRefused)
		}
		text, key := fmt.Sprintf("%s refused %d", prefix, i), ""
		if i%2 == 0 {
			key = fmt.Sprintf("%s-refused-%d", prefix, i)
		}
		err := untilRefused.call("CreatePost", func(ctx context.Context) (bool, error) { return false, createPost(ctx, text, key) })
		switch code := status.Code(err); code {
		case codes.Unavailable:
			if run++; firstUnavailable == 0 {
				firstUnavailable = time.Since(downAt)
			}
			t.Logf("CreatePost %d with two nodes down: %v", i, err)
		case codes.DeadlineExceeded:
			run = 0
			t.Logf("CreatePost %d with two nodes down: deadline exceeded", i)
		case codes.OK:
			run = 0 // createPost reported it
		default:
			run = 0
			t.Errorf("CreatePost %d with two nodes down error = %v; want code Unavailable", i, err)
		}
	}

	alone1 := newAvailability("nodes 2 and 3 down")
	for i := range outageCalls {
		text, key := fmt.Sprintf("%s two nodes down %d", prefix, i), ""
		if i%2 == 0 {
			key = fmt.Sprintf("%s-down-%d", prefix, i)
		}
		alone1.call("CreatePost", func(ctx context.Context) (bool, error) { return false, createPost(ctx, text, key) })
		j := joiners[i]
		d.addUsers(j) // whether or not it follows a, the check reads its timeline
		alone1.call("Follow", func(ctx context.Context) (bool, error) {
			_, err := api.Graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: j, FolloweeId: a})
			if err != nil {
				failedFollows = append(failedFollows, failedFollow{follower: j, err: err})
			} else {
				d.followed(j, a)
			}
			return false, err
		})
		reader := append([]string{b}, late...)[i%(len(late)+1)]
		alone1.call("GetHomeTimeline", homeLacks(api, reader, acked))
		alone1.call("ListFollowing", followingLacks(api, late[i%len(late)], a))
		alone1.call("ListUserPosts", userPostsLack(api, a, acked))
	}
	t.Logf("with nodes 2 and 3 down (%s): %v", consistency, alone1)
	alone1.logErrors(t)

	// Node 3 alone: it missed late's follows and p1, and no hint could reach it.
	r.kill(1)
	r.start(3)
	waitStoreAnswers(t, c, a, "node 3 alone")
	alone3 := newAvailability("node 3 alone")
	for _, f := range slices.Concat(late, cold) {
		alone3.call("ListFollowing", followingLacks(api, f, a))
	}
	for range 3 {
		alone3.call("ListUserPosts", userPostsLack(api, a, acked))
	}
	for _, f := range late {
		alone3.call("GetHomeTimeline", homeLacks(api, f, acked))
	}
	// A timeline never read before is built from the store, by node 3 alone.
	coldHome := newAvailability("cold timelines built with node 3 alone")
	for _, f := range cold {
		coldHome.call("GetHomeTimeline", homeLacks(api, f, acked))
	}
	alone3.call("CreatePost", func(ctx context.Context) (bool, error) {
		return false, createPost(ctx, prefix+" node 3 alone", prefix+"-alone")
	})
	t.Logf("with node 3 alone (%s): %v; %v", consistency, alone3, coldHome)
	alone3.logErrors(t)
	coldHome.logErrors(t)

	// Nodes 1 and 2 start, while a CreatePost is tried every half second. Every attempt has
	// the same idempotency key, so one that timed out after its write landed adds no second
	// post. Its author has no followers: at ONE the fan-out of a's post could read a's
	// followers from node 3 before it caught up, which the check would count as lost (the
	// stale reads below measure that).
	var recovery []span
	var p2 string
	rAuthor := prefix + "_r"
	probed, script := r.startAllWhile(ringRecoverWithin, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), ringCallTimeout)
		defer cancel()
		began := time.Now()
		resp, err := api.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: rAuthor, Text: prefix + " after the outage", IdempotencyKey: prefix + "-after"})
		if err != nil {
			recovery = append(recovery, span{began, time.Now()})
			if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
				t.Errorf("CreatePost while nodes 1 and 2 start error = %v; want nil, or code Unavailable", err)
			}
			return false
		}
		p2 = resp.GetPost().GetPostId()
		return true
	})
	back := time.Now()
	d.failedCalls("CreatePost (while nodes 1 and 2 started)", recovery)
	if p2 == "" {
		t.Fatalf("no CreatePost succeeded within %v of starting nodes 1 and 2 (%d attempts)", ringRecoverWithin, len(recovery))
	}
	d.acked(systemtest.PostID(t, p2), rAuthor, prefix+"-after")
	d.recovered(probed, "from `cassandra-cluster.sh start` of the two downed nodes (1 and 2, node 3 up alone) to the first CreatePost that succeeded")
	d.note("consistency %s, replication 3; the script brought nodes 1 and 2 back in %v, after %d failed CreatePost attempts", consistency, script.Round(time.Second), len(recovery))
	for _, in := range slices.Concat(c.Instances["graph"], c.Instances["post"], c.Instances["timeline"]) {
		waitfor.Until(t, waitfor.Deadline, in.Name+" to read Cassandra again", func() (bool, any) {
			err := readsCassandra(in, a)
			return err == nil, err
		})
	}

	// Node 3 catches up from the hints nodes 1 and 2 kept, if they kept them: a node keeps
	// its hints in memory for up to hints_flush_period (10 s) before it writes them to disk,
	// and node 2 was killed sooner than that after the writes it coordinated. Until then a
	// read at ONE that node 3 answers misses what it missed, and no read at ONE repairs it
	// (it asks one replica). Caught up once three rounds in a row see every write (which
	// replica answers varies); at ONE the drill watches for staleWatch and reports, at
	// LOCAL_QUORUM every read must succeed and none be stale.
	const round, staleWatch = 250 * time.Millisecond, 60 * time.Second
	caught := newAvailability("after the nodes were back")
	var lastStale time.Duration
	fresh := 0
	converged := waitfor.True(staleWatch, round, func() bool {
		missed := 0
		for _, f := range slices.Concat(late, cold) {
			if caught.call("ListFollowing", followingLacks(api, f, a)) != nil || caught.lastStale {
				missed++
			}
		}
		if caught.call("ListFollowers", followersLack(api, a, slices.Concat([]string{b}, late, cold))) != nil || caught.lastStale {
			missed++
		}
		if caught.call("ListUserPosts", userPostsLack(api, a, acked)) != nil || caught.lastStale {
			missed++
		}
		if missed > 0 {
			fresh = 0
			lastStale = time.Since(back)
		} else {
			fresh++
		}
		return fresh == 3
	})
	caught.logErrors(t)
	if !converged && consistency != "ONE" {
		t.Errorf("reads of the follows made while node 3 was down, and of %s's posts, still failed or missed writes %v after the ring was back: %v", a, staleWatch, caught)
	}

	// What the failed calls left, as a majority of the replicas holds it (at QUORUM, which
	// meets any write the instances acknowledged, and read-repairs what it reads). A call
	// the coordinator refused (UnavailableException) wrote nothing; one that failed otherwise
	// (a timeout, a dropped connection) may have, and what it wrote is acknowledged after all.
	truth := storeAtQuorum(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stored, err := truth.ListByAuthor(ctx, a, 0, 100)
	if err != nil {
		t.Fatalf("ListByAuthor(%s) at QUORUM: %v", a, err)
	}
	var refused []string
	ambiguous := 0
	for _, fp := range failedPosts {
		i := slices.IndexFunc(stored, func(p feed.Post) bool { return p.Text == fp.text })
		switch {
		case isRefused(fp.err):
			refused = append(refused, fp.text)
			if i >= 0 {
				t.Errorf("CreatePost %q was refused (%v), but the store holds post %d", fp.text, fp.err, stored[i].ID)
			}
		case i >= 0:
			ambiguous++
			d.note("CreatePost %q failed (%v) but was written: acknowledged after all", fp.text, status.Code(fp.err))
			d.acked(uint64(stored[i].ID), a, cmp.Or(fp.key, fp.text))
			acked = append(acked, strconv.FormatUint(uint64(stored[i].ID), 10))
		}
	}
	var storedIDs []string
	for _, p := range stored {
		storedIDs = append(storedIDs, strconv.FormatUint(uint64(p.ID), 10))
	}
	if !systemtest.ContainsAll(storedIDs, acked...) {
		t.Errorf("ListByAuthor(%s) at QUORUM after the outage = %v; want every acknowledged post %v", a, storedIDs, acked)
	}
	for _, ff := range failedFollows {
		following, _, err := truth.Following(ctx, ff.follower, nil, 1000)
		switch {
		case err != nil:
			t.Fatalf("Following(%s) at QUORUM: %v", ff.follower, err)
		case !slices.Contains(following, a):
		case isRefused(ff.err):
			t.Errorf("Follow(%s, %s) was refused (%v), but the store has %s following %v", ff.follower, a, ff.err, ff.follower, following)
		default:
			d.note("Follow(%s, %s) failed (%v) but was written: acknowledged after all", ff.follower, a, status.Code(ff.err))
			d.followed(ff.follower, a)
		}
	}
	// And through the API: no refused post in a's list, at the instances' level.
	ps, _ := api.UserPosts(t, a, 100, "")
	checkNoFailed(t, "ListUserPosts("+a+")", ps, refused)
	if got := systemtest.IDs(ps); consistency != "ONE" && !systemtest.ContainsAll(got, acked...) {
		t.Errorf("ListUserPosts(%s) after the outage = %v; want every acknowledged post %v", a, got, acked)
	}
	d.failedCalls("CreatePost (two nodes down, until UNAVAILABLE)", untilRefused.failedSpans())
	for _, av := range []*availability{alone1, alone3, coldHome} {
		for _, kind := range av.kinds {
			d.failedCalls(fmt.Sprintf("%s (%s)", kind, av.what), av.calls[kind].spans)
		}
	}
	d.failedCalls("reads (after the nodes were back)", caught.failedSpans())

	// Every home timeline: none holds a refused post. The cold timelines, which node 3 built
	// alone, are not in the model: at ONE they may keep what it missed.
	coldLacks := 0
	for _, u := range slices.Concat([]string{a, b}, late, joiners, cold) {
		page, _ := api.HomePage(t, u, 100, "")
		checkNoFailed(t, "home timeline of "+u, page, refused)
		if slices.Contains(cold, u) && !systemtest.ContainsAll(systemtest.IDs(page), acked...) {
			coldLacks++
			t.Logf("home timeline of %s after the outage = %v; it follows %s, whose posts are %v", u, systemtest.IDs(page), a, acked)
		}
	}

	// The figures.
	staleAlone := alone1.stale() + alone3.stale() + coldHome.stale()
	d.note("CreatePost first failed with UNAVAILABLE %v after node 1 saw node 2 down (node 3 was seen down %v after its kill, node 2 %v after its); %d of %d failed posts refused by the coordinator (%q), %d ambiguous",
		firstUnavailable.Round(time.Millisecond), seen3.Round(time.Millisecond), seen2.Round(time.Millisecond), len(refused), len(failedPosts), refusedMessage, ambiguous)
	d.note("availability with nodes 2 and 3 down, calls that succeeded: %v", alone1)
	d.note("node 3 alone, after missing the writes made while it was down: %v; timelines first read then: %v", alone3, coldHome)
	settled := fmt.Sprintf("the last stale or failed one %v after, then 3 fresh rounds", lastStale.Round(time.Millisecond))
	if !converged {
		settled = fmt.Sprintf("still stale or failing %v after: node 3 missed hints (a node keeps new hints in memory up to hints_flush_period, 10 s, and loses them when killed sooner), and no read at ONE repairs a replica", staleWatch)
	}
	d.note("stale reads (succeeded, without an acknowledged write): %d with node 1 alone, %d with node 3 alone, %d of %d cold timelines still without a's posts after the outage; after the ring was back (a round of reads every %v) %d stale of %d reads (%v), %s",
		alone1.stale(), alone3.stale()+coldHome.stale(), coldLacks, len(cold), round, caught.stale(), caught.total(), caught, settled)
	if other != nil {
		d.note("beside %s (previous row): nodes 2 and 3 down %v; node 3 alone %v", other.consistency, other.node1Alone, other.node3Alone)
	}
	if consistency != "ONE" {
		// A quorum read meets a quorum write: a read that succeeds is never stale.
		if staleAlone+caught.stale() > 0 || coldLacks > 0 {
			t.Errorf("at %s, %d reads succeeded without an acknowledged write, and %d cold timelines lack a's posts; want none", consistency, staleAlone+caught.stale(), coldLacks)
		}
	} else if alone1.calls["ListFollowing"].ok == 0 || alone1.calls["ListUserPosts"].ok == 0 {
		t.Errorf("at ONE with node 1 up, the store's reads failed: %v; want them served by node 1", alone1)
	}
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
	return &twoDownFigures{consistency: consistency, node1Alone: alone1, node3Alone: alone3}
}

// failedPost is a CreatePost that failed.
type failedPost struct {
	text, key string
	err       error
}

// failedFollow is a Follow of the drill's author that failed.
type failedFollow struct {
	follower string
	err      error
}

// isRefused reports whether err is Cassandra's coordinator refusing a request for too few
// replicas up, which it does before it writes anything.
func isRefused(err error) bool {
	return status.Code(err) == codes.Unavailable && strings.Contains(status.Convert(err).Message(), refusedMessage)
}

// mustDo runs a drill call, retried, and fails t if it fails.
func mustDo(t *testing.T, what string, call func() (*write, error)) {
	t.Helper()
	if _, err := call(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// mustPost posts by author under key, retried, records it, and returns its ID.
func mustPost(t *testing.T, d *drill, author, key string) string {
	t.Helper()
	w, err := d.post(author, key)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(w.post, 10)
}

// followOutsideModel makes follower follow followee, retrying, without recording it: for a
// user the check must not read.
func (d *drill) followOutsideModel(follower, followee string) (*write, error) {
	w := d.newWrite(fmt.Sprintf("Follow(%s, %s)", follower, followee))
	return w, retry(w, func(ctx context.Context) error {
		_, err := d.api.Graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: follower, FolloweeId: followee})
		return err
	})
}

// homeLacks reads user's home timeline, stale if it lacks one of the posts.
func homeLacks(api *systemtest.Client, user string, posts []string) func(ctx context.Context) (bool, error) {
	posts = slices.Clone(posts)
	return func(ctx context.Context) (bool, error) {
		resp, err := api.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user, PageSize: 100})
		return err == nil && !systemtest.ContainsAll(systemtest.IDs(resp.GetPosts()), posts...), err
	}
}

// followingLacks lists whom follower follows, stale without followee.
func followingLacks(api *systemtest.Client, follower, followee string) func(ctx context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		resp, err := api.Graph.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: follower, PageSize: 1000})
		return err == nil && !slices.Contains(resp.GetUserIds(), followee), err
	}
}

// followersLack lists user's followers, stale without one of followers.
func followersLack(api *systemtest.Client, user string, followers []string) func(ctx context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		resp, err := api.Graph.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: user, PageSize: 1000})
		return err == nil && !systemtest.ContainsAll(resp.GetUserIds(), followers...), err
	}
}

// userPostsLack lists author's posts, stale if it lacks one of posts.
func userPostsLack(api *systemtest.Client, author string, posts []string) func(ctx context.Context) (bool, error) {
	posts = slices.Clone(posts)
	return func(ctx context.Context) (bool, error) {
		resp, err := api.Post.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: author, PageSize: 100})
		return err == nil && !systemtest.ContainsAll(systemtest.IDs(resp.GetPosts()), posts...), err
	}
}

// storeAtQuorum opens the cluster's keyspace at QUORUM, for a drill's own checks: what a
// majority of the replicas holds, whatever level the instances read at. It closes when t
// ends.
func storeAtQuorum(t *testing.T, c *Cluster) *cassandrastore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	login := c.srv.cassandraLogin
	s, err := cassandrastore.Open(ctx, cassandrastore.Config{
		Hosts: c.srv.cassandra, Keyspace: c.NS, Consistency: "QUORUM", Replication: c.srv.cassandraReplication,
		Username: login.Username, Password: login.Password, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("open keyspace %s at QUORUM on %v: %v", c.NS, c.srv.cassandra, err)
	}
	t.Cleanup(s.Close)
	return s
}

// waitStoreAnswers waits until every instance that reads Cassandra gets an answer from a
// coordinator, data or a refusal for too few replicas: its driver has reconnected to the
// nodes up (every node was down a moment).
func waitStoreAnswers(t *testing.T, c *Cluster, user, what string) {
	t.Helper()
	for _, in := range slices.Concat(c.Instances["graph"], c.Instances["post"], c.Instances["timeline"]) {
		waitfor.Until(t, 2*waitfor.Deadline, fmt.Sprintf("%s to reach Cassandra with %s", in.Name, what), func() (bool, any) {
			err := readsCassandra(in, user)
			return err == nil || isRefused(err), err
		})
	}
}

// availability counts how calls of each kind fared while part of the ring was down: how
// many succeeded, how many succeeded stale (without an acknowledged write), and the codes of
// those that failed.
type availability struct {
	what  string
	kinds []string // in the order of their first call
	calls map[string]*callTally
	// errs holds each kind's distinct error messages, for the log.
	errs map[string]map[string]bool
	// lastStale says whether the last call succeeded stale.
	lastStale bool
}

// callTally is how the calls of one kind fared.
type callTally struct {
	n, ok, stale int
	// refused counts the calls the coordinator refused (isRefused), and
	// codes the other failures by code.
	refused int
	codes   map[codes.Code]int
	spans   []span // when the failed calls ran
}

func newAvailability(what string) *availability {
	return &availability{what: what, calls: map[string]*callTally{}, errs: map[string]map[string]bool{}}
}

// logErrors logs each kind's distinct error messages.
func (av *availability) logErrors(t *testing.T) {
	t.Helper()
	for _, kind := range av.kinds {
		for _, msg := range slices.Sorted(maps.Keys(av.errs[kind])) {
			t.Logf("%s, %s failed: %s", av.what, kind, msg)
		}
	}
}

// call makes one call of kind under ringCallTimeout and records how it fared; fn reports
// whether what it read is stale.
func (av *availability) call(kind string, fn func(ctx context.Context) (stale bool, err error)) error {
	ct := av.calls[kind]
	if ct == nil {
		ct = &callTally{codes: map[codes.Code]int{}}
		av.calls[kind] = ct
		av.kinds = append(av.kinds, kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ringCallTimeout)
	defer cancel()
	began := time.Now()
	stale, err := fn(ctx)
	ct.n++
	av.lastStale = false
	switch {
	case err != nil:
		ct.spans = append(ct.spans, span{began, time.Now()})
		if isRefused(err) {
			ct.refused++
		} else {
			ct.codes[status.Code(err)]++
		}
		if av.errs[kind] == nil {
			av.errs[kind] = map[string]bool{}
		}
		av.errs[kind][status.Convert(err).Message()] = true
	case stale:
		ct.ok++
		ct.stale++
		av.lastStale = true
	default:
		ct.ok++
	}
	return err
}

// stale counts the calls that succeeded stale.
func (av *availability) stale() int {
	n := 0
	for _, ct := range av.calls {
		n += ct.stale
	}
	return n
}

// total counts the calls.
func (av *availability) total() int {
	n := 0
	for _, ct := range av.calls {
		n += ct.n
	}
	return n
}

// failedSpans returns when every failed call ran.
func (av *availability) failedSpans() []span {
	var out []span
	for _, kind := range av.kinds {
		out = append(out, av.calls[kind].spans...)
	}
	return out
}

// String is "CreatePost 0/10 (10 refused), GetHomeTimeline 7/10 (1 stale, Unavailable 3),
// ..." for each kind: how many calls succeeded, how many of those were stale, how many the
// coordinator refused, and the codes of the other failures.
func (av *availability) String() string {
	var parts []string
	for _, kind := range av.kinds {
		ct := av.calls[kind]
		s := fmt.Sprintf("%s %d/%d", kind, ct.ok, ct.n)
		var detail []string
		if ct.stale > 0 {
			detail = append(detail, fmt.Sprintf("%d stale", ct.stale))
		}
		if ct.refused > 0 {
			detail = append(detail, fmt.Sprintf("%d refused", ct.refused))
		}
		for _, code := range slices.Sorted(maps.Keys(ct.codes)) {
			if n := ct.codes[code]; n > 0 {
				detail = append(detail, fmt.Sprintf("%v %d", code, n))
			}
		}
		if len(detail) > 0 {
			s += " (" + strings.Join(detail, ", ") + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// ringNodes starts and kills the ring's nodes for a drill, and when the test ends starts the
// nodes it left down, before the cluster's cleanup drops the keyspace: a schema change waits
// until every node agrees. Make it after startClusterOn and d.report, so that its cleanup runs
// before theirs.
type ringNodes struct {
	t    *testing.T
	down []int
}

func newRingNodes(t *testing.T) *ringNodes {
	r := &ringNodes{t: t}
	t.Cleanup(func() {
		if len(r.down) > 0 {
			runScript(t, "cassandra-cluster.sh", "start")
		}
	})
	return r
}

// kill SIGKILLs node n and returns once the nodes left see it down, with how long that took.
func (r *ringNodes) kill(n int) time.Duration {
	r.t.Helper()
	r.down = append(r.down, n)
	start := time.Now()
	runScript(r.t, "cassandra-cluster.sh", "kill", strconv.Itoa(n))
	return time.Since(start)
}

// start starts node n and returns once the running nodes see it Up and Normal, with how long
// that took.
func (r *ringNodes) start(n int) time.Duration {
	r.t.Helper()
	start := time.Now()
	runScript(r.t, "cassandra-cluster.sh", "start", strconv.Itoa(n))
	r.down = slices.DeleteFunc(r.down, func(m int) bool { return m == n })
	return time.Since(start)
}

// startAllWhile starts every node that is down (`cassandra-cluster.sh start`) and meanwhile
// calls probe every half second, for up to within, until it succeeds. It returns how long
// after the script began the probe first succeeded (0 if it did not), and how long the script
// took.
func (r *ringNodes) startAllWhile(within time.Duration, probe func() bool) (probed, script time.Duration) {
	r.t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "deploy", "local", "cassandra-cluster.sh"), "start")
	cmd.Dir = repoRoot
	cmd.WaitDelay = 5 * time.Second
	type result struct {
		out  []byte
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	began := time.Now()
	go func() {
		out, err := cmd.CombinedOutput()
		done <- result{out, err, time.Since(began)}
	}()
	var res *result
	wait := done // nil once the script has ended
	for time.Since(began) < within {
		if probe() {
			probed = time.Since(began)
			break
		}
		select {
		case x := <-wait:
			res, wait = &x, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	if res == nil {
		select {
		case x := <-done:
			res = &x
		case <-time.After(within):
			cmd.Process.Kill()
			x := <-done
			res = &x
		}
	}
	r.t.Logf("deploy/local/cassandra-cluster.sh start (%v), probe succeeded after %v:\n%s", res.took.Round(time.Millisecond), probed.Round(time.Millisecond), strings.TrimRight(string(res.out), "\n"))
	if res.err != nil {
		r.t.Fatalf("deploy/local/cassandra-cluster.sh start: %v", res.err)
	}
	r.down = nil
	return probed, res.took
}
