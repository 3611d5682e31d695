package clustertest

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestDrillPostPausedPastLease: a post instance is paused (SIGSTOP) past
// its etcd lease, the lease expires, and a new post instance claims the
// worker ID the paused one minted with. The paused instance reaches etcd
// through a proxy that holds its bytes from the pause until the end, so
// that on resuming it cannot hear from etcd that its lease is gone (a
// resumed process whose link is slow or partitioned). Calls on it must
// not mint: every CreatePost answers UNAVAILABLE, and no post ID carries
// the worker ID twice. Once its link is back, it takes a new lease and a
// worker ID that nobody holds, and mints again.
//
// Two local checks refuse here, whichever comes first: etcd's client
// closes the session once a response is a TTL overdue (checked every
// 500 ms, counted from the last response's arrival), and the post
// service's lease clock (discovery.LeaseClock) is certain of the lease
// only until its last renewal's send time plus the TTL, less a margin,
// checked at each mint. On this machine the client's check alone already
// refuses every call after the resume (the drill also passes without the
// clock); the clock closes what the client's leaves open: up to 500 ms
// after its deadline, and a deadline that runs from the response, later
// than etcd's own.
func TestDrillPostPausedPastLease(t *testing.T) {
	c := startCluster(t)
	victim := c.Instances["post"][0]
	proxy := startHoldProxy(t, c.srv.etcd[0])
	victim.Stop()
	victim.Etcd = []string{proxy.Addr()}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	worker, err := victim.postWorker()
	if err != nil {
		t.Fatal(err)
	}
	// A connection of its own to the victim, open before the pause, so
	// that the calls after it go out at once.
	conn, err := grpc.NewClient(victim.Addr(), c.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	posts := feedv1.NewPostServiceClient(conn)
	create := func(text string) (*feedv1.Post, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := posts.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "pause_author", Text: text})
		return resp.GetPost(), err
	}
	before, err := create("before the pause")
	if err != nil {
		t.Fatalf("CreatePost on %s before the pause: %v", victim.Name, err)
	}
	// Clients work through discovery meanwhile; the paused instance holds
	// their calls to it until they time out and go to another.
	d := newDrill(t, c)
	d.report("post instance paused past its lease", c.srv.clusterKind())
	ws := d.startLoad("pp", 2)
	mine := map[string]*feedv1.Post{"before the pause": before}

	paused := time.Now()
	if err := syscall.Kill(victim.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	proxy.Hold()
	held := true
	release := func() {
		if held {
			held = false
			proxy.Release()
		}
	}
	defer release()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(victim.PID(), syscall.SIGCONT)
		}
	}
	defer resume()

	key := fmt.Sprintf("%s/workers/%d", c.NS, worker)
	waitfor.Until(t, leaseMargin+5*time.Second, "the paused instance's worker ID to leave etcd", func() (bool, any) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := c.Etcd.Get(ctx, key, clientv3.WithCountOnly())
		return err == nil && resp.Count == 0, fmt.Sprint(err)
	})
	t.Logf("%s's worker ID %d left etcd %v after the pause", victim.Name, worker, time.Since(paused).Round(time.Millisecond))
	thief := &Instance{Service: "post", Name: "post-3", c: c}
	c.Instances["post"] = append(c.Instances["post"], thief)
	if err := thief.Start(); err != nil {
		t.Fatal(err)
	}
	if w, err := thief.postWorker(); err != nil || w != worker {
		t.Fatalf("the new post instance mints with worker ID %d (%v); want %d, the paused one's", w, err, worker)
	}

	// Resume, and call at once from several goroutines, before the
	// victim's session can hear from etcd.
	resume()
	var mu sync.Mutex
	var minted []feed.PostID
	codesSeen := map[codes.Code]int{}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			p, err := create(fmt.Sprintf("after the pause %d", i))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				id, _ := feed.ParsePostID(p.GetPostId())
				minted = append(minted, id)
				mine[fmt.Sprintf("after the pause %d", i)] = p
				return
			}
			codesSeen[status.Code(err)]++
		})
	}
	wg.Wait()
	t.Logf("after the resume: %d posts created, errors by code %v", len(minted), codesSeen)
	for _, id := range minted {
		if idgen.Worker(id) == worker {
			t.Errorf("the resumed instance minted post %d with worker ID %d, which %s holds", id, worker, thief.Name)
		}
	}
	if codesSeen[codes.Unavailable] == 0 && len(minted) == 0 {
		t.Errorf("after the resume no call was answered UNAVAILABLE; errors %v", codesSeen)
	}
	// The new holder mints with the worker ID, and every ID stays unique.
	conn3, err := grpc.NewClient(thief.Addr(), c.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn3.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	after, err := feedv1.NewPostServiceClient(conn3).CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: "pause_author", Text: "from the new holder"})
	if err != nil {
		t.Fatalf("CreatePost on %s: %v", thief.Name, err)
	}
	mine["from the new holder"] = after.GetPost()
	// Once its link to etcd is back, the resumed instance finds its lease
	// gone, takes a new one and claims a worker ID under it: not the one
	// the new holder has.
	release()
	var claimed []int
	waitfor.Until(t, waitfor.Deadline, victim.Name+" to claim a worker ID under a new lease", func() (bool, any) {
		claimed, err = victim.postWorkers()
		return err == nil && len(claimed) > 1, victim.logTail(3)
	})
	if w := claimed[len(claimed)-1]; w == worker {
		t.Errorf("%s claimed worker ID %d again under its new lease, which %s holds", victim.Name, w, thief.Name)
	}
	rejoined, err := create("after the new lease")
	if err != nil {
		t.Fatalf("CreatePost on %s under its new lease: %v", victim.Name, err)
	}
	if id, _ := feed.ParsePostID(rejoined.GetPostId()); idgen.Worker(id) != claimed[len(claimed)-1] {
		t.Errorf("%s minted post %d with worker ID %d; want %d, its new claim", victim.Name, id, idgen.Worker(id), claimed[len(claimed)-1])
	}
	t.Logf("%s rejoined: worker IDs claimed %v", victim.Name, claimed)
	mine["after the new lease"] = rejoined
	d.recovered(time.Since(paused), "from the SIGSTOP to the paused instance minting again under a new lease and worker ID")
	d.note("worker ID %d: paused holder, then %s; the resumed instance minted %d posts with it and claimed %v", worker, thief.Name, len(minted), claimed)

	ws.finish()
	for key, p := range mine {
		id, err := feed.ParsePostID(p.GetPostId())
		if err != nil {
			t.Fatalf("post ID %q: %v", p.GetPostId(), err)
		}
		d.acked(uint64(id), "pause_author", key)
	}
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
}
