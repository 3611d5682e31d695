package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestDrillEtcdSnapshotRestore backs the HA etcd cluster up while clients
// work, lets etcd move on (a post instance restarts: a new lease, a new
// registration and a worker-ID claim that the snapshot lacks), and then
// restores the snapshot into a fresh three-member cluster at the same
// addresses (etcd-cluster.sh snapshot and restore), with the clients still
// working.
//
// The restore turns etcd back to the snapshot's moment: its keys and its
// leases, each lease living one more TTL from the restart. A process whose
// lease is newer than the snapshot would mint on with its worker ID until
// it next heard from etcd, while another could claim that ID at once; one
// whose lease is older but whose keys are newer would keep a lease that
// holds none of them. So the restore keeps etcd down a lease TTL and a
// second (HERALD_ETCD_RESTORE_FENCE): every process's session ends and its
// lease clock lapses, and each takes a new lease, revokes its old one
// (which drops whatever the snapshot still holds under it), claims a worker
// ID again and registers again (node/lease.go). What the snapshot holds
// under the lease of a process that has since gone (the restarted
// instance's first process) stays until that lease expires, one TTL after
// the restart: its worker-ID claim keeps that ID from being claimed
// meanwhile, its registration lists an address nobody serves, and its
// election key holds the relay's election until then.
//
// The drill checks that the services recover: every live instance
// registered again, the outbox relay led by exactly one live post instance,
// each live post instance the holder of a distinct worker-ID key that names
// its process, the IDs each one mints carrying its claim, no post ID given
// twice, and no acknowledged post minted while two processes held its
// worker ID by their own logs. It also notes whether a connection dialled
// before the restore still follows registrations, by restarting a graph
// instance after it: etcd's resolver, which discovery.Dial uses, watches
// once, and its watch cannot resume across the restore (the revision it
// resumes at is compacted, the script bumping the restored revision past
// it), so such a connection keeps the addresses it had. The drill notes
// this rather than fail on it: it is discovery's to fix, by listing again
// when its watch ends.
func TestDrillEtcdSnapshotRestore(t *testing.T) {
	srv := serversHA(t)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report("etcd snapshot restore", srv.clusterKind())
	ws := d.startLoad("sr", 2)

	// The watch of a resolver dialled before the restore, as every
	// connection of the load and of the instances was.
	old := c.watchEndpoints(t, "graph")

	snap := filepath.Join(t.TempDir(), "etcd.snapshot")
	out := scriptOutput(t, nil, "etcd-cluster.sh", "snapshot", snap)
	snapRev := scriptFigure(t, out, snapshotRevRe)
	snapped := time.Now()

	// After the snapshot: etcd moves on without it.
	procs := c.postProcesses()
	restarted := c.Instances["post"][1]
	before, err := restarted.postWorker()
	if err != nil {
		t.Fatal(err)
	}
	restarted.Stop()
	if err := restarted.Start(); err != nil {
		t.Fatalf("restarting %s after the snapshot: %v", restarted.Name, err)
	}
	after, err := restarted.postWorker()
	if err != nil {
		t.Fatal(err)
	}
	now := c.postProcesses()
	for owner, name := range procs {
		if _, ok := now[owner]; !ok {
			procs[owner] = name + "'s process before its restart"
		}
	}
	for owner, name := range now {
		if _, ok := procs[owner]; !ok {
			procs[owner] = name
		}
	}
	if !ws.waitDone(40, snapped, waitfor.Deadline) {
		t.Fatalf("40 calls begun after the snapshot did not succeed within %v", waitfor.Deadline)
	}
	lastRev := c.etcdRevision(t)
	d.note("snapshot at revision %d; %s restarted after it (worker ID %d, then %d); etcd at revision %d when the restore began",
		snapRev, restarted.Name, before, after, lastRev)

	// Connections of the drill's own to each post instance, for the calls
	// that must succeed on each.
	direct := map[string]feedv1.PostServiceClient{}
	for _, in := range c.Instances["post"] {
		conn, err := grpc.NewClient(in.Addr(), c.DialOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		direct[in.Name] = feedv1.NewPostServiceClient(conn)
	}

	// The fence keeps etcd down one lease TTL (and a second), so that every
	// process's lease has lapsed by its own clock before etcd answers again.
	// The drill's copy of the data is worth nothing: no need to keep it.
	fence := int(leaseTTL/time.Second) + 1
	env := []string{"HERALD_ETCD_RESTORE_KEEP=0", fmt.Sprintf("HERALD_ETCD_RESTORE_FENCE=%d", fence)}
	restored := false
	defer func() {
		if !restored {
			runScript(t, "etcd-cluster.sh", "start") // a restore that failed half-way
		}
	}()
	began := time.Now()
	out = scriptOutput(t, env, "etcd-cluster.sh", "restore", snap)
	restored = true
	restoredRev := scriptFigure(t, out, restoredRevRe)
	back := time.Now()
	d.note("restored at revision %d (snapshot revision plus the script's bump); etcd down for at most %d ms by the script, which returned %v after it began",
		restoredRev, scriptFigure(t, out, downRe), back.Sub(began).Round(time.Millisecond))

	// Recovery: every instance registered again, and a CreatePost on each
	// post instance. Each instance's call keeps its idempotency key until
	// it succeeds, so an attempt that timed out after the write is not a
	// second post.
	snapshotClaims := map[int]string{}
	posted := map[string]feed.PostID{}
	waitfor.Until(t, 2*waitfor.Deadline, "every instance registered again and a CreatePost on each post instance", func() (bool, any) {
		if keys, err := c.workerKeys(); err == nil {
			for id, k := range keys {
				if k.rev <= restoredRev {
					snapshotClaims[id] = procs[k.owner]
				}
			}
		}
		if missing := c.unregistered(restoredRev, began); len(missing) > 0 {
			return false, "not registered again: " + strings.Join(missing, "; ")
		}
		for _, in := range c.Instances["post"] {
			if posted[in.Name] != 0 {
				continue
			}
			key := "sr-direct-" + in.Name + "-1"
			ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
			id, err := createPost(ctx, direct[in.Name], key)
			cancel()
			if err != nil {
				return false, fmt.Sprintf("CreatePost on %s: %v", in.Name, err)
			}
			d.acked(uint64(id), directAuthor, key)
			posted[in.Name] = id
		}
		return true, nil
	})
	recovered := time.Now()
	d.recovered(recovered.Sub(began), "from the start of `etcd-cluster.sh restore` to every live instance registered again (its key written after the restore, or kept under a lease it never lost) and a CreatePost succeeding on each post instance")
	// With the fence, no process keeps a lease through the restore: each
	// takes a new one, so none keeps a lease whose keys the restore undid.
	var kept []string
	for _, svc := range services {
		for _, in := range c.Instances[svc] {
			if !in.leaseLostSince(began) {
				kept = append(kept, in.Name)
			}
		}
	}
	if len(kept) > 0 {
		t.Errorf("%v kept their etcd lease through a restore whose fence kept etcd down %d s, longer than the lease TTL %v", kept, fence, leaseTTL)
	}
	d.note("every process lost its etcd lease in the restore (fence %d s) and took a new one; worker-ID keys of the snapshot seen after it: %v", fence, snapshotClaims)

	// Elections: the relay's election names one live post instance, and
	// it is the only one whose log says it leads (elected, and no lease
	// lost since).
	var leader *Instance
	waitfor.Until(t, leaseMargin+waitfor.Deadline, "one outbox relay leader, a live post instance that alone believes it leads", func() (bool, any) {
		l, err := c.relayLeader()
		if err != nil || l == nil {
			return false, fmt.Sprint("election: ", l, err)
		}
		believers := c.relayBelievers()
		if len(believers) != 1 || believers[0] != l.Name {
			return false, fmt.Sprintf("etcd names %s; leading by their logs: %v", l.Name, believers)
		}
		leader = l
		return true, nil
	})
	d.note("relay leader %s, %v after the restore began", leader.Name, time.Since(began).Round(time.Millisecond))

	// Worker IDs: once the snapshot's leases of gone processes expire, the
	// worker-ID keys are exactly the live post instances' current claims,
	// each naming its process.
	claims := c.waitWorkerClaims(t, leaseMargin+waitfor.Deadline)
	for _, in := range c.Instances["post"] {
		key := "sr-direct-" + in.Name + "-2"
		var id feed.PostID
		w := d.newWrite(fmt.Sprintf("CreatePost(%s, key %s) on %s", directAuthor, key, in.Name))
		if err := retry(w, func(ctx context.Context) (err error) {
			id, err = createPost(ctx, direct[in.Name], key)
			return err
		}); err != nil {
			t.Fatalf("on %s after the restore: %v", in.Name, err)
		}
		d.acked(uint64(id), directAuthor, key)
		if w := idgen.Worker(id); w != claims[in.Name] {
			t.Errorf("%s minted post %d with worker ID %d; want %d, its claim in etcd", in.Name, id, w, claims[in.Name])
		}
	}
	d.note("worker IDs after the restore: %v", claims)

	// Watches: an instance that restarts after the restore, at a new
	// address. A fresh look at etcd finds it (Start waits for that); a
	// watch from before the restore may not.
	moved := c.Instances["graph"][1]
	moved.Stop()
	if err := moved.Start(); err != nil {
		t.Fatalf("restarting %s after the restore: %v", moved.Name, err)
	}
	fresh := c.watchEndpoints(t, "graph")
	if !waitfor.True(waitfor.Deadline, 50*time.Millisecond, func() bool { return slices.Contains(fresh.addrs(), moved.Addr()) }) {
		t.Errorf("a watch opened after the restore does not see %s at %s: %v", moved.Name, moved.Addr(), fresh.addrs())
	}
	// The load's graph connection, dialled before the restore: round-robin
	// sends some of its calls to the new address once its resolver has it
	// (discovery's resolver lists and watches again when a watch ends).
	reached := waitfor.True(10*time.Second, 50*time.Millisecond, func() bool {
		var p peer.Peer
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		defer cancel()
		_, err := d.api.Graph.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: "sr_f000"}, grpc.Peer(&p))
		return err == nil && p.Addr != nil && p.Addr.String() == moved.Addr()
	})
	ended, at, reason := old.end()
	watch := "an endpoints watch opened before the restore is still open"
	if ended {
		watch = fmt.Sprintf("an endpoints watch opened before the restore (etcd's resolver's) ended %v after the restore began (%s)", at.Sub(began).Round(time.Millisecond), reason)
	}
	if reached {
		d.note("discovery: a connection dialled before the restore reached %s at its new address after the restore; %s", moved.Name, watch)
	} else {
		t.Errorf("a connection dialled before the restore sent no call to %s at its new address within 10 s of its restart after the restore: its resolver follows registrations no more; %s", moved.Name, watch)
	}

	if !ws.waitDone(10, recovered, waitfor.Deadline) {
		t.Fatalf("10 calls begun after the recovery did not succeed within %v", waitfor.Deadline)
	}
	writes := ws.finish()
	summarize(t, "calls before the snapshot", writes, time.Time{}, snapped)
	summarize(t, "calls between the snapshot and the restore", writes, snapped, began)
	summarize(t, "calls during the restore and the recovery", writes, began, recovered)
	summarize(t, "calls after the recovery", writes, recovered, time.Now())
	c.checkMintedUnderClaims(t, d)
	d.check(2 * waitfor.Deadline)
	c.CheckAlive(t)
}

