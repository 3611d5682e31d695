package allinone_test

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestLostLeaseIsReplaced: when etcd drops the process's lease (here
// revoked from outside, as etcd expires a lease whose holder went silent
// past its TTL), the process does not exit. It serves on, takes a new
// lease, claims a worker ID again under it (its old key went with the old
// lease) and registers its services again; CreatePost mints with the new
// claim.
func TestLostLeaseIsReplaced(t *testing.T) {
	conn, sys, stop := startSystemWith(t, testConfig(t, t.TempDir()))
	defer stop()
	n := sys.Node
	c := systemtest.NewClient(conn, conn, conn)
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Deadline)
	defer cancel()
	before, err := c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "lease_a", Text: "before"})
	if err != nil {
		t.Fatal(err)
	}

	old := n.Lease()
	if _, err := n.Etcd.Revoke(ctx, old.Session.Lease()); err != nil {
		t.Fatal(err)
	}
	next, err := n.NextLease(ctx, old)
	if err != nil {
		t.Fatalf("no new lease within %v of the old one's revocation: %v", waitfor.Deadline, err)
	}
	if next.Session.Lease() == old.Session.Lease() || next.Lost() {
		t.Fatalf("new lease %x (lost %v); want a live lease other than the revoked %x", next.Session.Lease(), next.Lost(), old.Session.Lease())
	}
	// Registered again, under the new lease.
	for _, svc := range []string{"post", "graph", "fanout", "timeline"} {
		addrs, err := discovery.Endpoints(ctx, n.Etcd, n.Namespace(), svc)
		if err != nil || len(addrs) != 1 || addrs[0] != n.Addr() {
			t.Errorf("%s endpoints after the new lease = %v, %v; want [%s]", svc, addrs, err, n.Addr())
		}
	}
	resp, err := n.Etcd.Get(ctx, n.Namespace()+"/workers/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != next.Session.Lease() {
		t.Fatalf("worker ID keys after the new lease: %v; want one, under lease %x", resp.Kvs, next.Session.Lease())
	}

	after, err := c.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "lease_a", Text: "after"})
	if err != nil {
		t.Fatalf("CreatePost under the new lease: %v", err)
	}
	b, _ := feed.ParsePostID(before.GetPost().GetPostId())
	a, _ := feed.ParsePostID(after.GetPost().GetPostId())
	if a <= b {
		t.Errorf("post ID under the new lease %d is not above the one before %d", a, b)
	}
	t.Logf("worker ID %d before, %d after; lease %x replaced by %x", idgen.Worker(b), idgen.Worker(a), old.Session.Lease(), next.Session.Lease())
}
