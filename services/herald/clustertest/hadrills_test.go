package clustertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-feed/herald/services/platform/waitfor"
)

// The drills on the HA cluster (serversHA): each breaks one replicated
// server while clients post, follow and read, and ends with the model
// check and the check that no post ID was given twice.

// loadPace is how long each of a drill's client workers waits between
// calls: the load is steady, not a saturating loop, so that a drill's
// figures are about the fault and not about the machine's two cores.
const loadPace = 25 * time.Millisecond

// startLoad builds a small graph under prefix and starts workers clients
// that post (half the calls), follow (a new follower each time, a sixth)
// and read (a third), until the drill stops them.
func (d *drill) startLoad(prefix string, workers int) *writers {
	d.t.Helper()
	authors := d.smallGraph(prefix)
	followers := names(prefix+"_f", 9)
	ws := d.startWriters(workers, func(i int) func() (*write, error) {
		a := authors[i%len(authors)]
		var call func() (*write, error)
		switch i % 6 {
		case 5:
			f := fmt.Sprintf("%s_g%03d", prefix, i)
			call = func() (*write, error) { return d.follow(f, a) }
		case 2, 4:
			u := followers[i%len(followers)]
			call = func() (*write, error) { return d.read(u) }
		default:
			key := fmt.Sprintf("%s-%d", prefix, i)
			call = func() (*write, error) { return d.post(a, key) }
		}
		return func() (*write, error) {
			time.Sleep(loadPace)
			return call()
		}
	})
	if !ws.waitDone(10, time.Time{}, waitfor.Deadline) {
		d.t.Fatalf("10 calls did not succeed within %v before the fault", waitfor.Deadline)
	}
	return ws
}

// etcdStatus is what one etcd member says of the cluster.
type etcdStatus struct {
	member int // 1-based, as etcd-cluster.sh numbers them
	leader bool
	term   uint64
}

// etcdStatuses asks each of the members (1-based) for its status, and
// returns the answers of those that gave one and know a leader.
func (c *Cluster) etcdStatuses(members ...int) []etcdStatus {
	var out []etcdStatus
	for _, m := range members {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		st, err := c.Etcd.Status(ctx, c.srv.etcd[m-1])
		cancel()
		if err != nil || st.Leader == 0 {
			continue
		}
		out = append(out, etcdStatus{member: m, leader: st.Leader == st.Header.MemberId, term: st.RaftTerm})
	}
	return out
}

// etcdLeader returns the member that leads, and its term, as the given
// members see it; 0 if none of them leads.
func (c *Cluster) etcdLeader(members ...int) (leader int, term uint64) {
	for _, st := range c.etcdStatuses(members...) {
		if st.leader {
			return st.member, st.term
		}
	}
	return 0, 0
}

// others returns the members 1-3 but m.
func others(m int) []int {
	var out []int
	for i := 1; i <= 3; i++ {
		if i != m {
			out = append(out, i)
		}
	}
	return out
}

// TestDrillEtcdLeaderKilled kills -9 the etcd leader while clients work.
// The two members left elect a new leader in a higher term; discovery,
// a new registration and CreatePost keep working.
func TestDrillEtcdLeaderKilled(t *testing.T) {
	srv := serversHA(t)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report("etcd leader killed", srv.clusterKind())
	ws := d.startLoad("el", 2)

	var leader int
	var term uint64
	waitfor.Until(t, waitfor.Deadline, "an etcd leader", func() (bool, any) {
		leader, term = c.etcdLeader(1, 2, 3)
		return leader != 0, c.etcdStatuses(1, 2, 3)
	})
	killed := time.Now()
	runScript(t, "etcd-cluster.sh", "kill", strconv.Itoa(leader))
	defer runScript(t, "etcd-cluster.sh", "start", strconv.Itoa(leader))
	var next int
	var nextTerm uint64
	waitfor.Until(t, 30*time.Second, "a new etcd leader", func() (bool, any) {
		next, nextTerm = c.etcdLeader(others(leader)...)
		return next != 0 && nextTerm > term, c.etcdStatuses(others(leader)...)
	})
	elected := time.Since(killed)
	d.recovered(elected, "from the SIGKILL of the leader to a new leader, by the survivors' status (etcd-cluster.sh's own figure is in the log)")
	d.note("leader member %d killed in term %d; member %d leads in term %d", leader, term, next, nextTerm)

	// A registration, and the discovery of the new address, on the two
	// members left.
	restarted := c.Instances["fanout"][1]
	restarted.Stop()
	began := time.Now()
	if err := restarted.Start(); err != nil {
		t.Fatalf("registering a restarted instance with the etcd leader dead: %v", err)
	}
	d.note("a restarted fan-out instance registered in %v on two members", time.Since(began).Round(time.Millisecond))
	if !ws.waitDone(10, killed.Add(elected), waitfor.Deadline) {
		t.Fatalf("10 calls begun after the new leader did not succeed within %v", waitfor.Deadline)
	}
	writes := ws.finish()
	summarize(t, "calls before the kill", writes, time.Time{}, killed)
	summarize(t, "calls during the election", writes, killed, killed.Add(elected))
	summarize(t, "calls after the election", writes, killed.Add(elected), time.Now())
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
}