// postProcesses names the running post processes by the owner their
// worker-ID keys carry (host/pid).
func (c *Cluster) postProcesses() map[string]string {
	host, _ := os.Hostname()
	out := map[string]string{}
	for _, in := range c.Instances["post"] {
		out[fmt.Sprintf("%s/%d", host, in.PID())] = in.Name
	}
	return out
}

// directAuthor writes the drill's posts to single post instances.
const directAuthor = "sr_direct"

// createPost creates a post through one instance's connection.
func createPost(ctx context.Context, post feedv1.PostServiceClient, key string) (feed.PostID, error) {
	resp, err := post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: directAuthor, Text: "restore drill " + key, IdempotencyKey: key})
	if err != nil {
		return 0, err
	}
	return feed.ParsePostID(resp.GetPost().GetPostId())
}

// The figures the drill reads in etcd-cluster.sh's output.
var (
	snapshotRevRe = regexp.MustCompile(`revision (\d+), \d+ keys`)
	restoredRevRe = regexp.MustCompile(`restored from .* at revision (\d+) `)
	downRe        = regexp.MustCompile(`down for at most (\d+) ms`)
)

// scriptFigure returns the number that re's group matches in a script's
// output, failing t if there is none.
func scriptFigure(t testing.TB, out string, re *regexp.Regexp) int64 {
	t.Helper()
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the script's output has no %s:\n%s", re, out)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		t.Fatalf("the script's output: %s: %v", re, err)
	}
	return n
}

