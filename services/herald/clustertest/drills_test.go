package clustertest

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// The crash drills: each breaks a part of the cluster while it works, lets
// it recover, and then runs the model check over every user it touched:
// each home timeline must hold exactly the posts the model computes, with
// none lost and none twice. The NATS drills run on a nats-server of their
// own, so that stopping it leaves the shared one alone.

// fanoutAckWait is the fan-out consumer's AckWait (services/fanout/app):
// how long the server waits before it redelivers a message whose
// instance died holding it.
const fanoutAckWait = 30 * time.Second

// TestDrillFanoutKill kills -9 a fan-out instance in the middle of a large
// fan-out: a burst of posts by an author with a few hundred active
// followers, in chunks of 25 followers. What the killed instance held
// unacked is redelivered after AckWait, and every follower ends with every
// post exactly once.
func TestDrillFanoutKill(t *testing.T) {
	const (
		followers = 300
		posts     = 12
		chunk     = 25
		rounds    = 3
		star      = "fk_star"
	)
	t.Setenv("HERALD_FANOUT_CHUNK_SIZE", strconv.Itoa(chunk))
	// Push every post, whatever its author's follower count.
	t.Setenv("HERALD_STRATEGY", "push")
	c := startCluster(t)
	d := newDrill(t, c)
	d.report("fan-out instance killed mid fan-out", c.srv.clusterKind())

	fs := names("fk_f", followers)
	start := time.Now()
	d.followAll(fs, star, 16)
	followed := time.Now()
	d.readAll(append(fs, star), 16)
	t.Logf("%d follows of %s in %v; %d home timelines read, so fan-out writes them, in %v",
		followers, star, followed.Sub(start).Round(time.Millisecond), followers+1, time.Since(followed).Round(time.Millisecond))
	c.waitIdle(t, 30*time.Second)

	victim := c.Instances["fanout"][0]
	var killed time.Time
	held := 0
	for round := 1; round <= rounds && held == 0; round++ {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
			done = make(chan struct{}, posts)
		)
		for i := range posts {
			wg.Go(func() {
				if _, err := d.post(star, fmt.Sprintf("fk-%d-%d", round, i)); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				done <- struct{}{}
			})
		}
		// Kill once the first posts are out, while their fan-out runs and
		// the rest of the burst is still coming.
		for range 3 {
			<-done // each post returns within writeBudget
		}
		before := c.durableStats(t)
		pid := victim.PID()
		killed = time.Now()
		victim.Kill()
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("posts of round %d failed: %v", round, errs)
		}
		t.Logf("round %d: killed %s (pid %d) with SIGKILL mid-burst; just before: %v", round, victim.Name, pid, before)

		// The survivor takes the rest; what stays unacked once it is done
		// was held by the killed instance, and waits for AckWait.
		var st []consumerStat
		if !waitfor.True(2*waitfor.Deadline, 100*time.Millisecond, func() bool {
			st = c.durableStats(t)
			return pending(st) == 0
		}) {
			t.Fatalf("the surviving fan-out instance did not take the backlog within %v: %v", 2*waitfor.Deadline, st)
		}
		waitfor.True(3*time.Second, 100*time.Millisecond, func() bool {
			st = c.durableStats(t)
			return ackPending(st) == 0
		})
		held = ackPending(st)
		t.Logf("round %d: %d messages held unacked by the killed instance, %v after the kill: %v", round, held, time.Since(killed).Round(time.Millisecond), st)

		restarted := time.Now()
		if err := victim.Start(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: restarted %s in %v", round, victim.Name, time.Since(restarted).Round(time.Millisecond))
	}
	if held == 0 {
		t.Logf("in %d rounds no kill caught a message in flight; the check still covers kills between messages", rounds)
	}

	d.check(fanoutAckWait + 20*time.Second)
	d.recovered(time.Since(killed), fmt.Sprintf("from the last SIGKILL to every follower having every post (AckWait %v); %d messages were held unacked by the killed instance", fanoutAckWait, held))
	subjects := c.subjectCounts(t)
	t.Logf("event stream messages by subject: %v", subjects)
	if subjects[string(event.KindFanoutChunk)] == 0 {
		t.Errorf("no %s messages: HERALD_FANOUT_CHUNK_SIZE=%d did not take effect, and each post's fan-out was one message", event.KindFanoutChunk, chunk)
	}
	d.logConsumers()
	d.recheck("fkmc_")
	c.CheckAlive(t)
}

