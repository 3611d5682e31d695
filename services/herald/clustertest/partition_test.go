package clustertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/status"

	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// The network drills: an instance's link to a server goes through a TCP
// proxy on loopback, toxiproxy run in the test's process, which a drill
// cuts (every byte dropped both ways) or slows (added latency) while
// clients post, follow and read, and then heals. Each ends with the model
// check.
//
// The cut is toxiproxy's timeout toxic with no timeout, on both
// directions: the connections stay open and whatever either end sends is
// dropped, as behind a firewall that drops packets, and a connection
// opened meanwhile is accepted by the proxy and then hears nothing.
// Removing the toxic closes the connections that lived through the cut
// (toxiproxy's timeout toxic does that on removal), so after the heal the
// instance reconnects. A real short partition would deliver the bytes late,
// TCP retransmitting them; here they are gone, which is harsher for
// whatever was in flight.
//
// Redis under Sentinel cannot be proxied: the instances dial the address
// the Sentinels name, the primary's own. The drills that proxy Redis (and
// those that watch an instance's Redis traffic) therefore run on the HA
// etcd and NATS with the single Redis, and say so in their notes.

// partitionCut is how long a drill keeps a link cut: longer than go-redis's
// 3 s read timeout (the fan-out's Redis attempts) and than the clients'
// attemptTimeout.
const partitionCut = 5 * time.Second

// netProxies is a toxiproxy server run in the test's process, without its
// HTTP API: the test adds proxies and toxics through the library.
type netProxies struct {
	t   *testing.T
	api *toxiproxy.ApiServer
}

// registerTap registers tapToxic with toxiproxy once per test binary.
var registerTap sync.Once

// newNetProxies starts an empty toxiproxy server. Its proxies stop at
// cleanup, closing their connections: call it before startClusterOn, so
// that the instances have stopped by then.
func newNetProxies(t *testing.T) *netProxies {
	t.Helper()
	registerTap.Do(func() { toxics.Register(tapToxicType, new(tapToxic)) })
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	t.Cleanup(func() { api.Collection.Clear() })
	return &netProxies{t: t, api: api}
}

// proxy starts a proxy named name from a free loopback port to upstream
// (host:port); its Listen is the address to dial instead.
func (np *netProxies) proxy(name, upstream string) *toxiproxy.Proxy {
	np.t.Helper()
	p := toxiproxy.NewProxy(np.api, name, "127.0.0.1:0", upstream)
	if err := np.api.Collection.Add(p, true); err != nil {
		np.t.Fatalf("toxiproxy %s to %s: %v", name, upstream, err)
	}
	return p
}

// addToxic adds to p a toxic of the given type on stream: "upstream" is
// what the instance sends, "downstream" what it receives.
func addToxic(t *testing.T, p *toxiproxy.Proxy, name, kind, stream string, attrs any) {
	t.Helper()
	js, err := json.Marshal(map[string]any{"name": name, "type": kind, "stream": stream, "toxicity": 1, "attributes": attrs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Toxics.AddToxicJson(bytes.NewReader(js)); err != nil {
		t.Fatalf("toxic %s (%s, %s) on proxy %s: %v", name, kind, stream, p.Name, err)
	}
}

// removeToxic removes the named toxic from p.
func removeToxic(t *testing.T, p *toxiproxy.Proxy, name string) {
	t.Helper()
	if err := p.Toxics.RemoveToxic(t.Context(), name); err != nil {
		t.Fatalf("remove toxic %s from proxy %s: %v", name, p.Name, err)
	}
}

// cutLinks drops every byte both ways through each proxy, on the
// connections open and on those opened meanwhile, until healLinks.
func cutLinks(t *testing.T, ps ...*toxiproxy.Proxy) {
	t.Helper()
	for _, p := range ps {
		for _, stream := range []string{"upstream", "downstream"} {
			addToxic(t, p, "cut-"+stream, "timeout", stream, map[string]int{"timeout": 0})
		}
	}
}

// healLinks ends cutLinks' cut; the connections that lived through it
// close.
func healLinks(t *testing.T, ps ...*toxiproxy.Proxy) {
	t.Helper()
	for _, p := range ps {
		for _, stream := range []string{"upstream", "downstream"} {
			removeToxic(t, p, "cut-"+stream)
		}
	}
}

// tapToxicType is tapToxic's name in toxiproxy's registry.
const tapToxicType = "clustertest-tap"

// taps holds each wireTap by its key, for the tapToxics that feed it:
// toxiproxy makes a toxic of a registered type afresh from its JSON
// attributes, one per connection, so a toxic can name its tap, not hold it.
var taps sync.Map // string → *wireTap

// tapToxic passes every byte on unchanged and shows each chunk to the
// wireTap its Tap names.
type tapToxic struct {
	Tap string `json:"tap"`
}

// Pipe is toxiproxy's noop toxic, with the tap looking on.
func (tt *tapToxic) Pipe(stub *toxics.ToxicStub) {
	var tap *wireTap
	if v, ok := taps.Load(tt.Tap); ok {
		tap = v.(*wireTap)
	}
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if tap != nil {
				tap.saw(c.Timestamp, c.Data)
			}
			stub.Output <- c
		}
	}
}

