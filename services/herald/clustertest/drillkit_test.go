package clustertest

import (
	"context"
	"errors"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/herald/modelcheck"
	"github.com/herald-feed/herald/services/herald/systemtest"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

const (
	// attemptTimeout is the deadline of each attempt of a drill's write:
	// shorter than the NATS outages, so that an attempt caught by one
	// fails and the client retries, as a real client would.
	attemptTimeout = 2 * time.Second
	// writeBudget bounds the retries of one write: long enough to ride out
	// a NATS restart or outage.
	writeBudget = 30 * time.Second
)

// drill drives a cluster through a crash drill and records every write
// that succeeded in a model, which the check compares the timelines with.
type drill struct {
	t   *testing.T
	c   *Cluster
	api *systemtest.Client

	mu     sync.Mutex
	model  *modelcheck.Model
	users  []string            // every user the check reads
	writes []*write            // every call the drill made through retry, reads included
	keys   map[uint64][]string // acknowledged post IDs, with the idempotency keys that got each

	// row is the drill's line in the suite's table (drillreport_test.go),
	// or nil if the test reports none.
	row *drillResult
}

func newDrill(t *testing.T, c *Cluster) *drill {
	return &drill{t: t, c: c, api: c.Client(t), model: modelcheck.NewModel(modelcheck.DefaultCap), keys: map[uint64][]string{}}
}

// write is one logical write of a drill, retried until it succeeded.
type write struct {
	what       string
	start, end time.Time // first attempt began; last attempt ended
	failed     []error   // the attempts that failed, in order
	spans      []span    // when each failed attempt ran
	err        error     // why the write failed for good, or nil
	post       uint64    // a post's ID
}

// span is when something began and ended.
type span struct{ from, to time.Time }

func (w *write) String() string {
	return fmt.Sprintf("%s: %d failed attempts in %v", w.what, len(w.failed), w.end.Sub(w.start).Round(time.Millisecond))
}

// retry runs fn through systemtest.Retry, each attempt under
// attemptTimeout, for up to writeBudget, and records the attempts in w.
// Retrying is safe for the drills' writes: a post carries an idempotency
// key, and follows are idempotent.
func retry(w *write, fn func(ctx context.Context) error) (err error) {
	w.start = time.Now()
	defer func() { w.end, w.err = time.Now(), err }()
	var began time.Time
	err = systemtest.Retry(writeBudget, attemptTimeout, func(ctx context.Context, _ int) error {
		began = time.Now()
		return fn(ctx)
	}, func(err error) {
		w.failed = append(w.failed, err)
		w.spans = append(w.spans, span{began, time.Now()})
	})
	if err != nil {
		return fmt.Errorf("%s: %d failed attempts: %w", w.what, len(w.failed), err)
	}
	return nil
}

// addUsers adds users to those the check reads.
func (d *drill) addUsers(users ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range users {
		if !slices.Contains(d.users, u) {
			d.users = append(d.users, u)
		}
	}
}

// follow makes follower follow followee, retrying, and records it.
func (d *drill) follow(follower, followee string) (*write, error) {
	w := d.newWrite(fmt.Sprintf("Follow(%s, %s)", follower, followee))
	err := retry(w, func(ctx context.Context) error {
		_, err := d.api.Graph.Follow(ctx, &feedv1.FollowRequest{FollowerId: follower, FolloweeId: followee})
		return err
	})
	if err != nil {
		return w, err
	}
	d.mu.Lock()
	d.model.Follow(follower, followee)
	d.mu.Unlock()
	d.addUsers(follower, followee)
	return w, nil
}

// post creates a post by author under the idempotency key, retrying, and
// records it.
func (d *drill) post(author, key string) (*write, error) {
	w := d.newWrite(fmt.Sprintf("CreatePost(%s, key %s)", author, key))
	err := retry(w, func(ctx context.Context) error {
		resp, err := d.api.Post.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: author, Text: "drill post " + key, IdempotencyKey: key})
		if err != nil {
			return err
		}
		id, perr := strconv.ParseUint(resp.GetPost().GetPostId(), 10, 64)
		if perr != nil || id == 0 {
			return fmt.Errorf("post ID %q; want a decimal 64-bit ID", resp.GetPost().GetPostId())
		}
		w.post = id
		return nil
	})
	if err != nil {
		return w, err
	}
	d.mu.Lock()
	d.model.AddPost(w.post, author)
	if !slices.Contains(d.keys[w.post], key) {
		d.keys[w.post] = append(d.keys[w.post], key)
	}
	d.mu.Unlock()
	d.addUsers(author)
	return w, nil
}

