package cassandrastore_test

// Failure tests on the three-node test ring (deploy/local/cassandra-cluster.sh):
// what a store on a keyspace with three replicas does with one node down,
// and with two, at LOCAL_QUORUM and at ONE. They kill nodes of the ring,
// which only they and the drills use, and start them again at the end.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

	"github.com/herald-feed/herald/services/platform/cassandrastore"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/rpcstatus"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// ringScript starts, stops and kills the ring's nodes.
var ringScript = filepath.Join("..", "..", "..", "deploy", "local", "cassandra-cluster.sh")

// ringReplication gives every node of the ring a replica.
const ringReplication = "{'class': 'SimpleStrategy', 'replication_factor': 3}"

// runRing runs cassandra-cluster.sh with args, and logs what it printed
// (it reports how long the other nodes took to see a node down or back).
func runRing(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(ringScript, args...)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	line := strings.Join(append([]string{"cassandra-cluster.sh"}, args...), " ")
	t.Logf("%s (%v):\n%s", line, time.Since(start).Round(time.Millisecond), strings.TrimRight(string(out), "\n"))
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
}

// openRingStore opens a store on keyspace ks of the ring at consistency
// cons, and closes it when t ends. The driver's warnings (a node's lost
// connections, which these tests cause) are dropped.
func openRingStore(t *testing.T, hosts []string, ks, cons string) *cassandrastore.Store {
	t.Helper()
	auth := testenv.CassandraAuth(t)
	s, err := cassandrastore.Open(context.Background(), cassandrastore.Config{
		Hosts:       hosts,
		Username:    auth.Username,
		Password:    auth.Password,
		Keyspace:    ks,
		Consistency: cons,
		Replication: ringReplication,
		Log:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("Open(%s at %s) on the ring %v: %v", ks, cons, hosts, err)
	}
	t.Cleanup(s.Close)
	return s
}

// dropRingKeyspace drops ks from the ring when t ends, once its nodes are
// back (a schema change needs every node to agree).
func dropRingKeyspace(t *testing.T, hosts []string, ks string) {
	t.Cleanup(func() {
		cluster := gocql.NewCluster(hosts...)
		// The nodes the driver finds through the ring are dialled on
		// cluster.Port: the ring's, which every host names.
		if _, port, err := net.SplitHostPort(hosts[0]); err == nil {
			cluster.Port, _ = strconv.Atoi(port)
		}
		cluster.Authenticator = testenv.CassandraAuth(t)
		cluster.ProtoVersion = 4
		cluster.Timeout = 20 * time.Second
		session, err := cluster.CreateSession()
		if err != nil {
			t.Errorf("connect to the ring %v to drop %s: %v", hosts, ks, err)
			return
		}
		defer session.Close()
		if err := session.Query("DROP KEYSPACE IF EXISTS " + ks).Exec(); err != nil {
			t.Errorf("DROP KEYSPACE %s: %v", ks, err)
		}
	})
}

// TestRingNodeFailures kills one node of the ring, then a second, and
// checks the CAP trade-off a keyspace with three replicas makes:
//
//   - one node down: LOCAL_QUORUM (two of three replicas) still writes
//     and reads, lightweight transactions included;
//   - two nodes down: LOCAL_QUORUM refuses writes and reads with
//     Cassandra's Unavailable, which the store maps to feed.ErrUnavailable
//     and so to gRPC UNAVAILABLE, and writes nothing;
//   - two nodes down: ONE still writes and reads on the node left
//     (available, not consistent: the others learn of the write from its
//     hints, or from a read repair, once they are back). CreatePost is not
//     among those writes: its logged batch first writes a batchlog to one
//     or two live nodes other than the coordinator, whatever the
//     consistency level, so with one node up it is refused too.
//
// Then it starts the two nodes again, and reads everything back at
// LOCAL_QUORUM.
func TestRingNodeFailures(t *testing.T) {
	hosts := testenv.CassandraRing(t)
	ctx := context.Background()
	// Every node up, whatever an earlier run left.
	runRing(t, "start")
	ks := freshKeyspace()
	dropRingKeyspace(t, hosts, ks)
	// Registered after the drop, so it runs before it: the nodes come back
	// even when the test fails half way.
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			runRing(t, "start")
		}
	})

	quorum := openRingStore(t, hosts, ks, "LOCAL_QUORUM")
	one := openRingStore(t, hosts, ks, "ONE")
	g, err := idgen.New(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	newPost := func(text string) feed.Post {
		id := g.Next()
		return feed.Post{ID: id, Author: "alice", Text: text, Created: idgen.Time(id)}
	}
	create := func(s *cassandrastore.Store, p feed.Post) error {
		_, _, err := s.CreatePost(ctx, p, "")
		return err
	}
	written := []feed.Post{newPost("all three up")}
	if err := create(quorum, written[0]); err != nil {
		t.Fatalf("CreatePost at LOCAL_QUORUM, all nodes up: %v", err)
	}

	// One node down.
	runRing(t, "kill", "3")
	second := newPost("node 3 down")
	if _, _, err := quorum.CreatePost(ctx, second, "key"); err != nil {
		t.Fatalf("CreatePost with an idempotency key (a lightweight transaction and a logged batch) at LOCAL_QUORUM, node 3 down: %v; want nil (two of three replicas are up)", err)
	}
	written = append(written, second)
	if got, err := quorum.GetPosts(ctx, ids(written)); err != nil || !samePosts(got, written) {
		t.Errorf("GetPosts at LOCAL_QUORUM, node 3 down = %v, %v; want %v", got, err, written)
	}
	if got, err := quorum.ListByAuthor(ctx, "alice", 0, 10); err != nil || !samePosts(got, written) {
		t.Errorf("ListByAuthor at LOCAL_QUORUM, node 3 down = %v, %v; want %v", got, err, written)
	}
	if changed, err := quorum.Follow(ctx, "bob", "alice"); err != nil || !changed {
		t.Errorf("Follow (a lightweight transaction) at LOCAL_QUORUM, node 3 down = %v, %v; want true, nil", changed, err)
	}

	// Two nodes down. The coordinator knows (kill waits until the others
	// have marked the node down), so it refuses at once, before it writes
	// anything.
	runRing(t, "kill", "2")
	refused := []feed.Post{newPost("nodes 2 and 3 down, at LOCAL_QUORUM")}
	checkUnavailable(t, "CreatePost at LOCAL_QUORUM, nodes 2 and 3 down", create(quorum, refused[0]))
	checkUnavailable(t, "MarkPublished at LOCAL_QUORUM, nodes 2 and 3 down", quorum.MarkPublished(ctx, second.ID))
	_, err = quorum.GetPosts(ctx, ids(written))
	checkUnavailable(t, "GetPosts at LOCAL_QUORUM, nodes 2 and 3 down", err)

	// At ONE the node left answers alone, and reads its own write.
	if err := one.MarkPublished(ctx, second.ID); err != nil {
		t.Errorf("MarkPublished at ONE, nodes 2 and 3 down: %v; want nil", err)
	}
	if got, err := one.GetPosts(ctx, ids(written)); err != nil || !samePosts(got, written) {
		t.Errorf("GetPosts at ONE, nodes 2 and 3 down = %v, %v; want %v", got, err, written)
	}
	if got, err := one.ListUnpublished(ctx, 0, 10); err != nil || !samePosts(got, written[:1]) {
		t.Errorf("ListUnpublished at ONE, nodes 2 and 3 down, after MarkPublished(%d) at ONE = %v, %v; want %v", second.ID, got, err, written[:1])
	}
	refused = append(refused, newPost("nodes 2 and 3 down, at ONE"))
	checkUnavailable(t, "CreatePost at ONE, nodes 2 and 3 down (its batchlog needs another node)", create(one, refused[1]))

	runRing(t, "start")
	restarted = true
	if got, err := quorum.GetPosts(ctx, ids(append(slices.Clone(written), refused...))); err != nil || !samePosts(got, written) {
		t.Errorf("GetPosts at LOCAL_QUORUM, all nodes back = %v, %v; want %v (and neither refused post %v)", got, err, written, ids(refused))
	}
	// The write at ONE reaches the two nodes that missed it, by the hints
	// node 1 kept for them or by a read repair; until then a quorum of
	// those two still holds the marker.
	waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("a LOCAL_QUORUM read to see the MarkPublished(%d) made at ONE", second.ID), func() (bool, any) {
		got, err := quorum.ListUnpublished(ctx, 0, 10)
		if err != nil {
			return false, err
		}
		return samePosts(got, written[:1]), got
	})
}

// checkUnavailable fails t unless err is Cassandra's own Unavailable (the
// coordinator knew too few replicas were up), mapped to feed.ErrUnavailable
// and gRPC UNAVAILABLE.
func checkUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var unavailable *gocql.RequestErrUnavailable
	if !errors.Is(err, feed.ErrUnavailable) || !errors.As(err, &unavailable) {
		t.Errorf("%s = %v; want feed.ErrUnavailable wrapping *gocql.RequestErrUnavailable", what, err)
		return
	}
	if code := status.Code(rpcstatus.From(err)); code != codes.Unavailable {
		t.Errorf("%s: rpcstatus.From(%v) has code %v; want %v", what, err, code, codes.Unavailable)
	}
	t.Logf("%s: %v", what, err)
}

func ids(ps []feed.Post) []feed.PostID {
	out := make([]feed.PostID, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// samePosts reports whether got holds the posts of want, in any order.
func samePosts(got, want []feed.Post) bool {
	byID := func(a, b feed.Post) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	}
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, byID)
	slices.SortFunc(want, byID)
	return slices.Equal(got, want)
}