// etcdRevision returns the cluster's etcd revision.
func (c *Cluster) etcdRevision(t testing.TB) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Etcd.Get(ctx, c.NS+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("etcd revision: %v", err)
	}
	return resp.Header.Revision
}

// unregistered names the instances that are not registered again after a
// restore to revision rev that began at since: their key is missing, or it
// is the snapshot's (written at or before rev) under a lease the process
// has lost since, which etcd expires within a TTL. A key the snapshot holds
// under a lease its process never lost is a live registration.
func (c *Cluster) unregistered(rev int64, since time.Time) []string {
	var missing []string
	for _, svc := range services {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.Etcd.Get(ctx, c.NS+"/"+svc+"/", clientv3.WithPrefix())
		cancel()
		if err != nil {
			return []string{fmt.Sprintf("listing %s: %v", svc, err)}
		}
		written := map[string]int64{}
		for _, kv := range resp.Kvs {
			written[string(kv.Key)] = kv.ModRevision
		}
		for _, in := range c.Instances[svc] {
			r, ok := written[c.NS+"/"+svc+"/"+in.Addr()]
			switch {
			case !ok:
				missing = append(missing, in.Name+": no key")
			case r <= rev && in.leaseLostSince(since):
				missing = append(missing, in.Name+": only the snapshot's key, under a lease it lost")
			}
		}
	}
	return missing
}

