package clustertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// The drill on the HA cluster with its event log on Kafka: three brokers
// (deploy/local/kafka-cluster.sh), each topic with three replicas of which
// two must have a write.

// serversHAKafka is serversHA with the cluster's event log on the three
// Kafka brokers of deploy/local/kafka-cluster.sh, started or reused, and
// its topics created with three replicas. The brokers take the single
// broker's login (HERALD_KAFKA_USER, HERALD_KAFKA_PASSWORD_FILE).
func serversHAKafka(t testing.TB) servers {
	t.Helper()
	s := serversHA(t)
	s.kafka = strings.Split(scriptEnv(t, "kafka-cluster.sh", "HERALD_KAFKA_BROKERS"), ",")
	s.kafkaReplicas = 3
	runScript(t, "kafka-cluster.sh", "start")
	return s
}

// kafkaEventTopics are the topics the cluster's events go through
// (kafkabus): posts, follows and fan-out chunks. The dead letters' topic
// is left out: nothing is dead-lettered in a drill.
func (c *Cluster) kafkaEventTopics() []string {
	return []string{c.NS + ".post", c.NS + ".graph", c.NS + ".fanout"}
}

// kafkaPartitions returns the partitions of the cluster's event topics, by
// "topic/partition", as the metadata of whichever broker answers says.
func (c *Cluster) kafkaPartitions(adm *kadm.Client) (map[string]kadm.PartitionDetail, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	topics := c.kafkaEventTopics()
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return nil, err
	}
	out := map[string]kadm.PartitionDetail{}
	for _, topic := range topics {
		td, ok := md.Topics[topic]
		if !ok || td.Err != nil {
			return nil, fmt.Errorf("metadata of topic %s: %v", topic, td.Err)
		}
		for _, p := range td.Partitions {
			out[fmt.Sprintf("%s/%d", topic, p.Partition)] = p
		}
	}
	return out, nil
}

// quorumLeader returns the node that leads the controller quorum (the
// active controller), by DescribeQuorum, which a broker forwards to it.
func quorumLeader(cl *kgo.Client) (int32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrDescribeQuorumRequest()
	topic := kmsg.NewDescribeQuorumRequestTopic()
	topic.Topic = "__cluster_metadata"
	topic.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{kmsg.NewDescribeQuorumRequestTopicPartition()}
	req.Topics = append(req.Topics, topic)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return -1, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return -1, err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return -1, fmt.Errorf("DescribeQuorum answered %d topics; want __cluster_metadata's one partition", len(resp.Topics))
	}
	p := resp.Topics[0].Partitions[0]
	return p.LeaderID, kerr.ErrorForCode(p.ErrorCode)
}

// leaderCounts returns how many of the partitions each broker leads (-1:
// partitions without a leader).
func leaderCounts(ps map[string]kadm.PartitionDetail) map[int32]int {
	out := map[int32]int{}
	for _, p := range ps {
		out[p.Leader]++
	}
	return out
}

// notInSync lists the partitions whose leader or in-sync replicas fall
// short of every replica, with what they have.
func notInSync(ps map[string]kadm.PartitionDetail) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(ps)) {
		p := ps[k]
		if p.Err != nil || p.Leader < 0 || len(p.ISR) != len(p.Replicas) {
			out = append(out, fmt.Sprintf("%s leader %d replicas %v in sync %v err %v", k, p.Leader, p.Replicas, p.ISR, p.Err))
		}
	}
	return out
}

// mostLeading returns the broker that leads the most partitions; of
// brokers leading as many, prefer, then the lowest node ID.
func mostLeading(counts map[int32]int, prefer int32) int32 {
	best := int32(-1)
	for _, id := range slices.Sorted(maps.Keys(counts)) {
		if id < 0 {
			continue
		}
		if best < 0 || counts[id] > counts[best] || (counts[id] == counts[best] && id == prefer) {
			best = id
		}
	}
	return best
}