// natsServerNumber maps a node's server name (herald-ha-N, as
// nats-cluster.sh names them) to N.
func natsServerNumber(name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "herald-ha-"))
	if err != nil {
		return 0
	}
	return n
}

// streamLeader returns the node (1-3) that leads the cluster's event
// stream, and the replicas' state, asking through any live node.
func (c *Cluster) streamLeader() (int, string, error) {
	nc, err := nats.Connect(c.srv.nats, c.srv.natsOptions(nats.Timeout(time.Second), nats.MaxReconnects(0))...)
	if err != nil {
		return 0, "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, strings.ToUpper(c.NS)+"_EVENTS")
	if err != nil {
		return 0, "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return 0, "", fmt.Errorf("stream %s has no leader", info.Config.Name)
	}
	var replicas []string
	for _, p := range info.Cluster.Replicas {
		replicas = append(replicas, fmt.Sprintf("%s current=%v lag=%d", p.Name, p.Current, p.Lag))
	}
	return natsServerNumber(info.Cluster.Leader), strings.Join(replicas, ", "), nil
}

// TestDrillNATSNodeKilled kills -9 a NATS node that does not lead the
// event stream, while clients post: the stream keeps its quorum and
// leader, the clients on the dead node reconnect to the others, and no
// acknowledged post is lost.
func TestDrillNATSNodeKilled(t *testing.T) {
	drillNATSKill(t, "NATS node killed", false)
}

// TestDrillNATSStreamLeaderKilled kills -9 the NATS node that leads the
// event stream: the two replicas left elect a new stream leader, and no
// acknowledged post is lost.
func TestDrillNATSStreamLeaderKilled(t *testing.T) {
	drillNATSKill(t, "NATS stream leader killed", true)
}

func drillNATSKill(t *testing.T, name string, killLeader bool) {
	srv := serversHA(t)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report(name, srv.clusterKind())
	ws := d.startLoad("nk", 2)

	var leader int
	var replicas string
	waitfor.Until(t, waitfor.Deadline, "the event stream's leader", func() (bool, any) {
		var err error
		leader, replicas, err = c.streamLeader()
		return err == nil && leader != 0, err
	})
	victim := leader
	if !killLeader {
		victim = others(leader)[0]
	}
	d.note("stream leader node %d (replicas %s); killing node %d", leader, replicas, victim)
	killed := time.Now()
	runScript(t, "nats-cluster.sh", "kill", strconv.Itoa(victim))
	restart := func() { runScript(t, "nats-cluster.sh", "start", strconv.Itoa(victim)) }
	defer func() {
		if restart != nil {
			restart()
		}
	}()
	var newLeader int
	waitfor.Until(t, 30*time.Second, "a stream leader on a live node", func() (bool, any) {
		l, _, err := c.streamLeader()
		newLeader = l
		return err == nil && l != 0 && l != victim, fmt.Sprint(l, err)
	})
	led := time.Since(killed)
	if !ws.waitDone(10, killed.Add(led), waitfor.Deadline) {
		t.Fatalf("10 calls begun after the kill did not succeed within %v", waitfor.Deadline)
	}
	writes := ws.finish()
	// The first post acknowledged after the kill tells when posting
	// recovered.
	firstPost := time.Duration(0)
	for _, w := range writes {
		if w.err == nil && w.post != 0 && !w.start.Before(killed) && (firstPost == 0 || w.end.Sub(killed) < firstPost) {
			firstPost = w.end.Sub(killed)
		}
	}
	if killLeader {
		d.recovered(led, "from the SIGKILL to a new stream leader, by the stream's info")
	} else {
		d.recovered(firstPost, "from the SIGKILL to the first post acknowledged after it")
	}
	d.note("stream leader after: node %d; first post acknowledged %v after the kill", newLeader, firstPost.Round(time.Millisecond))
	summarize(t, "calls before the kill", writes, time.Time{}, killed)
	summarize(t, "calls after the kill", writes, killed, time.Now())
	restart()
	restart = nil
	d.check(2 * waitfor.Deadline)
	d.logConsumers()
	c.CheckAlive(t)
}

// TestDrillRedisPrimaryKilled kills -9 the Redis primary while clients
// work. The Sentinels promote the replica, the instances' failover clients
// follow it, and fan-out and reads resume; every timeline matches the
// model, those the replica lacked rebuilt from Cassandra.
func TestDrillRedisPrimaryKilled(t *testing.T) {
	srv := serversHA(t)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report("Redis primary killed", srv.clusterKind())
	ws := d.startLoad("rp", 2)

	primary := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		addr, err := sentinelPrimary(ctx, srv)
		if err != nil {
			return ""
		}
		return addr
	}
	before := primary()
	if before == "" {
		t.Fatalf("the Sentinels %s name no primary for %s", srv.redis, srv.redisMaster)
	}
	killed := time.Now()
	runScript(t, "redis-sentinel.sh", "kill-primary")
	defer runScript(t, "redis-sentinel.sh", "start")
	var after string
	waitfor.Until(t, 60*time.Second, "the Sentinels to promote the replica", func() (bool, any) {
		after = primary()
		return after != "" && after != before, after
	})
	promoted := time.Since(killed)
	var firstWrite time.Duration
	waitfor.Until(t, waitfor.Deadline, "a timeline read on the new primary", func() (bool, any) {
		_, err := d.read("rp_f00")
		firstWrite = time.Since(killed)
		return err == nil, err
	})
	d.recovered(promoted, "from the SIGKILL of the primary to the Sentinels naming the replica")
	d.note("primary %s → %s; a read succeeded %v after the kill", before, after, firstWrite.Round(time.Millisecond))
	if !ws.waitDone(10, killed.Add(promoted), waitfor.Deadline) {
		t.Fatalf("10 calls begun after the failover did not succeed within %v", waitfor.Deadline)
	}
	writes := ws.finish()
	summarize(t, "calls before the kill", writes, time.Time{}, killed)
	summarize(t, "calls during the failover", writes, killed, killed.Add(promoted))
	summarize(t, "calls after the failover", writes, killed.Add(promoted), time.Now())
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
}