// acked records a post the drill created on its own, outside post: the
// check wants it where the model puts it, and its ID unique.
func (d *drill) acked(id uint64, author, key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.model.AddPost(id, author)
	if !slices.Contains(d.keys[id], key) {
		d.keys[id] = append(d.keys[id], key)
	}
	if !slices.Contains(d.users, author) {
		d.users = append(d.users, author)
	}
}

// followed records a follow the drill made on its own, outside follow.
func (d *drill) followed(follower, followee string) {
	d.mu.Lock()
	d.model.Follow(follower, followee)
	d.mu.Unlock()
	d.addUsers(follower, followee)
}

// followAll makes each follower follow followee, limit at a time, and
// fails the test if any follow fails.
func (d *drill) followAll(followers []string, followee string, limit int) {
	d.t.Helper()
	if err := systemtest.Each(followers, limit, func(f string) error {
		_, err := d.follow(f, followee)
		return err
	}); err != nil {
		d.t.Fatal(err)
	}
}

// readAll reads each user's home timeline once, limit at a time, which
// makes the users active: fan-out writes their timelines from now on.
func (d *drill) readAll(users []string, limit int) {
	d.t.Helper()
	if err := systemtest.Each(users, limit, func(u string) error {
		_, err := d.read(u)
		return err
	}); err != nil {
		d.t.Fatal(err)
	}
	d.addUsers(users...)
}

// read reads user's home timeline, retrying: a read makes the user active,
// and a drill's reads count in its client errors like its writes.
func (d *drill) read(user string) (*write, error) {
	w := d.newWrite(fmt.Sprintf("GetHomeTimeline(%s)", user))
	return w, retry(w, func(ctx context.Context) error {
		_, err := d.api.Timeline.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: user})
		return err
	})
}

// failedCalls adds calls the test made on its own, outside the drill's
// retries, that failed at the given times: the drill's client errors
// count them.
func (d *drill) failedCalls(what string, spans []span) {
	w := d.newWrite(what)
	w.spans = spans
	for range spans {
		w.failed = append(w.failed, errors.New(what))
	}
}

// newWrite returns a write the drill keeps for its report.
func (d *drill) newWrite(what string) *write {
	w := &write{what: what}
	d.mu.Lock()
	d.writes = append(d.writes, w)
	d.mu.Unlock()
	return w
}

// recheck runs a short random model check on the recovered cluster, under
// users of its own: the cluster works as before the drill.
func (d *drill) recheck(prefix string) {
	d.t.Helper()
	modelcheck.Run(d.t, d.api, modelcheck.Config{Seed: 11, Users: 20, Ops: 100, Prefix: prefix})
}

// check runs the model check over every user the drill touched, waiting
// up to settle for their timelines to match.
func (d *drill) check(settle time.Duration) {
	d.t.Helper()
	d.mu.Lock()
	users := slices.Clone(d.users)
	d.mu.Unlock()
	tally := modelcheck.CheckTally(d.t, d.api, d.model, users, settle)
	if tally.OK {
		d.t.Logf("model check: the home timelines of all %d users match the model (%d posts) after %v", len(users), len(d.model.Live()), tally.Took.Round(time.Millisecond))
	}
	dups := d.duplicateIDs()
	for _, id := range dups {
		d.t.Errorf("post ID %d was given to %d posts (idempotency keys %v)", id, len(d.keys[id]), d.keys[id])
	}
	if d.row != nil {
		d.mu.Lock()
		d.row.Acked = len(d.keys)
		d.mu.Unlock()
		d.row.Lost, d.row.Duplicated, d.row.DuplicateIDs = tally.Lost, tally.Extra+tally.Duplicated, len(dups)
		d.row.Checked = true
	}
}