// refused reports whether addr refuses TCP connections: a broker's
// process is gone (not merely slow, which the kernel's accept queue hides).
func refused(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// kafkaFailover is how the event topics' partitions came through a
// broker's death, timed from it.
type kafkaFailover struct {
	// led: every partition led by a live broker; shrunk: no in-sync
	// replica set names the dead broker any more, so that writes needing
	// two in-sync replicas no longer wait for it.
	led, shrunk time.Duration
	gap         time.Duration // the longest time between two polls: the figures' precision
	after       map[int32]int // partitions led by each broker, once all led
	err         error
}

// pollFailover polls the event topics' metadata from down on, for up to
// limit, until every partition is led by a live broker and no in-sync set
// names victim. It needs no testing.T, so that it runs beside the kill.
func (c *Cluster) pollFailover(adm *kadm.Client, victim int32, down time.Time, limit time.Duration) kafkaFailover {
	var f kafkaFailover
	last := down
	var seen any
	ok := waitfor.True(limit, 50*time.Millisecond, func() bool {
		ps, err := c.kafkaPartitions(adm)
		now := time.Now()
		f.gap, last = max(f.gap, now.Sub(last)), now
		if err != nil {
			seen = err
			return false
		}
		led, shrunk := true, true
		for _, p := range ps {
			led = led && p.Err == nil && p.Leader >= 0 && p.Leader != victim
			shrunk = shrunk && !slices.Contains(p.ISR, victim)
		}
		if led && f.led == 0 {
			f.led, f.after = now.Sub(down), leaderCounts(ps)
		}
		if shrunk && f.shrunk == 0 {
			f.shrunk = now.Sub(down)
		}
		seen = leaderCounts(ps)
		return f.led != 0 && f.shrunk != 0
	})
	if !ok {
		f.err = fmt.Errorf("%v after broker %d died: every partition led by a live broker after %v, its in-sync sets without it after %v (0: not yet); last saw %v",
			limit, victim, f.led, f.shrunk, seen)
	}
	return f
}

// eventProbe is one post's way through the event log: from a start, how
// long until it was acknowledged and until a follower's timeline had it.
type eventProbe struct {
	acked, seen time.Duration
	err         error
}

// probeEvent posts as author under key (recorded like every drill post),
// then polls follower's home timeline for up to limit until it holds the
// post; the figures are from since. It needs no testing.T.
func (d *drill) probeEvent(author, follower, key string, since time.Time, limit time.Duration) eventProbe {
	w, err := d.post(author, key)
	if err != nil {
		return eventProbe{err: err}
	}
	p := eventProbe{acked: time.Since(since)}
	id := strconv.FormatUint(w.post, 10)
	var seen any
	if !waitfor.True(limit, 50*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		defer cancel()
		resp, err := d.api.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: follower})
		if err != nil {
			seen = err
			return false
		}
		ids := systemtest.IDs(resp.GetPosts())
		seen = ids
		return slices.Contains(ids, id)
	}) {
		p.err = fmt.Errorf("post %s by %s (key %s), acknowledged %v in, not in %s's home timeline %v later; last saw %v",
			id, author, key, p.acked.Round(time.Millisecond), follower, limit, seen)
		return p
	}
	p.seen = time.Since(since)
	return p
}