// sentinelPrimary returns the primary's address as the first Sentinel of
// srv that answers names it.
func sentinelPrimary(ctx context.Context, srv servers) (string, error) {
	var errs []error
	for _, addr := range strings.Split(srv.redis, ",") {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, Username: srv.redisLogin.Username, Password: srv.redisLogin.Password})
		hp, err := sc.GetMasterAddrByName(ctx, srv.redisMaster).Result()
		sc.Close()
		if err == nil && len(hp) == 2 {
			return hp[0] + ":" + hp[1], nil
		}
		errs = append(errs, fmt.Errorf("sentinel %s: %v", addr, err))
	}
	return "", errors.Join(errs...)
}

// TestDrillEtcdQuorumLost stops two of the three etcd members (SIGKILL)
// for longer than the lease TTL while clients work, then starts them
// again. Without a quorum etcd answers nothing, so every process loses its
// lease; none exits. What needs no lease keeps working on the endpoints
// already known: reads, follows and the fan-out. What needs one fails
// with UNAVAILABLE: CreatePost (its worker ID may no longer be its own),
// and a new lease or registration. Once the members are back, every
// process takes a new lease and registers again, each post instance
// claims a worker ID, and no post ID is given twice.
func TestDrillEtcdQuorumLost(t *testing.T) {
	const outage = 4 * leaseTTL
	srv := serversHA(t)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report("etcd quorum lost", srv.clusterKind())
	ws := d.startLoad("eq", 2)

	down := []int{2, 3}
	killed := time.Now()
	for _, m := range down {
		runScript(t, "etcd-cluster.sh", "kill", strconv.Itoa(m))
	}
	restarted := false
	restart := func() {
		if !restarted {
			restarted = true
			for _, m := range down {
				runScript(t, "etcd-cluster.sh", "start", strconv.Itoa(m))
			}
		}
	}
	defer restart()

	// A new lease cannot be granted: nothing new can register or claim.
	gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, grantErr := c.Etcd.Grant(gctx, int64(leaseTTL/time.Second))
	cancel()
	if grantErr == nil {
		t.Errorf("etcd granted a lease with two of three members down")
	}
	d.note("with members %v down, a lease grant failed: %v", down, grantErr)

	// Meanwhile the clients keep going; wait out the outage, a few lease
	// TTLs, so that every process has given its lease up.
	time.Sleep(time.Until(killed.Add(outage)))
	back := time.Now()
	restart()
	healthy := time.Since(back)

	// Recovered once every instance is registered again and a post
	// succeeds through discovery.
	waitfor.Until(t, 2*waitfor.Deadline, "every instance registered again", func() (bool, any) {
		var missing []string
		for _, svc := range services {
			eps, err := c.Endpoints(svc)
			if err != nil {
				return false, err
			}
			for _, in := range c.Instances[svc] {
				if !slices.Contains(eps, in.Addr()) {
					missing = append(missing, in.Name)
				}
			}
		}
		return len(missing) == 0, missing
	})
	registered := time.Since(back)
	var posted time.Duration
	waitfor.Until(t, 2*waitfor.Deadline, "a post after the quorum's return", func() (bool, any) {
		_, err := d.post("eq_a000", fmt.Sprintf("eq-after-%d", time.Now().UnixNano()))
		posted = time.Since(back)
		return err == nil, err
	})
	d.recovered(registered, "from starting the two members to every instance registered again")
	d.note("members healthy %v after their start; a post acknowledged %v after it", healthy.Round(time.Millisecond), posted.Round(time.Millisecond))

	var claims []string
	for _, in := range c.Instances["post"] {
		ws, err := in.postWorkers()
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, fmt.Sprintf("%s %v", in.Name, ws))
	}
	d.note("worker IDs claimed by the post instances, in order: %v", claims)

	writes := ws.finish()
	// What worked during the outage, from the calls that began in it.
	worked := map[string]int{}
	failed := map[string]map[codes.Code]int{}
	for _, w := range writes {
		if w.start.Before(killed) || !w.start.Before(back) {
			continue
		}
		kind, _, _ := strings.Cut(w.what, "(")
		for _, err := range w.failed {
			if failed[kind] == nil {
				failed[kind] = map[codes.Code]int{}
			}
			failed[kind][status.Code(err)]++
		}
		if len(w.failed) == 0 {
			worked[kind]++
		}
	}
	d.note("calls begun during the %v outage that succeeded at the first attempt: %v; failed attempts by code: %v", outage, worked, failed)
	if worked["GetHomeTimeline"] == 0 {
		t.Errorf("no timeline read begun during the outage succeeded at once: %v; reads must not need etcd", worked)
	}
	for code := range failed["CreatePost"] {
		if code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("CreatePost failed with %v during the outage; want UNAVAILABLE", code)
		}
	}
	summarize(t, "calls before the outage", writes, time.Time{}, killed)
	summarize(t, "calls during the outage", writes, killed, back)
	summarize(t, "calls after the outage", writes, back, time.Now())
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
}
