package clustertest

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/cassandrastore"
)

// BenchmarkCreatePostRate is the open-loop counterpart of
// BenchmarkCreatePost: it offers CreatePost at a fixed rate and reports
// what the cluster made of it, and which resource bounded it.
//
// Open loop: call i is due at start + i/rate and starts then, whether or
// not earlier calls have returned; its latency counts from when it was
// due, so a call that waited for the generator or for one of the
// rateMaxInFlight slots is charged for the wait (no coordinated
// omission). Latency percentiles cover every measured call, failed ones
// included; failures are also counted.
//
// The rate is HERALD_BENCH_POST_RATE a second (default 1000) for
// HERALD_BENCH_POST_SECONDS (default 20), after rateWarmup at the same
// rate that is not counted. Posts go round-robin over rateAuthors
// authors, each followed by about HERALD_BENCH_POST_USERS (default
// 10,000) × rateFollows / rateAuthors users, so every post has a fan-out
// to do while CreatePost is measured. The per-user rate limit on posts is
// off (the instances inherit HERALD_RATE_POSTS=off): it would otherwise
// be what this measures.
//
// Besides latency it samples, over the measured window, the CPU time of
// every Herald instance, of the servers (pids from the deploy/local
// pidfiles), of the benchmark process itself, and of the whole machine,
// and logs a "bound:" line naming what saturated. Run it with
// `make bench-cluster`, or alone:
//
//	go test -run '^$' -bench BenchmarkCreatePostRate -benchtime 1x ./services/herald/clustertest
//
// Each b.Loop iteration is one full run; the metrics are the last run's.
func BenchmarkCreatePostRate(b *testing.B) {
	rate := envPositive(b, "HERALD_BENCH_POST_RATE", 1000)
	seconds := envPositive(b, "HERALD_BENCH_POST_SECONDS", 20)
	users := envPositive(b, "HERALD_BENCH_POST_USERS", 10_000)
	b.Setenv("HERALD_RATE_POSTS", "off") // read by the instances startCluster runs
	c := startCluster(b)
	loadFollowGraph(b, c, users)
	post := feedv1.NewPostServiceClient(c.Dial(b, "post"))
	watch := watchedProcesses(b, c)

	var res rateRun
	for b.Loop() {
		res = offerPosts(b, post, watch, rate, time.Duration(seconds)*time.Second)
	}
	res.report(b)
	// A backlog here means fan-out fell behind the posts.
	if st, err := c.consumerStats(); err != nil {
		b.Logf("event consumers: %v", err)
	} else {
		b.Logf("fan-out backlog once the last call returned: %d events pending, %d unacked", pending(st), ackPending(st))
	}
}

const (
	// rateWarmup is offered at the benchmark's rate before the measured
	// window, to open connections and warm the caches and the JIT.
	rateWarmup = 3 * time.Second
	// rateMaxInFlight bounds the calls in flight; a due call waits for a
	// slot, and its latency includes the wait.
	rateMaxInFlight = 2000
	// rateCallTimeout bounds one call; a call past it fails.
	rateCallTimeout = 10 * time.Second
	// rateAuthors share the posts: at 1,000 posts/s each posts once a
	// second, far below anything a per-user limit would be set to.
	rateAuthors = 1000
	// rateFollows is how many authors each user follows.
	rateFollows = 10
	// graphLoadConcurrency bounds the follows written at once while the
	// graph is loaded.
	graphLoadConcurrency = 64
)