// duplicateIDs returns the post IDs acknowledged for more than one
// idempotency key: two posts minted with one ID.
func (d *drill) duplicateIDs() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []uint64
	for id, keys := range d.keys {
		if len(keys) > 1 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// writers runs a stream of writes on workers goroutines until stopped.
type writers struct {
	d    *drill
	next func(i int) func() (*write, error) // the i-th write

	mu     sync.Mutex
	writes []*write
	errs   []error
	n      int // writes handed out

	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// writerLimit and writerMax bound how long and how many writes a
// writers runs if nobody stops it.
const (
	writerLimit = 90 * time.Second
	writerMax   = 2000
)

// startWriters runs next(0), next(1), ... on workers goroutines.
func (d *drill) startWriters(workers int, next func(i int) func() (*write, error)) *writers {
	ws := &writers{d: d, next: next, stop: make(chan struct{})}
	limit := time.After(writerLimit)
	for range workers {
		ws.wg.Go(func() {
			for {
				select {
				case <-ws.stop:
					return
				case <-limit:
					return
				default:
				}
				ws.mu.Lock()
				i := ws.n
				ws.n++
				ws.mu.Unlock()
				if i >= writerMax {
					return
				}
				w, err := next(i)()
				ws.mu.Lock()
				ws.writes = append(ws.writes, w)
				if err != nil {
					ws.errs = append(ws.errs, err)
				}
				ws.mu.Unlock()
			}
		})
	}
	d.t.Cleanup(ws.halt)
	return ws
}

func (ws *writers) halt() {
	ws.once.Do(func() { close(ws.stop) })
	ws.wg.Wait()
}

// waitDone waits up to d until n writes that began after since have
// succeeded, and reports whether they did.
func (ws *writers) waitDone(n int, since time.Time, d time.Duration) bool {
	return waitfor.True(d, 10*time.Millisecond, func() bool {
		return ws.succeeded(since, time.Now()) >= n
	})
}

// succeeded counts the writes that began at or after from and succeeded
// before to.
func (ws *writers) succeeded(from, to time.Time) int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	n := 0
	for _, w := range ws.writes {
		if w.err == nil && !w.start.Before(from) && w.end.Before(to) {
			n++
		}
	}
	return n
}

// finish stops the writers, waits for the writes in flight, and fails the
// test if any write failed for good: the model would not know the state.
func (ws *writers) finish() []*write {
	ws.d.t.Helper()
	ws.halt()
	if len(ws.errs) > 0 {
		ws.d.t.Fatalf("%d writes failed:\n%v", len(ws.errs), errors.Join(ws.errs...))
	}
	return ws.writes
}

// summarize logs how the writes begun in [from, to) fared: how many first
// attempts failed, with which codes, and the slowest write.
func summarize(t *testing.T, what string, writes []*write, from, to time.Time) {
	t.Helper()
	n, retried := 0, 0
	codesSeen := map[codes.Code]int{}
	var slowest *write
	for _, w := range writes {
		if w.start.Before(from) || !w.start.Before(to) {
			continue
		}
		n++
		if len(w.failed) > 0 {
			retried++
		}
		for _, err := range w.failed {
			codesSeen[status.Code(err)]++
		}
		if slowest == nil || w.end.Sub(w.start) > slowest.end.Sub(slowest.start) {
			slowest = w
		}
	}
	if n == 0 {
		t.Logf("%s: no writes", what)
		return
	}
	t.Logf("%s: %d writes, %d needed a retry; failed attempts by code %v; slowest %v", what, n, retried, codesSeen, slowest)
}

// consumerStat describes one durable consumer of the event stream.
type consumerStat struct {
	name        string
	delivered   uint64 // deliveries, redeliveries included
	messages    uint64 // stream messages its filter matches
	pending     uint64 // not yet delivered
	ackPending  int    // delivered, not yet acked
	redelivered int    // delivered more than once, not yet acked
}

// redeliveries is how many deliveries were repeats; exact once the
// consumer has caught up.
func (s consumerStat) redeliveries() uint64 {
	if s.delivered < s.messages {
		return 0
	}
	return s.delivered - s.messages
}

func (s consumerStat) String() string {
	return fmt.Sprintf("consumer %s: %d messages, %d deliveries (%d redeliveries), %d pending, %d ack-pending",
		s.name, s.messages, s.delivered, s.redeliveries(), s.pending, s.ackPending)
}

// eventStream calls fn with the cluster's event stream, and its messages
// by subject.
func (c *Cluster) eventStream(fn func(ctx context.Context, s jetstream.Stream, subjects map[string]uint64) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := nats.Connect(c.srv.nats, c.srv.natsOptions(nats.Timeout(2*time.Second))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, strings.ToUpper(c.NS)+"_EVENTS")
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return err
	}
	return fn(ctx, stream, info.State.Subjects)
}

// subjectCounts returns the event stream's messages by subject, without
// the namespace.
func (c *Cluster) subjectCounts(t *testing.T) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	if err := c.eventStream(func(_ context.Context, _ jetstream.Stream, subjects map[string]uint64) error {
		for s, n := range subjects {
			out[strings.TrimPrefix(s, c.NS+".")] = n
		}
		return nil
	}); err != nil {
		t.Fatalf("event stream subjects: %v", err)
	}
	return out
}

// consumerStats reads the state of every durable consumer of the
// cluster's event stream.
func (c *Cluster) consumerStats() (out []consumerStat, err error) {
	err = c.eventStream(func(ctx context.Context, stream jetstream.Stream, subjects map[string]uint64) error {
		out, err = listConsumers(ctx, stream, subjects)
		return err
	})
	return out, err
}