// TestDrillNATSRestart restarts nats-server while three clients post and
// follow, retrying UNAVAILABLE and timed-out calls with the same
// idempotency key. Every post and follow lands once.
func TestDrillNATSRestart(t *testing.T) {
	c, ns := startClusterOnPrivateNATS(t)
	d := newDrill(t, c)
	d.report("NATS restarted", c.srv.clusterKind())
	authors := d.smallGraph("nr")

	ws := d.startWriters(3, func(i int) func() (*write, error) {
		a := authors[i%len(authors)]
		if i%4 == 3 {
			// A new follower, whose Followed event backfills its
			// timeline.
			f := fmt.Sprintf("nr_g%03d", i)
			return func() (*write, error) { return d.follow(f, a) }
		}
		key := fmt.Sprintf("nr-%d", i)
		return func() (*write, error) { return d.post(a, key) }
	})
	if !ws.waitDone(10, time.Time{}, waitfor.Deadline) {
		t.Fatalf("10 writes did not succeed within %v before the restart", waitfor.Deadline)
	}

	stopped := time.Now()
	ns.Stop(t)
	down := time.Now()
	ns.Start(t)
	ready := time.Now()
	t.Logf("nats-server restarted: stopped in %v, serving again %v later; down %v in all",
		down.Sub(stopped).Round(time.Millisecond), ready.Sub(down).Round(time.Millisecond), ready.Sub(stopped).Round(time.Millisecond))

	if !ws.waitDone(10, ready, waitfor.Deadline) {
		t.Fatalf("10 writes begun after the restart did not succeed within %v", waitfor.Deadline)
	}
	writes := ws.finish()
	summarize(t, "writes before the restart", writes, time.Time{}, stopped)
	summarize(t, "writes during the restart", writes, stopped, ready)
	summarize(t, "writes after the restart", writes, ready, time.Now())

	d.check(2 * waitfor.Deadline)
	d.recovered(time.Since(stopped), "from the stop of nats-server to every timeline matching the model")
	d.note("nats-server down %v", ready.Sub(stopped).Round(time.Millisecond))
	d.logRelay()
	d.logConsumers()
	d.recheck("nrmc_")
	c.CheckAlive(t)
}

// TestDrillNATSOutage stops nats-server while three clients post, keeps it
// down until posts have been accepted without it, and starts it again.
// CreatePost succeeds throughout, since the post and its outbox marker are
// stored first; once NATS is back the outbox relay publishes what could
// not be, and every post reaches every follower once.
func TestDrillNATSOutage(t *testing.T) {
	const (
		minOutage = 4 * time.Second // > attemptTimeout: attempts time out
		accepted  = 6
	)
	c, ns := startClusterOnPrivateNATS(t)
	d := newDrill(t, c)
	d.report("NATS down, the outbox delivering", c.srv.clusterKind())
	authors := d.smallGraph("no")

	ws := d.startWriters(3, func(i int) func() (*write, error) {
		a, key := authors[i%len(authors)], fmt.Sprintf("no-%d", i)
		return func() (*write, error) { return d.post(a, key) }
	})
	if !ws.waitDone(8, time.Time{}, waitfor.Deadline) {
		t.Fatalf("8 posts did not succeed within %v before the outage", waitfor.Deadline)
	}

	stopped := time.Now()
	ns.Stop(t)
	down := time.Now()
	if !waitfor.True(minOutage+waitfor.Deadline, 50*time.Millisecond, func() bool {
		return time.Since(down) >= minOutage && ws.succeeded(down, time.Now()) >= accepted
	}) {
		t.Errorf("%d posts begun with nats-server down succeeded within %v; want %d: CreatePost must not need NATS", ws.succeeded(down, time.Now()), minOutage+waitfor.Deadline, accepted)
	}
	restart := time.Now()
	ns.Start(t)
	ready := time.Now()
	t.Logf("nats-server down for %v (stopped in %v; start took %v); %d posts begun and accepted while it was down",
		ready.Sub(stopped).Round(time.Millisecond), down.Sub(stopped).Round(time.Millisecond), ready.Sub(restart).Round(time.Millisecond), ws.succeeded(down, restart))

	if !ws.waitDone(8, ready, waitfor.Deadline) {
		t.Fatalf("8 posts begun after the outage did not succeed within %v", waitfor.Deadline)
	}
	writes := ws.finish()
	summarize(t, "posts before the outage", writes, time.Time{}, stopped)
	summarize(t, "posts during the outage", writes, stopped, ready)
	summarize(t, "posts after the outage", writes, ready, time.Now())

	d.check(2 * waitfor.Deadline)
	d.recovered(time.Since(ready), "from nats-server serving again to every timeline matching the model")
	d.note("nats-server down %v; %d posts accepted meanwhile, held in the outbox", ready.Sub(stopped).Round(time.Millisecond), ws.succeeded(down, restart))
	if n := d.logRelay(); n == 0 {
		t.Errorf("the outbox relay republished no post; want it to publish the posts accepted while NATS was down")
	}
	d.logConsumers()
	d.recheck("nomc_")
	c.CheckAlive(t)
}