// workerKey is a worker-ID claim in etcd.
type workerKey struct {
	owner string // host/pid of the process that claimed it
	rev   int64  // written at
	lease clientv3.LeaseID
}

// workerKeys returns the cluster's worker-ID claims, by ID.
func (c *Cluster) workerKeys() (map[int]workerKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	prefix := c.NS + "/workers/"
	resp, err := c.Etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[int]workerKey{}
	for _, kv := range resp.Kvs {
		id, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), prefix))
		if err != nil {
			return nil, fmt.Errorf("worker-ID key %s: %w", kv.Key, err)
		}
		out[id] = workerKey{owner: string(kv.Value), rev: kv.ModRevision, lease: clientv3.LeaseID(kv.Lease)}
	}
	return out, nil
}

// waitWorkerClaims waits up to d until the worker-ID keys in etcd are
// exactly the live post instances' current claims (the last each logged),
// each key naming its instance's process, and returns the claims by
// instance name. Two instances whose last claims are the same ID fail t.
func (c *Cluster) waitWorkerClaims(t testing.TB, d time.Duration) map[string]int {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]int{}
	waitfor.Until(t, d, "the worker-ID keys to be the live post instances' claims, each naming its process", func() (bool, any) {
		keys, err := c.workerKeys()
		if err != nil {
			return false, err
		}
		clear(claims)
		var wrong []string
		for _, in := range c.Instances["post"] {
			ws, err := in.postWorkers()
			if err != nil {
				return false, err
			}
			cur := ws[len(ws)-1]
			claims[in.Name] = cur
			if want := fmt.Sprintf("%s/%d", host, in.PID()); keys[cur].owner != want {
				wrong = append(wrong, fmt.Sprintf("%s claims %d, whose key names %q, not %q", in.Name, cur, keys[cur].owner, want))
			}
		}
		if len(wrong) > 0 || len(keys) != len(claims) {
			return false, fmt.Sprintf("claims %v, keys %v %v", claims, keys, wrong)
		}
		return true, nil
	})
	seen := map[int]string{}
	for name, w := range claims {
		if other, ok := seen[w]; ok {
			t.Errorf("%s and %s both claim worker ID %d", other, name, w)
		}
		seen[w] = name
	}
	return claims
}

// leaseLostSince reports whether the instance's current process logged
// the loss of its etcd lease at or after since.
func (in *Instance) leaseLostSince(since time.Time) bool {
	for _, e := range in.logEvents() {
		if e.what == leaseLostEvent && !e.at.Before(since) {
			return true
		}
	}
	return false
}