// TestDrillKafkaBrokerKilled kills -9 the Kafka broker that leads the most
// partitions of the cluster's event topics while clients work. The
// controller fences it once its heartbeats stop, moves its partitions'
// leadership to the two brokers left and drops it from every in-sync
// set: writes, which need two in-sync replicas, then go on. If it also led
// the controller quorum, the quorum elects a new leader first. The
// figures: the pause until every partition has a live leader (by
// metadata), and how long a post begun after the kill took to reach a
// follower's timeline. No acknowledged post is lost.
func TestDrillKafkaBrokerKilled(t *testing.T) {
	srv := serversHAKafka(t)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report("Kafka broker killed", srv.clusterKind())
	user, password := testenv.KafkaAuth(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.kafka...), kgo.SASL(plain.Auth{User: user, Pass: password}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)

	// A post by probeAuthor reaches probeFollower's cached timeline through
	// the event log: CreatePost (or, if its publish times out, the outbox
	// relay) publishes post.created, and the fan-out consumes it and
	// writes the active follower's timeline. (A timeline missing from the
	// cache is rebuilt from the store, which has the post at once: then the
	// figure is early.)
	const probeAuthor, probeFollower = "kb_probe", "kb_probe_f"
	if _, err := d.follow(probeFollower, probeAuthor); err != nil {
		t.Fatal(err)
	}
	if _, err := d.read(probeFollower); err != nil {
		t.Fatal(err)
	}
	ws := d.startLoad("kb", 2)
	before := d.probeEvent(probeAuthor, probeFollower, "kb-probe-before", time.Now(), waitfor.Deadline)
	if before.err != nil {
		t.Fatal(before.err)
	}

	var ps map[string]kadm.PartitionDetail
	waitfor.Until(t, waitfor.Deadline, "every partition of the event topics led, all its replicas in sync", func() (bool, any) {
		var err error
		if ps, err = c.kafkaPartitions(adm); err != nil {
			return false, err
		}
		short := notInSync(ps)
		return len(short) == 0, short
	})
	for k, p := range ps {
		if len(p.Replicas) != srv.kafkaReplicas {
			t.Fatalf("partition %s has replicas %v; want %d (-kafka-replication-factor)", k, p.Replicas, srv.kafkaReplicas)
		}
	}
	group := c.NS + ".fanout"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	coord := adm.FindGroupCoordinators(ctx, group)[group]
	cancel()
	coordinator := fmt.Sprint(coord.NodeID)
	if coord.Err != nil {
		coord.NodeID, coordinator = -1, fmt.Sprintf("unknown (%v)", coord.Err)
	}
	leaders := leaderCounts(ps)
	// Node IDs are kafka-cluster.sh's node numbers (node.id=N).
	victim := mostLeading(leaders, coord.NodeID)
	controller, cerr := quorumLeader(cl)
	if cerr != nil {
		t.Logf("the controller quorum's leader: %v", cerr)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	brokers, err := adm.ListBrokers(ctx)
	cancel()
	if err != nil {
		t.Fatalf("listing the Kafka brokers: %v", err)
	}
	i := slices.IndexFunc(brokers, func(b kadm.BrokerDetail) bool { return b.NodeID == victim })
	if i < 0 {
		t.Fatalf("broker %d is not among the brokers %v", victim, brokers)
	}
	addr := net.JoinHostPort(brokers[i].Host, strconv.Itoa(int(brokers[i].Port)))
	d.note("%d partitions of the post, graph and fanout topics, leaders (broker: partitions) %v; the fan-out group's coordinator: broker %s; the controller quorum's leader: broker %d; killing broker %d (%s)",
		len(ps), leaders, coordinator, controller, victim, addr)
	if victim == controller {
		d.note("the killed broker led the controller quorum: the pause includes the quorum's election, and the new controller gives the dead broker a full session timeout before it fences it")
	}
	d.note("before the kill a post reached a follower's timeline in %v (acknowledged in %v)", before.seen.Round(time.Millisecond), before.acked.Round(time.Millisecond))

	// The watch runs beside the kill: kafka-cluster.sh returns only once
	// the controller quorum has a leader again, which may take longer
	// than some of what it measures. The clock starts when the broker's
	// port refuses connections: its process is gone.
	type watch struct {
		down     time.Time
		failover kafkaFailover
		probe    eventProbe
		err      error
	}
	done := make(chan watch, 1)
	go func() {
		var w watch
		if !waitfor.True(time.Minute, 5*time.Millisecond, func() bool { return refused(addr) }) {
			w.err = fmt.Errorf("broker %d at %s still takes connections a minute after its kill", victim, addr)
			done <- w
			return
		}
		w.down = time.Now()
		probe := make(chan eventProbe, 1)
		go func() { probe <- d.probeEvent(probeAuthor, probeFollower, "kb-probe-after", w.down, 2*writeBudget) }()
		w.failover = c.pollFailover(adm, victim, w.down, time.Minute)
		w.probe = <-probe
		done <- w
	}()
	runScript(t, "kafka-cluster.sh", "kill", strconv.Itoa(int(victim)))
	restart := func() { runScript(t, "kafka-cluster.sh", "start", strconv.Itoa(int(victim))) }
	defer func() {
		if restart != nil {
			restart()
		}
	}()
	var w watch
	select {
	case w = <-done:
	case <-time.After(4 * time.Minute): // the watch's own bounds add up to less
		t.Fatalf("the watch of broker %d's death did not end", victim)
	}
	for _, err := range []error{w.err, w.failover.err, w.probe.err} {
		if err != nil {
			t.Fatal(err)
		}
	}
	f := w.failover
	d.recovered(f.led, "from the SIGKILL of the broker leading the most partitions (its port refusing connections) to every partition of the event topics led by a live broker, by metadata")
	d.note("in-sync sets without the dead broker after %v; leaders then %v; metadata polled at most %v apart",
		f.shrunk.Round(time.Millisecond), f.after, f.gap.Round(time.Millisecond))
	d.note("the first event handled after the kill: a post begun after it, acknowledged after %v, in a follower's timeline after %v",
		w.probe.acked.Round(time.Millisecond), w.probe.seen.Round(time.Millisecond))

	recovered := w.down.Add(f.led)
	if !ws.waitDone(10, recovered, waitfor.Deadline) {
		t.Fatalf("10 calls begun after every partition had a leader did not succeed within %v", waitfor.Deadline)
	}
	writes := ws.finish()
	summarize(t, "calls before the kill", writes, time.Time{}, w.down)
	summarize(t, "calls during the election", writes, w.down, recovered)
	summarize(t, "calls after the election", writes, recovered, time.Now())
	d.note("outbox relay republished %d posts", d.logRelay())

	began := time.Now()
	restart()
	restart = nil
	serving := time.Since(began)
	waitfor.Until(t, 2*waitfor.Deadline, "the restarted broker back in every in-sync set", func() (bool, any) {
		var err error
		if ps, err = c.kafkaPartitions(adm); err != nil {
			return false, err
		}
		short := notInSync(ps)
		return len(short) == 0, short
	})
	d.note("broker %d restarted: serving %v after its start, in every in-sync set after %v; leaders then %v (leadership moves back at Kafka's next preferred-leader check)",
		victim, serving.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), leaderCounts(ps))
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
}

func TestMostLeading(t *testing.T) {
	for _, tc := range []struct {
		counts map[int32]int
		prefer int32
		want   int32
	}{
		{map[int32]int{1: 5, 2: 7, 3: 6}, 3, 2},
		{map[int32]int{1: 6, 2: 6, 3: 6}, 2, 2},
		{map[int32]int{1: 6, 2: 6, 3: 6}, -1, 1},
		{map[int32]int{-1: 9, 2: 4, 3: 4}, 1, 2},
		{map[int32]int{}, 1, -1},
	} {
		if got := mostLeading(tc.counts, tc.prefer); got != tc.want {
			t.Errorf("mostLeading(%v, %d) = %d; want %d", tc.counts, tc.prefer, got, tc.want)
		}
	}
}