// wireTap counts the occurrences of a pattern in the bytes that pass one
// way through a proxy, and when they passed: what an instance sent or was
// sent, seen on the wire. An occurrence split across two chunks is missed,
// so counts are lower bounds.
type wireTap struct {
	pattern []byte

	mu   sync.Mutex
	hits []tapHit
}

// tapHit is a chunk that held the pattern n times, read by the proxy at at.
type tapHit struct {
	at time.Time
	n  int
}

// tapWire taps p's stream for pattern. A tap added after a cut's toxics
// sees what is left of the stream after them, so tap a proxy before
// cutting it: then it sees what an instance sent into the cut.
func tapWire(t *testing.T, p *toxiproxy.Proxy, stream, pattern string) *wireTap {
	t.Helper()
	tap := &wireTap{pattern: []byte(pattern)}
	key := fmt.Sprintf("%s/%s/%s/%q", t.Name(), p.Name, stream, pattern)
	taps.Store(key, tap)
	t.Cleanup(func() { taps.Delete(key) })
	addToxic(t, p, fmt.Sprintf("tap-%s-%q", stream, pattern), tapToxicType, stream, map[string]string{"tap": key})
	return tap
}

func (w *wireTap) saw(at time.Time, data []byte) {
	n := bytes.Count(data, w.pattern)
	if n == 0 {
		return
	}
	w.mu.Lock()
	w.hits = append(w.hits, tapHit{at, n})
	w.mu.Unlock()
}

// count returns the occurrences seen in [from, to).
func (w *wireTap) count(from, to time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, h := range w.hits {
		if !h.at.Before(from) && h.at.Before(to) {
			n += h.n
		}
	}
	return n
}

// firstAfter returns when the first occurrence at or after from passed.
func (w *wireTap) firstAfter(from time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range w.hits {
		if !h.at.Before(from) {
			return h.at, true
		}
	}
	return time.Time{}, false
}

// restartVia restarts in with set applied to its fields (Redis, NATS):
// the new process dials what set names.
func restartVia(t *testing.T, in *Instance, set func(in *Instance)) {
	t.Helper()
	in.Stop()
	set(in)
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
}

// fanoutRedisLink is a fan-out instance's link to Redis through a proxy,
// with taps on what the instance sends: the commands that name a key of
// the deployment, and the home-timeline writes among them.
type fanoutRedisLink struct {
	proxy      *toxiproxy.Proxy
	commands   *wireTap
	homeWrites *wireTap
}

// tapFanoutRedis moves each fan-out instance onto a proxy of its own to the
// cluster's single Redis, and returns the links in instance order.
func tapFanoutRedis(t *testing.T, np *netProxies, c *Cluster) []fanoutRedisLink {
	t.Helper()
	var out []fanoutRedisLink
	for _, in := range c.Instances["fanout"] {
		p := np.proxy(in.Name+"-redis", c.srv.redis)
		l := fanoutRedisLink{
			proxy:    p,
			commands: tapWire(t, p, "upstream", c.NS+":"),
			// The key of a home timeline (rediscache), which only
			// fan-out writes name.
			homeWrites: tapWire(t, p, "upstream", c.NS+":tl.v2:{"),
		}
		restartVia(t, in, func(in *Instance) { in.Redis = p.Listen })
		out = append(out, l)
	}
	return out
}