// relayBelievers names the post instances whose current process, by its
// log, leads the outbox relay: it was elected, and has lost no lease
// since (a leader stops leading only when its lease goes, or it stops).
func (c *Cluster) relayBelievers() []string {
	var out []string
	for _, in := range c.Instances["post"] {
		leads := false
		for _, e := range in.logEvents() {
			switch e.what {
			case electedEvent:
				leads = true
			case leaseLostEvent:
				leads = false
			}
		}
		if leads {
			out = append(out, in.Name)
		}
	}
	return out
}

// A logEvent is a line of a process's log that the drill reads.
type logEvent struct {
	at     time.Time
	what   string
	worker int // of a claimEvent
}

const (
	claimEvent     = "claim"      // a worker ID claimed under a new lease
	leaseLostEvent = "lease lost" // the lease went: no minting until the next claim
	electedEvent   = "elected"    // the outbox relay's election won
)

// The log lines of those events (the claim's is postWorkerRe), and the
// time of any line.
var (
	logTimeRe = regexp.MustCompile(`^time=(\S+) `)
	electedRe = regexp.MustCompile(`msg=elected .*\bjob=outbox-relay\b`)
	lostRe    = regexp.MustCompile(`msg="etcd lease lost`)
)

// logEvents returns the events of the instance's current process's log.
func (in *Instance) logEvents() []logEvent {
	in.mu.Lock()
	path := in.log
	in.mu.Unlock()
	events, _, _ := readLogEvents(path)
	return events
}

// readLogEvents reads a process's log: its events, and the time of its
// last line.
func readLogEvents(path string) ([]logEvent, time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	var out []logEvent
	var last time.Time
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := logTimeRe.FindStringSubmatch(line)
		if m == nil {
			continue // the Redis client's own lines
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		last = at
		switch {
		case lostRe.MatchString(line):
			out = append(out, logEvent{at: at, what: leaseLostEvent})
		case electedRe.MatchString(line):
			out = append(out, logEvent{at: at, what: electedEvent})
		default:
			if w := postWorkerRe.FindStringSubmatch(line); w != nil {
				id, _ := strconv.Atoi(w[1])
				out = append(out, logEvent{at: at, what: claimEvent, worker: id})
			}
		}
	}
	return out, last, sc.Err()
}

// workerHold is one post process's hold of a worker ID, by its log: from
// the claim to the loss of the lease (after which it mints no ID until
// its next claim), or to its log's last line once it exited.
type workerHold struct {
	log      string
	worker   int
	from, to time.Time // to is zero while the process runs and holds it
}

// workerHolds reads every post process's worker-ID holds from the logs
// of the cluster's post instances, past and present.
func (c *Cluster) workerHolds() ([]workerHold, error) {
	running := map[string]bool{}
	for _, in := range c.Instances["post"] {
		in.mu.Lock()
		if in.cmd != nil && in.exited != nil {
			select {
			case <-in.exited:
			default:
				running[in.log] = true
			}
		}
		in.mu.Unlock()
	}
	paths, err := filepath.Glob(filepath.Join(c.dir, "post-*.log"))
	if err != nil {
		return nil, err
	}
	var out []workerHold
	for _, p := range paths {
		events, last, err := readLogEvents(p)
		if err != nil {
			return nil, err
		}
		var cur *workerHold
		for _, e := range events {
			switch e.what {
			case claimEvent:
				if cur != nil { // a claim always follows a loss; close it anyway
					cur.to = e.at
					out = append(out, *cur)
				}
				cur = &workerHold{log: filepath.Base(p), worker: e.worker, from: e.at}
			case leaseLostEvent:
				if cur != nil {
					cur.to = e.at
					out = append(out, *cur)
					cur = nil
				}
			}
		}
		if cur != nil {
			if !running[p] {
				cur.to = last
			}
			out = append(out, *cur)
		}
	}
	return out, nil
}

// holdSlack is how far outside a hold's logged bounds its process may mint:
// the claim is logged just after the generator takes over, the loss just
// after the session ends, and both the log and the ID count milliseconds.
const holdSlack = 2 * time.Millisecond