// envPositive returns the positive integer in the environment variable
// name, or def when it is unset.
func envPositive(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// loadFollowGraph makes users users each follow rateFollows distinct
// authors, picked at random (the same each run), through the store's
// Follow: it is what the graph service stores, without the Followed
// events whose backfills would still be running when posting starts.
func loadFollowGraph(b *testing.B, c *Cluster, users int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	db, err := cassandrastore.Open(ctx, cassandrastore.Config{
		Hosts:    c.srv.cassandra,
		Keyspace: c.NS,
		Username: c.srv.cassandraLogin.Username,
		Password: c.srv.cassandraLogin.Password,
		Timeout:  30 * time.Second,
	})
	if err != nil {
		b.Fatalf("open Cassandra %v keyspace %s: %v", c.srv.cassandra, c.NS, err)
	}
	defer db.Close()

	type edge struct{ follower, followee string }
	rng := rand.New(rand.NewPCG(1, 2))
	edges := make([]edge, 0, users*rateFollows)
	for u := range users {
		follower := fmt.Sprintf("rate_user_%d", u)
		for _, a := range rng.Perm(rateAuthors)[:rateFollows] {
			edges = append(edges, edge{follower, authorName(a)})
		}
	}
	// Shuffled, so that concurrent writes seldom wait on one user's
	// count lock.
	rng.Shuffle(len(edges), func(i, j int) { edges[i], edges[j] = edges[j], edges[i] })

	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(graphLoadConcurrency)
	for _, e := range edges {
		g.Go(func() error {
			if _, err := db.Follow(gctx, e.follower, e.followee); err != nil {
				return fmt.Errorf("follow %s -> %s: %w", e.follower, e.followee, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	b.Logf("follow graph: %d users follow %d authors each of %d (%d follows, about %d followers an author) in %v, %.0f follows/s",
		users, rateFollows, rateAuthors, len(edges), len(edges)/rateAuthors, took.Round(time.Millisecond), float64(len(edges))/took.Seconds())
}

func authorName(i int) string { return fmt.Sprintf("rate_author_%d", i) }

// watchedProcess is a process whose CPU time the benchmark samples,
// under a group name such as "cassandra" or "post".
type watchedProcess struct {
	group string
	pid   int
}

// watchedProcesses lists the cluster's instances, the servers whose
// pidfiles deploy/local keeps (in HERALD_LOCAL_DIR/run, by default
// .local/run at the repository root), and this process.
func watchedProcesses(b *testing.B, c *Cluster) []watchedProcess {
	b.Helper()
	var out []watchedProcess
	for _, svc := range services {
		for _, in := range c.Instances[svc] {
			out = append(out, watchedProcess{"herald-" + svc, in.PID()})
		}
	}
	state := cmp.Or(os.Getenv("HERALD_LOCAL_DIR"), filepath.Join(repoRoot, ".local"))
	for _, name := range []string{"cassandra", "nats", "etcd", "redis"} {
		pid, err := serverPID(state, name)
		if err != nil {
			b.Logf("no CPU figures for %s: %v", name, err)
			continue
		}
		out = append(out, watchedProcess{name, pid})
	}
	return append(out, watchedProcess{"benchmark", os.Getpid()})
}

// serverPID returns the pid in deploy/local's pidfile of the server name
// under the state directory, if that process runs in the server's data
// directory, as lib.sh's server_pid checks: a stale pidfile's pid may
// have been reused by some other process.
func serverPID(state, name string) (int, error) {
	pidfile := filepath.Join(state, "run", name+".pid")
	raw, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, fmt.Errorf("pidfile %s: %w", pidfile, err)
	}
	data, err := filepath.EvalSymlinks(filepath.Join(state, "data", name))
	if err != nil {
		return 0, err
	}
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("pidfile %s: %w", pidfile, err)
	}
	if cwd, err := p.Cwd(); err != nil || cwd != data {
		return 0, fmt.Errorf("pid %d of %s runs in %q (%v), not in %s", pid, pidfile, cwd, err, data)
	}
	return pid, nil
}

// cpuSample is the CPU time used so far by the watched processes, by
// group, and by the whole machine.
type cpuSample struct {
	at      time.Time
	groups  map[string]float64 // CPU seconds, user and system
	busy    float64            // machine CPU seconds not idle nor waiting for I/O
	iowait  float64            // machine CPU seconds idle with I/O outstanding
	total   float64            // every machine CPU second, idle included
	load    procfs.LoadAvg
	missing []string // processes that could not be read
}

// sampleCPU reads /proc. Without it (not Linux) the sample is empty and
// the report has no CPU figures.
func sampleCPU(watch []watchedProcess) cpuSample {
	s := cpuSample{at: time.Now(), groups: map[string]float64{}}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		s.missing = append(s.missing, "/proc: "+err.Error())
		return s
	}
	for _, w := range watch {
		p, err := fs.Proc(w.pid)
		var st procfs.ProcStat
		if err == nil {
			st, err = p.Stat()
		}
		if err != nil {
			s.missing = append(s.missing, fmt.Sprintf("%s pid %d: %v", w.group, w.pid, err))
			continue
		}
		s.groups[w.group] += st.CPUTime()
	}
	if st, err := fs.Stat(); err == nil {
		t := st.CPUTotal
		s.iowait = t.Iowait
		s.busy = t.User + t.Nice + t.System + t.IRQ + t.SoftIRQ + t.Steal
		s.total = s.busy + t.Idle + t.Iowait
	} else {
		s.missing = append(s.missing, "/proc/stat: "+err.Error())
	}
	if l, err := fs.LoadAvg(); err == nil {
		s.load = *l
	} else {
		s.missing = append(s.missing, "/proc/loadavg: "+err.Error())
	}
	return s
}

// call is the outcome of one offered CreatePost.
type call struct {
	lag     time.Duration // from due to started, slot wait included
	latency time.Duration // from due to returned
	done    time.Time
	code    codes.Code
}

// rateRun is one open-loop run's outcome.
type rateRun struct {
	rate          int
	window        time.Duration
	calls         []call // the measured ones, in due order
	measureStart  time.Time
	lastStarted   time.Time // when the last measured call started
	before, after cpuSample
}

// offerPosts offers CreatePost open loop at rate a second for rateWarmup
// plus window, and samples CPU over the window.
func offerPosts(b *testing.B, post feedv1.PostServiceClient, watch []watchedProcess, rate int, window time.Duration) rateRun {
	b.Helper()
	warm := int(rateWarmup.Seconds() * float64(rate))
	measured := int(window.Seconds() * float64(rate))
	total := warm + measured
	interval := float64(time.Second) / float64(rate)
	ctx, cancel := context.WithTimeout(context.Background(), rateWarmup+window+2*rateCallTimeout+time.Minute)
	defer cancel()

	calls := make([]call, total)
	slots := make(chan struct{}, rateMaxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	due := func(i int) time.Time { return start.Add(time.Duration(float64(i) * interval)) }
	run := rateRun{rate: rate, window: window, measureStart: due(warm)}
	for i := range total {
		at := due(i)
		if i == warm {
			run.before = sampleCPU(watch)
		}
		time.Sleep(time.Until(at)) // the schedule itself, not a wait for a condition
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			b.Fatalf("call %d of %d never got a slot: %v", i, total, ctx.Err())
		}
		if i == total-1 {
			run.lastStarted = time.Now()
		}
		wg.Go(func() {
			defer func() { <-slots }()
			lag := time.Since(at)
			cctx, cancel := context.WithTimeout(ctx, rateCallTimeout)
			_, err := post.CreatePost(cctx, &feedv1.CreatePostRequest{
				AuthorId:       authorName(i % rateAuthors),
				Text:           "rate benchmark post",
				IdempotencyKey: fmt.Sprintf("rate%d", i),
			})
			cancel()
			now := time.Now()
			calls[i] = call{lag: lag, latency: now.Sub(at), done: now, code: status.Code(err)}
		})
	}
	wg.Wait()
	run.after = sampleCPU(watch)
	run.calls = calls[warm:]
	return run
}

// report logs the run and reports its metrics.
func (r rateRun) report(b *testing.B) {
	b.Helper()
	n := len(r.calls)
	if n < 2 {
		b.Fatalf("%d measured calls; want at least 2", n)
	}
	lat := make([]time.Duration, n)
	lag := make([]time.Duration, n)
	failed := map[codes.Code]int{}
	var ok int
	var lastDone time.Time
	for i, c := range r.calls {
		lat[i], lag[i] = c.latency, c.lag
		if c.code == codes.OK {
			ok++
		} else {
			failed[c.code]++
		}
		if c.done.After(lastDone) {
			lastDone = c.done
		}
	}
	slices.Sort(lat)
	slices.Sort(lag)
	at := func(d []time.Duration, q float64) float64 { return ms(d[int(q*float64(len(d)-1))]) }

	offered := float64(n-1) / r.lastStarted.Sub(r.measureStart).Seconds()
	done := float64(ok) / lastDone.Sub(r.measureStart).Seconds()
	b.ReportMetric(offered, "offered/s")
	b.ReportMetric(done, "done/s")
	b.ReportMetric(at(lat, 0.50), "p50-ms")
	b.ReportMetric(at(lat, 0.99), "p99-ms")
	b.ReportMetric(ms(lat[n-1]), "max-ms")
	b.ReportMetric(float64(n-ok), "failed")
	b.Logf("target %d/s for %v: %d calls offered at %.0f/s, %d succeeded at %.0f/s; latency from due p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms; failed by code %v",
		r.rate, r.window, n, offered, ok, done, at(lat, 0.5), at(lat, 0.9), at(lat, 0.99), ms(lat[n-1]), failed)
	b.Logf("start lag (due to started, slot waits included): p50 %.2f ms, p99 %.2f ms, max %.1f ms", at(lag, 0.5), at(lag, 0.99), ms(lag[n-1]))
	r.reportCPU(b, at(lat, 0.99))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reportCPU logs, over the measured window, the cores each group of
// processes used, the machine's, and the "bound:" line.
func (r rateRun) reportCPU(b *testing.B, p99 float64) {
	b.Helper()
	for _, m := range slices.Concat(r.before.missing, r.after.missing) {
		b.Logf("CPU sample incomplete: %s", m)
	}
	wall := r.after.at.Sub(r.before.at).Seconds()
	if wall <= 0 || r.after.total <= r.before.total {
		b.Log("bound: unknown (no CPU figures)")
		return
	}
	type use struct {
		group string
		cores float64
	}
	var uses []use
	var ours float64
	for g, after := range r.after.groups {
		if before, ok := r.before.groups[g]; ok {
			u := use{g, (after - before) / wall}
			uses = append(uses, u)
			ours += u.cores
		}
	}
	slices.SortFunc(uses, func(x, y use) int { return cmp.Compare(y.cores, x.cores) })
	var parts []string
	for _, u := range uses {
		parts = append(parts, fmt.Sprintf("%s %.2f", u.group, u.cores))
		b.ReportMetric(u.cores, u.group+"-cores")
	}
	busy := (r.after.busy - r.before.busy) / wall
	cpus := (r.after.total - r.before.total) / wall
	iowait := (r.after.iowait - r.before.iowait) / wall
	others := max(0, busy-ours)
	busyFrac := busy / cpus
	b.ReportMetric(100*busyFrac, "machine-busy-%")
	b.Logf("CPU over the %.1f s measured window, in cores: %s; other processes %.2f; machine %.2f of %.0f busy (%.0f%%), %.2f in I/O wait; load average %.2f %.2f %.2f at its start, %.2f %.2f %.2f at its end",
		wall, strings.Join(parts, ", "), others, busy, cpus, 100*busyFrac, iowait,
		r.before.load.Load1, r.before.load.Load5, r.before.load.Load15, r.after.load.Load1, r.after.load.Load5, r.after.load.Load15)

	top := "nothing"
	if len(uses) > 0 {
		top = fmt.Sprintf("%s (%.2f cores)", uses[0].group, uses[0].cores)
	}
	switch {
	case busyFrac >= 0.9:
		b.Logf("bound: CPU: the machine's %.0f cores were %.0f%% busy (this cluster %.2f cores, other processes %.2f); the largest user was %s", cpus, 100*busyFrac, ours, others, top)
	case iowait >= 0.5:
		b.Logf("bound: disk: %.2f cores idle in I/O wait, the machine %.0f%% busy; the largest CPU user was %s", iowait, 100*busyFrac, top)
	case p99 >= 100:
		b.Logf("bound: not CPU nor disk (machine %.0f%% busy, %.2f cores in I/O wait): calls wait on something else, such as locks or a queue; the largest CPU user was %s", 100*busyFrac, iowait, top)
	default:
		b.Logf("bound: nothing saturated at %d/s: the machine was %.0f%% busy; the largest CPU user was %s", r.rate, 100*busyFrac, top)
	}
}