func listConsumers(ctx context.Context, stream jetstream.Stream, subjects map[string]uint64) ([]consumerStat, error) {
	var out []consumerStat
	list := stream.ListConsumers(ctx)
	for ci := range list.Info() {
		if ci.Config.Durable == "" {
			continue // an ordered consumer tailing the stream for live streams
		}
		filters := ci.Config.FilterSubjects
		if ci.Config.FilterSubject != "" {
			filters = append(filters, ci.Config.FilterSubject)
		}
		s := consumerStat{
			name:        ci.Name,
			delivered:   ci.Delivered.Consumer,
			pending:     ci.NumPending,
			ackPending:  ci.NumAckPending,
			redelivered: ci.NumRedelivered,
		}
		for subject, n := range subjects {
			if len(filters) == 0 || slices.ContainsFunc(filters, func(f string) bool { return subjectMatches(f, subject) }) {
				s.messages += n
			}
		}
		out = append(out, s)
	}
	if err := list.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b consumerStat) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// subjectMatches reports whether a NATS subject matches filter, with its
// "*" and ">" wildcards.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// pending sums the consumers' undelivered messages.
func pending(st []consumerStat) uint64 {
	var n uint64
	for _, s := range st {
		n += s.pending
	}
	return n
}

// ackPending sums the consumers' delivered, unacked messages.
func ackPending(st []consumerStat) int {
	n := 0
	for _, s := range st {
		n += s.ackPending
	}
	return n
}

// durableStats is consumerStats, failing t on an error.
func (c *Cluster) durableStats(t *testing.T) []consumerStat {
	t.Helper()
	st, err := c.consumerStats()
	if err != nil {
		t.Fatalf("event stream consumers: %v", err)
	}
	return st
}

// waitIdle waits up to d until no durable consumer has messages pending
// or unacked, and returns their state.
func (c *Cluster) waitIdle(t *testing.T, d time.Duration) []consumerStat {
	t.Helper()
	var st []consumerStat
	if !waitfor.True(d, 100*time.Millisecond, func() bool {
		st = c.durableStats(t)
		return pending(st) == 0 && ackPending(st) == 0
	}) {
		t.Fatalf("event consumers still busy %v later: %v", d, st)
	}
	return st
}

// grepLogs returns the lines matching re in the logs of every process the
// service's instances ran, past and present.
func (c *Cluster) grepLogs(service string, re *regexp.Regexp) []string {
	paths, _ := filepath.Glob(filepath.Join(c.dir, service+"-*.log"))
	slices.Sort(paths)
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if re.MatchString(line) {
				out = append(out, filepath.Base(p)+": "+strings.TrimRight(line, "\n"))
			}
		}
	}
	return out
}

// republishedRe matches the outbox relay's log lines that count the posts
// it republished.
var republishedRe = regexp.MustCompile(`msg="outbox relay (?:republished posts|scan)".*\b(?:count|republished)=(\d+)`)

// relayRepublished returns how many posts the outbox relays of the
// cluster's post instances republished, by log file.
func (c *Cluster) relayRepublished() (int, map[string]int) {
	total, byLog := 0, map[string]int{}
	for _, line := range c.grepLogs("post", republishedRe) {
		m := republishedRe.FindStringSubmatch(line)
		n, _ := strconv.Atoi(m[1])
		log, _, _ := strings.Cut(line, ": ")
		byLog[log] += n
		total += n
	}
	return total, byLog
}

// relayElection is the etcd election of the outbox relay's leader.
func (c *Cluster) relayElection() string { return c.NS + "/election/outbox-relay/" }

// relayLeader returns the post instance that leads the outbox relay: the
// oldest candidate key of the election holds the leader's address.
func (c *Cluster) relayLeader() (*Instance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Etcd.Get(ctx, c.relayElection(), clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	addr := string(resp.Kvs[0].Value)
	for _, in := range c.Instances["post"] {
		if in.Addr() == addr {
			return in, nil
		}
	}
	return nil, fmt.Errorf("relay leader %s is no post instance of the cluster", addr)
}

// postWorkerRe matches the post instance's log line naming the worker ID
// its post IDs carry.
var postWorkerRe = regexp.MustCompile(`msg="post ids".*\bworker=(\d+)`)

// postWorker returns the worker ID in the post IDs that the instance's
// current process mints.
func (in *Instance) postWorker() (int, error) {
	ws, err := in.postWorkers()
	if err != nil {
		return 0, err
	}
	return ws[0], nil
}

// postWorkers returns every worker ID the running post instance claimed,
// in order: a new one each time it took a new etcd lease.
func (in *Instance) postWorkers() ([]int, error) {
	in.mu.Lock()
	path := in.log
	in.mu.Unlock()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, m := range postWorkerRe.FindAllSubmatch(b, -1) {
		w, err := strconv.Atoi(string(m[1]))
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no worker ID in %s", path)
	}
	return out, nil
}

// names returns prefix followed by 0, 1, ... n-1, zero-padded.
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i)
	}
	return out
}