// covers reports whether the process held h's worker ID at at.
func (h workerHold) covers(at time.Time) bool {
	return !at.Before(h.from.Add(-holdSlack)) && (h.to.IsZero() || !at.After(h.to.Add(holdSlack)))
}

func (h workerHold) String() string {
	to := "on"
	if !h.to.IsZero() {
		to = h.to.Format("15:04:05.000")
	}
	return fmt.Sprintf("%s worker %d %s-%s", h.log, h.worker, h.from.Format("15:04:05.000"), to)
}

// checkMintedUnderClaims fails t for an acknowledged post whose worker ID
// no post process held when the ID was minted (its time field), or two
// did: then two processes could mint the same IDs.
func (c *Cluster) checkMintedUnderClaims(t testing.TB, d *drill) {
	t.Helper()
	holds, err := c.workerHolds()
	if err != nil {
		t.Fatalf("reading the post instances' worker-ID holds: %v", err)
	}
	d.mu.Lock()
	ids := make([]uint64, 0, len(d.keys))
	for id := range d.keys {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	slices.Sort(ids)
	byWorker := map[int]int{}
	bad := 0
	for _, raw := range ids {
		id := feed.PostID(raw)
		w, at := idgen.Worker(id), idgen.Time(id)
		var by []workerHold
		for _, h := range holds {
			if h.worker == w && h.covers(at) {
				by = append(by, h)
			}
		}
		switch {
		case len(by) == 1:
			byWorker[w]++
			continue
		case len(by) == 0:
			t.Errorf("post %d carries worker ID %d, which no post process held when it was minted (%s)", id, w, at.Format(time.RFC3339Nano))
		default:
			t.Errorf("post %d (worker ID %d, minted %s) falls in the holds of %d processes: %v", id, w, at.Format(time.RFC3339Nano), len(by), by)
		}
		if bad++; bad >= 10 {
			t.Errorf("(and perhaps more: stopped at 10)")
			break
		}
	}
	var lines []string
	for _, h := range holds {
		lines = append(lines, h.String())
	}
	t.Logf("worker-ID holds by the post processes' logs:\n%s\nacknowledged posts by worker ID: %v", strings.Join(lines, "\n"), byWorker)
}

// endpointWatch follows a service's registrations the way discovery's
// resolver does (endpoints.Manager's watch channel), and, beside it, a
// plain watch of the same keys that keeps the error the manager's watch
// only logs.
type endpointWatch struct {
	mu     sync.Mutex
	seen   map[string]string // key → address
	ended  bool
	at     time.Time
	reason string
}

// watchEndpoints starts an endpointWatch of service on the cluster's etcd
// client; it stops at cleanup.
func (c *Cluster) watchEndpoints(t testing.TB, service string) *endpointWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	target := c.NS + "/" + service
	em, err := endpoints.NewManager(c.Etcd, target)
	if err != nil {
		t.Fatal(err)
	}
	// The watch lives as long as NewWatchChannel's context: ctx, not a
	// shorter one for its first list.
	ups, err := em.NewWatchChannel(ctx)
	if err != nil {
		t.Fatalf("watching %s's endpoints: %v", service, err)
	}
	w := &endpointWatch{seen: map[string]string{}, reason: "no error"}
	raw := c.Etcd.Watch(ctx, target+"/", clientv3.WithPrefix())
	go func() {
		for resp := range raw {
			if err := resp.Err(); err != nil {
				w.mu.Lock()
				w.reason = err.Error()
				w.mu.Unlock()
			}
		}
	}()
	go func() {
		for batch := range ups {
			w.mu.Lock()
			for _, u := range batch {
				switch u.Op {
				case endpoints.Add:
					w.seen[u.Key] = u.Endpoint.Addr
				case endpoints.Delete:
					delete(w.seen, u.Key)
				}
			}
			w.mu.Unlock()
		}
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.ended, w.at = true, time.Now()
		w.mu.Unlock()
	}()
	return w
}

// addrs returns the addresses the watch has seen registered.
func (w *endpointWatch) addrs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, a := range w.seen {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// end reports whether the watch ended (as the resolver's does for good),
// when, and the plain watch's last error.
func (w *endpointWatch) end() (bool, time.Time, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ended, w.at, w.reason
}