// redeliveredRe matches the bus's log line for a delivery that failed and
// was Nak'ed for redelivery.
var redeliveredRe = regexp.MustCompile(`msg="message failed; it will be redelivered"`)

// currentLogLines returns the lines of in's current process's log that
// match re.
func currentLogLines(in *Instance, re *regexp.Regexp) []string {
	in.mu.Lock()
	path := in.log
	in.mu.Unlock()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if re.MatchString(line) {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return out
}

// fanoutConsumer returns the fan-out's durable consumer among st.
func fanoutConsumer(t *testing.T, st []consumerStat) consumerStat {
	t.Helper()
	for _, s := range st {
		if s.name == "fanout" {
			return s
		}
	}
	t.Fatalf("no fanout consumer among %v", st)
	return consumerStat{}
}

// timestampRe matches an RFC 3339 time in an error message.
var timestampRe = regexp.MustCompile(`\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)`)

// failureKinds counts the failed attempts of the calls begun in [from,
// to) by their error's message, its times elided and cut to its first
// 100 bytes: what the clients saw.
func failureKinds(calls []*write, from, to time.Time) map[string]int {
	out := map[string]int{}
	for _, w := range calls {
		if w.start.Before(from) || !w.start.Before(to) {
			continue
		}
		for _, err := range w.failed {
			msg := timestampRe.ReplaceAllString(status.Convert(err).Message(), "<time>")
			if len(msg) > 100 {
				msg = msg[:100] + "…"
			}
			out[status.Code(err).String()+": "+msg]++
		}
	}
	return out
}

// noteClientErrors adds to the notes what the clients' failed attempts
// said, if any failed.
func noteClientErrors(d *drill, calls []*write) {
	kinds := failureKinds(calls, time.Time{}, time.Now())
	if len(kinds) == 0 {
		d.note("no client call failed")
		return
	}
	d.note("the clients' failed attempts: %v", kinds)
}

// redeliveredSince returns how many redeliveries the consumer made
// between two of its states, the later one caught up.
func redeliveredSince(before, after consumerStat) int64 {
	return int64(after.redeliveries()) - int64(before.redeliveries())
}

// holdCut waits until the cut has lasted partitionCut and the clients have
// had calls succeed during it, and reports whether they had: the clients
// call no service whose links are cut.
func holdCut(ws *writers, cut time.Time) bool {
	return waitfor.True(partitionCut+waitfor.Deadline, 50*time.Millisecond, func() bool {
		return time.Since(cut) >= partitionCut && ws.succeeded(cut, time.Now()) >= 6
	})
}

// TestDrillFanoutPartitionedFromRedis cuts one fan-out instance off Redis
// for partitionCut while clients post, follow and read. Its deliveries
// stall: go-redis retries each command through its read timeouts, and a
// delivery that still fails is Nak'ed with the bus's backoff and
// redelivered, to either instance. The other instance carries on. After
// the heal every follower has every post once.
func TestDrillFanoutPartitionedFromRedis(t *testing.T) {
	srv := serversHA(t)
	srv.redis, srv.redisMaster = testenv.Redis(t), ""
	np := newNetProxies(t)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report("network partition: fan-out instance from Redis", srv.clusterKind())
	d.note("etcd and NATS replicated, Redis the single server (a proxy cannot stand in for the primary the Sentinels name)")
	links := tapFanoutRedis(t, np, c)
	victim, other := c.Instances["fanout"][0], c.Instances["fanout"][1]
	writes := []*wireTap{links[0].homeWrites, links[1].homeWrites}
	ws := d.startLoad("pr", 2)
	waitfor.Until(t, waitfor.Deadline, victim.Name+" writing home timelines through its proxy", func() (bool, any) {
		n := writes[0].count(time.Time{}, time.Now())
		return n > 0, fmt.Sprintf("%d writes", n)
	})

	before := fanoutConsumer(t, c.durableStats(t))
	cut := time.Now()
	cutLinks(t, links[0].proxy)
	carriedOn := holdCut(ws, cut)
	healLinks(t, links[0].proxy)
	healed := time.Now()
	if !carriedOn {
		t.Errorf("%d client calls begun during the %v cut succeeded; want 6: no call needs the fan-out's Redis", ws.succeeded(cut, healed), partitionCut)
	}
	atHeal := fanoutConsumer(t, c.durableStats(t))

	var resumed time.Duration
	waitfor.Until(t, waitfor.Deadline, victim.Name+" writing a home timeline after the heal", func() (bool, any) {
		at, ok := writes[0].firstAfter(healed)
		resumed = at.Sub(healed)
		return ok, fmt.Sprintf("%d writes sent into the cut", writes[0].count(cut, healed))
	})
	if !ws.waitDone(10, healed, waitfor.Deadline) {
		t.Fatalf("10 calls begun after the heal did not succeed within %v", waitfor.Deadline)
	}
	calls := ws.finish()
	summarize(t, "calls before the cut", calls, time.Time{}, cut)
	summarize(t, "calls during the cut", calls, cut, healed)
	summarize(t, "calls after the heal", calls, healed, time.Now())
	noteClientErrors(d, calls)
	d.check(2 * waitfor.Deadline)
	settled := time.Since(healed)
	after := fanoutConsumer(t, c.durableStats(t))

	failed := currentLogLines(victim, redeliveredRe)
	if len(failed) > 0 {
		t.Logf("%s's first failed delivery: %s", victim.Name, failed[0])
	}
	d.recovered(resumed, "from the heal to the cut instance's first home-timeline write after it, seen on its Redis link")
	d.note("Redis link of %s cut %v: it sent %d commands into the cut, %d of them home-timeline writes; %s wrote %d home timelines meanwhile",
		victim.Name, healed.Sub(cut).Round(time.Millisecond), links[0].commands.count(cut, healed), writes[0].count(cut, healed), other.Name, writes[1].count(cut, healed))
	d.note("%d deliveries failed on %s and were Nak'ed for redelivery (backoff %v); the consumer delivered %d messages during the cut, %d redeliveries in the drill",
		len(failed), victim.Name, event.DefaultBackOff, atHeal.delivered-before.delivered, redeliveredSince(before, after))
	d.note("every follower had every post %v after the heal (model check done)", settled.Round(time.Millisecond))
	c.CheckAlive(t)
}

// natsUpstreams returns the host:port of each nats:// URL in urls, a
// comma-separated list.
func natsUpstreams(t *testing.T, urls string) []string {
	t.Helper()
	var out []string
	for _, u := range strings.Split(urls, ",") {
		hp, ok := strings.CutPrefix(strings.TrimSpace(u), "nats://")
		if !ok || hp == "" {
			t.Fatalf("NATS URL %q in %q: want nats://host:port", u, urls)
		}
		out = append(out, hp)
	}
	return out
}

// TestDrillFanoutPartitionedFromNATS cuts one fan-out instance off every
// NATS node for partitionCut while clients post, follow and read. The
// messages the servers sent it meanwhile, and its acks, are dropped: the
// consumer redelivers what it holds unacked once AckWait (30 s) has passed
// since each delivery, to either instance. The other instance carries on.
// After the heal every follower has every post once.
//
// The instance learns the nodes' own addresses from the servers (NATS
// advertises them to clients), so after the heal it may reconnect past
// the proxies; the cut itself holds, since nothing makes it reconnect
// during the cut (its pings are two minutes apart).
func TestDrillFanoutPartitionedFromNATS(t *testing.T) {
	srv := serversHA(t)
	srv.redis, srv.redisMaster = testenv.Redis(t), ""
	np := newNetProxies(t)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report("network partition: fan-out instance from NATS", srv.clusterKind())
	d.note("etcd and NATS replicated (stream R3), Redis the single server, so that a proxy can watch each fan-out instance's Redis writes")
	victim, other := c.Instances["fanout"][0], c.Instances["fanout"][1]

	var natsLinks []*toxiproxy.Proxy
	var urls []string
	var sent, acks []*wireTap
	for i, up := range natsUpstreams(t, srv.nats) {
		p := np.proxy(fmt.Sprintf("%s-nats-%d", victim.Name, i+1), up)
		sent = append(sent, tapWire(t, p, "downstream", "MSG "+c.NS+"."))
		acks = append(acks, tapWire(t, p, "upstream", "PUB $JS.ACK."))
		natsLinks = append(natsLinks, p)
		urls = append(urls, "nats://"+p.Listen)
	}
	// Set before tapFanoutRedis restarts it.
	victim.NATS = strings.Join(urls, ",")
	links := tapFanoutRedis(t, np, c)
	writes := []*wireTap{links[0].homeWrites, links[1].homeWrites}
	count := func(ts []*wireTap, from, to time.Time) int {
		n := 0
		for _, tap := range ts {
			n += tap.count(from, to)
		}
		return n
	}

	ws := d.startLoad("pn", 2)
	waitfor.Until(t, waitfor.Deadline, victim.Name+" taking messages through its NATS proxies", func() (bool, any) {
		n := count(sent, time.Time{}, time.Now())
		return n > 0, fmt.Sprintf("%d messages", n)
	})

	before := fanoutConsumer(t, c.durableStats(t))
	cut := time.Now()
	cutLinks(t, natsLinks...)
	carriedOn := holdCut(ws, cut)
	healLinks(t, natsLinks...)
	healed := time.Now()
	if !carriedOn {
		t.Errorf("%d client calls begun during the %v cut succeeded; want 6: no call needs the fan-out", ws.succeeded(cut, healed), partitionCut)
	}
	atHeal := fanoutConsumer(t, c.durableStats(t))
	t.Logf("at the heal: %v", atHeal)

	var resumed time.Duration
	waitfor.Until(t, fanoutAckWait+waitfor.Deadline, victim.Name+" writing a home timeline after the heal", func() (bool, any) {
		at, ok := writes[0].firstAfter(healed)
		resumed = at.Sub(healed)
		return ok, fmt.Sprintf("%d messages sent into the cut", count(sent, cut, healed))
	})
	if !ws.waitDone(10, healed, waitfor.Deadline) {
		t.Fatalf("10 calls begun after the heal did not succeed within %v", waitfor.Deadline)
	}
	calls := ws.finish()
	summarize(t, "calls before the cut", calls, time.Time{}, cut)
	summarize(t, "calls during the cut", calls, cut, healed)
	summarize(t, "calls after the heal", calls, healed, time.Now())
	noteClientErrors(d, calls)
	d.check(fanoutAckWait + 2*waitfor.Deadline)
	settled := time.Since(healed)
	// The check may pass before the consumer has redelivered a message
	// whose writes had landed before its ack was dropped; wait for that
	// too, so that the redeliveries are counted.
	var idle consumerStat
	drained := waitfor.True(fanoutAckWait+waitfor.Deadline, 100*time.Millisecond, func() bool {
		idle = fanoutConsumer(t, c.durableStats(t))
		return idle.pending == 0 && idle.ackPending == 0
	})
	if !drained {
		t.Errorf("the fan-out consumer still busy %v after the heal: %v", time.Since(healed).Round(time.Millisecond), idle)
	}
	drainedAfter := time.Since(healed)

	d.recovered(resumed, "from the heal to the cut instance's first home-timeline write after it, seen on its Redis link")
	d.note("NATS links of %s (one proxy per node) cut %v: the servers sent it %d messages into the cut, and it sent %d acks (or naks) into it; %s wrote %d home timelines meanwhile",
		victim.Name, healed.Sub(cut).Round(time.Millisecond), count(sent, cut, healed), count(acks, cut, healed), other.Name, writes[1].count(cut, healed))
	d.note("consumer at the heal: %d ack-pending; redeliveries in the drill %d (AckWait %v); no message pending or unacked %v after the heal",
		atHeal.ackPending, redeliveredSince(before, idle), fanoutAckWait, drainedAfter.Round(time.Millisecond))
	if n := count(sent, healed, time.Now()); n == 0 {
		d.note("after the heal %s reconnected past the proxies, to a node address NATS advertised", victim.Name)
	}
	d.note("every follower had every post %v after the heal (model check done)", settled.Round(time.Millisecond))
	c.CheckAlive(t)
}

// latencyReads is how many home-timeline reads each phase of the latency
// drill times.
const latencyReads = 200

// addedRedisLatency is the latency the drill adds to each round trip
// between the timeline service and Redis.
const addedRedisLatency = 50 * time.Millisecond

// timeReads reads the users' home timelines n times in turn, one at a time,
// and returns the reads: each one's start and end span its retries, and
// the drill counts any failed attempt in its client errors.
func (d *drill) timeReads(users []string, n int) []*write {
	d.t.Helper()
	out := make([]*write, 0, n)
	for i := range n {
		w, err := d.read(users[i%len(users)])
		if err != nil {
			d.t.Fatal(err)
		}
		out = append(out, w)
	}
	return out
}

// callDurations returns how long each write took.
func callDurations(ws []*write) []time.Duration {
	out := make([]time.Duration, len(ws))
	for i, w := range ws {
		out[i] = w.end.Sub(w.start)
	}
	return out
}

// latencyQuantile returns the q-quantile (0 < q <= 1) of ds by nearest
// rank.
func latencyQuantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// latencySummary is p50/p99/max of ds, for the notes.
func latencySummary(ds []time.Duration) string {
	return fmt.Sprintf("p50 %v, p99 %v, max %v",
		latencyQuantile(ds, 0.5).Round(100*time.Microsecond), latencyQuantile(ds, 0.99).Round(100*time.Microsecond), latencyQuantile(ds, 1).Round(100*time.Microsecond))
}

// TestDrillTimelineRedisLatency adds addedRedisLatency to every round
// trip between the timeline service and Redis while clients post, follow
// and read, and times home-timeline reads through the cluster's client
// before, during and after: the figures go into the row's notes. It
// asserts only that the reads succeed and the model check passes; how much
// slower the reads are is reported, not bounded.
//
// Both timeline instances go through the proxy: the client balances reads
// over them, so with one slowed the percentiles would mix two
// populations.
func TestDrillTimelineRedisLatency(t *testing.T) {
	srv := serversHA(t)
	srv.redis, srv.redisMaster = testenv.Redis(t), ""
	np := newNetProxies(t)
	c := startClusterOn(t, srv)
	d := newDrill(t, c)
	d.report(fmt.Sprintf("%v added between the timeline service and Redis", addedRedisLatency), srv.clusterKind())
	d.note("etcd and NATS replicated, Redis the single server (a proxy cannot stand in for the primary the Sentinels name)")
	link := np.proxy("timeline-redis", srv.redis)
	for _, in := range c.Instances["timeline"] {
		restartVia(t, in, func(in *Instance) { in.Redis = link.Listen })
	}
	ws := d.startLoad("tl", 2)
	readers := names("tl_f", 9) // startLoad's followers: active, with timelines

	base := callDurations(d.timeReads(readers, latencyReads))
	added := time.Now()
	addToxic(t, link, "latency", "latency", "downstream", map[string]int64{"latency": addedRedisLatency.Milliseconds()})
	slowed := callDurations(d.timeReads(readers, latencyReads))
	removeToxic(t, link, "latency")
	removed := time.Now()
	after := d.timeReads(readers, latencyReads)
	restored := callDurations(after)

	// Reads are as fast as before once one takes no longer than the
	// baseline's p99.
	fast := latencyQuantile(base, 0.99)
	i := slices.IndexFunc(after, func(w *write) bool { return w.end.Sub(w.start) <= fast })
	if !ws.waitDone(10, removed, waitfor.Deadline) {
		t.Fatalf("10 calls begun after the latency was removed did not succeed within %v", waitfor.Deadline)
	}
	calls := ws.finish()
	summarize(t, "calls before the latency", calls, time.Time{}, added)
	summarize(t, "calls with the latency", calls, added, removed)
	summarize(t, "calls after it", calls, removed, time.Now())
	noteClientErrors(d, calls)
	d.check(2 * waitfor.Deadline)

	if i >= 0 {
		d.recovered(after[i].end.Sub(removed), "from removing the latency to the end of the first read within the baseline's p99")
	} else {
		// A figure, not a bound: a loaded machine can slow every read.
		d.note("none of the %d reads after removing the latency was within the baseline's p99 %v", len(after), fast)
	}
	d.note("GetHomeTimeline through the cluster's client, %d sequential reads per phase, retries included, both timeline instances through one proxy, with 2 clients' load: baseline %s; with %v added to each Redis reply %s; after removing it %s",
		latencyReads, latencySummary(base), addedRedisLatency, latencySummary(slowed), latencySummary(restored))
	extra := latencyQuantile(slowed, 0.5) - latencyQuantile(base, 0.5)
	d.note("p50 grew %v: about %.1f Redis round trips per read", extra.Round(100*time.Microsecond), float64(extra)/float64(addedRedisLatency))
	c.CheckAlive(t)
}