// TestDrillRelayLeaderKill leaves posts in the outbox (accepted while
// nats-server is stopped), kills -9 the post instance that leads the
// outbox relay, and starts NATS again: the other post instance wins the
// election within the lease TTL and its relay publishes the posts, the
// dead leader's included, whose in-process publish retries died with it.
func TestDrillRelayLeaderKill(t *testing.T) {
	c, ns := startClusterOnPrivateNATS(t)
	d := newDrill(t, c)
	d.report("outbox relay leader killed", c.srv.clusterKind())
	authors := d.smallGraph("rl")

	var leader *Instance
	if !waitfor.True(waitfor.Deadline, 50*time.Millisecond, func() bool {
		leader, _ = c.relayLeader()
		return leader != nil
	}) {
		t.Fatalf("no outbox relay leader under %s within %v", c.relayElection(), waitfor.Deadline)
	}
	survivor := c.Instances["post"][0]
	if survivor == leader {
		survivor = c.Instances["post"][1]
	}
	worker, err := leader.postWorker()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("outbox relay leader: %s (pid %d, %s, post ID worker %d)", leader.Name, leader.PID(), leader.Addr(), worker)

	ns.Stop(t)
	down := time.Now()
	// Post in batches until the leader has accepted some: only the relay
	// can publish those once it is dead.
	var mu sync.Mutex
	byLeader, n := 0, 0
	for batch := 0; batch < 4 && byLeader < 2; batch++ {
		keys := make([]int, 4)
		for i := range keys {
			keys[i] = n
			n++
		}
		if err := systemtest.Each(keys, len(keys), func(i int) error {
			w, err := d.post(authors[i%len(authors)], fmt.Sprintf("rl-%d", i))
			if err == nil && idgen.Worker(feed.PostID(w.post)) == worker {
				mu.Lock()
				byLeader++
				mu.Unlock()
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if byLeader == 0 {
		t.Fatalf("none of %d posts went to the leader %s", n, leader.Name)
	}
	t.Logf("%d posts accepted with nats-server down, %d of them by the leader, in %v", n, byLeader, time.Since(down).Round(time.Millisecond))

	pid := leader.PID()
	killed := time.Now()
	leader.Kill()
	var takeover time.Duration
	if !waitfor.True(leaseTTL+leaseMargin, 20*time.Millisecond, func() bool {
		in, err := c.relayLeader()
		if err != nil || in != survivor {
			return false
		}
		takeover = time.Since(killed)
		return true
	}) {
		in, err := c.relayLeader()
		t.Fatalf("relay leader %v after killing %s = %v, %v; want %s: the dead leader's lease (TTL %v) should have expired", leaseTTL+leaseMargin, leader.Name, in, err, survivor.Name, leaseTTL)
	}
	t.Logf("killed the leader %s (pid %d) with SIGKILL; %s took over the relay %v later (lease TTL %v)",
		leader.Name, pid, survivor.Name, takeover.Round(time.Millisecond), leaseTTL)
	d.recovered(takeover, fmt.Sprintf("from the SIGKILL of the relay's leader to the other post instance leading it (lease TTL %v)", leaseTTL))
	d.note("%d posts accepted with NATS down, %d of them by the killed leader", n, byLeader)
	// The dead leader's key goes when etcd expires its lease, which the
	// wait above bounds (leaseMargin); how soon is a figure, logged above.

	ns.Start(t)
	ready := time.Now()
	t.Logf("nats-server down for %v", ready.Sub(down).Round(time.Millisecond))
	d.check(2 * waitfor.Deadline)
	t.Logf("full delivery %v after nats-server was serving again, %v after the kill", time.Since(ready).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	_, byLog := c.relayRepublished()
	if mine := byLog[fmt.Sprintf("%s.%d.log", survivor.Name, 1)]; mine == 0 {
		t.Errorf("the new leader %s republished no post; want it to publish the %d posts the dead leader left", survivor.Name, byLeader)
	}
	d.logRelay()
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	d.logConsumers()
	d.recheck("rlmc_")
	c.CheckAlive(t)
}

// smallGraph makes three authors, each followed by six of nine followers,
// all of them active, and returns the authors.
func (d *drill) smallGraph(prefix string) []string {
	d.t.Helper()
	authors := names(prefix+"_a", 3)
	followers := names(prefix+"_f", 9)
	for i, a := range authors {
		var fs []string
		for j, f := range followers {
			if j%3 != i {
				fs = append(fs, f)
			}
		}
		d.followAll(fs, a, 8)
	}
	d.readAll(append(authors, followers...), 8)
	return authors
}

// logConsumers logs the state of the event stream's durable consumers. A
// message whose ack was lost in a NATS restart stays ack-pending until
// AckWait, then is redelivered; the check does not wait for that.
func (d *drill) logConsumers() {
	d.t.Helper()
	for _, s := range d.c.durableStats(d.t) {
		d.t.Logf("%v", s)
	}
}

// logRelay logs how many posts the outbox relays republished, and returns
// the total.
func (d *drill) logRelay() int {
	n, byLog := d.c.relayRepublished()
	d.t.Logf("outbox relay republished %d posts (by instance log: %v)", n, byLog)
	return n
}
