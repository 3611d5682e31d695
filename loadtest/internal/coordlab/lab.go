package coordlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-feed/herald/loadtest/internal/labkit"

	"github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// The lab's sections, in the order Run measures them.
const (
	SectionHandoff    = "handoff"
	SectionThroughput = "throughput"
	SectionFailover   = "failover"
	SectionFencing    = "fencing"
)

// AllSections are every section Run knows.
var AllSections = []string{SectionHandoff, SectionThroughput, SectionFailover, SectionFencing}

// The lock recipes' names, as the report shows them.
const (
	RecipeZKSequential = "ZooKeeper sequential lock"
	RecipeZKNaive      = "ZooKeeper naive lock"
	RecipeEtcdMutex    = "etcd Mutex"
	RecipeEtcdNaive    = "etcd naive lock"
)

// Config is what Run measures, and on which servers. Every section is
// bounded in time.
type Config struct {
	Servers Servers
	// Holder is the command that runs RunHolder in a new process, without
	// its --config flag: the lab's own binary and its holder subcommand.
	Holder []string
	// Root names the run's znode directory (/Root) and etcd key prefix
	// (Root/); Run deletes both at the end.
	Root     string
	Sections []string

	Contenders      []int
	MaxHandoffs     int
	HandoffDuration time.Duration
	// Hold is how long each holder keeps the lock in the hand-off cells.
	Hold time.Duration

	TTLs           []time.Duration
	FailoverTrials int
	FencingTTL     time.Duration
	FencingTrials  int

	InFlight     int
	MaxOps       int
	CellDuration time.Duration

	// Progress gets a line as each measurement starts and ends.
	Progress io.Writer
}

// DefaultConfig returns the settings of `make lab-coordination`, without
// servers, holder command and root.
func DefaultConfig() Config {
	return Config{
		Sections:        AllSections,
		Contenders:      []int{1, 10, 100},
		MaxHandoffs:     300,
		HandoffDuration: 6 * time.Second,
		Hold:            5 * time.Millisecond,
		TTLs:            []time.Duration{2 * time.Second, 5 * time.Second},
		FailoverTrials:  4,
		FencingTTL:      2 * time.Second,
		FencingTrials:   3,
		InFlight:        64,
		MaxOps:          20000,
		CellDuration:    5 * time.Second,
	}
}

// Validate reports the first setting that is out of bounds.
func (c Config) Validate() error {
	switch {
	case len(c.Servers.ZK) == 0:
		return errors.New("no ZooKeeper servers")
	case len(c.Servers.Etcd) == 0:
		return errors.New("no etcd endpoints")
	case c.Root == "" || strings.ContainsAny(c.Root, " \t\n") || strings.HasPrefix(c.Root, "/") || strings.HasSuffix(c.Root, "/"):
		return fmt.Errorf("root %q: want a relative path without spaces or a trailing slash", c.Root)
	case len(c.Sections) == 0:
		return errors.New("no sections")
	}
	for _, s := range c.Sections {
		if !slices.Contains(AllSections, s) {
			return fmt.Errorf("section %q: want one of %s", s, strings.Join(AllSections, ", "))
		}
	}
	for _, n := range c.Contenders {
		if n < 1 || n > 500 {
			return fmt.Errorf("contenders %d: want 1 to 500", n)
		}
	}
	for _, d := range append([]time.Duration{c.FencingTTL}, c.TTLs...) {
		if d < time.Second || d > time.Minute || d%time.Second != 0 {
			return fmt.Errorf("ttl %v: want whole seconds from 1s to 1m (an etcd lease TTL is whole seconds)", d)
		}
	}
	switch {
	case c.MaxHandoffs < 1 || c.MaxHandoffs > 100000:
		return fmt.Errorf("handoffs %d: want 1 to 100000", c.MaxHandoffs)
	case c.HandoffDuration <= 0 || c.HandoffDuration > 5*time.Minute:
		return fmt.Errorf("handoff duration %v: want up to 5m", c.HandoffDuration)
	case c.Hold < 0 || c.Hold > time.Second:
		return fmt.Errorf("hold %v: want 0 to 1s", c.Hold)
	case c.FailoverTrials < 1 || c.FailoverTrials > 20:
		return fmt.Errorf("failover trials %d: want 1 to 20", c.FailoverTrials)
	case c.FencingTrials < 1 || c.FencingTrials > 20:
		return fmt.Errorf("fencing trials %d: want 1 to 20", c.FencingTrials)
	case c.InFlight < 1 || c.InFlight > 1024:
		return fmt.Errorf("in flight %d: want 1 to 1024", c.InFlight)
	case c.MaxOps < 1 || c.MaxOps > 10000000:
		return fmt.Errorf("ops %d: want 1 to 10000000", c.MaxOps)
	case c.CellDuration <= 0 || c.CellDuration > 5*time.Minute:
		return fmt.Errorf("cell duration %v: want up to 5m", c.CellDuration)
	}
	return nil
}

// Lab is a run's connections and namespace on the servers.
type Lab struct {
	servers  Servers
	holder   []string
	zkRoot   string
	etcdRoot string
	// zk and etcd are the lab's own clients, for set-up, counting and
	// clean-up; each measurement opens its own.
	zk   *zk.Conn
	etcd *clientv3.Client
}

// NewLab connects to the servers and creates the run's znode directory.
func NewLab(ctx context.Context, servers Servers, holder []string, root string) (*Lab, error) {
	lab := &Lab{servers: servers, holder: holder, zkRoot: "/" + root, etcdRoot: root}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	if lab.zk, err = DialZK(dctx, servers.ZK, contenderTTL); err != nil {
		return nil, err
	}
	if err := EnsureZKPath(lab.zk, lab.zkRoot); err != nil {
		lab.zk.Close()
		return nil, err
	}
	if lab.etcd, err = servers.DialEtcd(ctx); err != nil {
		lab.zk.Close()
		return nil, err
	}
	if _, err := lab.etcd.Get(dctx, lab.etcdRoot+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		lab.Close(ctx)
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(servers.Etcd, ","), err)
	}
	return lab, nil
}

// Close deletes the run's znodes and keys and closes the lab's clients.
func (lab *Lab) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	err := DeleteZKTree(lab.zk, lab.zkRoot)
	if _, derr := lab.etcd.Delete(ctx, lab.etcdRoot+"/", clientv3.WithPrefix()); derr != nil {
		err = errors.Join(err, derr)
	}
	lab.zk.Close()
	return errors.Join(err, lab.etcd.Close())
}

// path returns rel's place on system: a znode path or an etcd key prefix.
func (lab *Lab) path(system, rel string) string {
	if system == SystemZK {
		return lab.zkRoot + "/" + rel
	}
	return lab.etcdRoot + "/" + rel
}

// etcdSession opens a client and a session whose lease has ttl.
func (lab *Lab) etcdSession(ctx context.Context, ttl time.Duration) (*clientv3.Client, *concurrency.Session, error) {
	cli, err := lab.servers.DialEtcd(ctx)
	if err != nil {
		return nil, nil, err
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(ttl/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		_ = cli.Close()
		return nil, nil, fmt.Errorf("etcd session: %w", err)
	}
	return cli, s, nil
}

func prefixCount() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
}

// LockRecipes returns the four locks on the lab's servers, each on its own
// directory or prefix named after cell.
func (lab *Lab) LockRecipes(cell string) []LockRecipe {
	zkDir := func(name string) string { return lab.path(SystemZK, "handoff/"+cell+"/"+name) }
	etcdPrefix := func(name string) string { return lab.path(SystemEtcd, "handoff/"+cell+"/"+name) }
	zkContender := func(dir string, mk func(*zk.Conn, *atomic.Int64) Locker) func(context.Context, *atomic.Int64) (Contender, error) {
		return func(ctx context.Context, events *atomic.Int64) (Contender, error) {
			conn, err := DialZK(ctx, lab.servers.ZK, contenderTTL)
			if err != nil {
				return Contender{}, err
			}
			if err := EnsureZKPath(conn, dir); err != nil {
				conn.Close()
				return Contender{}, err
			}
			return Contender{Locker: mk(conn, events), Close: conn.Close}, nil
		}
	}
	etcdContender := func(mk func(*concurrency.Session) Locker) func(context.Context, *atomic.Int64) (Contender, error) {
		return func(ctx context.Context, events *atomic.Int64) (Contender, error) {
			cli, s, err := lab.etcdSession(ctx, contenderTTL)
			if err != nil {
				return Contender{}, err
			}
			CountWatchEvents(cli, events)
			return Contender{Locker: mk(s), Close: func() { _ = s.Close(); _ = cli.Close() }}, nil
		}
	}
	zkCleanup := func(dir string) func(context.Context) error {
		return func(context.Context) error { return DeleteZKTree(lab.zk, dir) }
	}
	etcdCleanup := func(prefix string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := lab.etcd.Delete(ctx, prefix, clientv3.WithPrefix())
			return err
		}
	}
	seq, naive := zkDir("sequential"), zkDir("naive")
	mutex, nlock := etcdPrefix("mutex"), etcdPrefix("naive")
	return []LockRecipe{
		{Name: RecipeZKSequential, System: SystemZK, Cleanup: zkCleanup(seq),
			NewContender: zkContender(seq, func(c *zk.Conn, ev *atomic.Int64) Locker { return NewZKLock(c, seq, ev) })},
		{Name: RecipeZKNaive, System: SystemZK, Cleanup: zkCleanup(naive),
			NewContender: zkContender(naive, func(c *zk.Conn, ev *atomic.Int64) Locker { return NewZKNaiveLock(c, naive+"/lock", ev) })},
		{Name: RecipeEtcdMutex, System: SystemEtcd, Cleanup: etcdCleanup(mutex),
			NewContender: etcdContender(func(s *concurrency.Session) Locker { return NewEtcdMutex(s, mutex) })},
		{Name: RecipeEtcdNaive, System: SystemEtcd, Cleanup: etcdCleanup(nlock),
			NewContender: etcdContender(func(s *concurrency.Session) Locker { return NewEtcdNaiveLock(s, nlock+"/lock") })},
	}
}

// Throughput operations, as the report names them.
const (
	OpWrite             = "write"
	OpRead              = "read"
	OpReadLinearizable  = "read, linearizable"
	OpReadSerializable  = "read, serializable"
	throughputConns     = 8
	throughputKeys      = 64
	throughputValueSize = 128
)

// MeasureThroughputs measures writes and reads on both systems, one at a
// time and inFlight at a time. Each system gets throughputConns
// connections, connection i to server i mod 3 only, so that a cell spreads
// evenly over the nodes; worker w uses connection w mod throughputConns, so
// the one-at-a-time cells use the first server (whatever its role).
func (lab *Lab) MeasureThroughputs(ctx context.Context, inFlight, maxOps int, cellDur time.Duration, progress func(string)) ([]ThroughputResult, error) {
	val := []byte(strings.Repeat("x", throughputValueSize))
	zkKey := func(i int) string { return lab.path(SystemZK, "throughput/k"+strconv.Itoa(i%throughputKeys)) }
	etcdKey := func(i int) string { return lab.path(SystemEtcd, "throughput/k"+strconv.Itoa(i%throughputKeys)) }

	var zks []*zk.Conn
	var clis []*clientv3.Client
	defer func() {
		for _, c := range zks {
			c.Close()
		}
		for _, c := range clis {
			_ = c.Close()
		}
	}()
	for i := range throughputConns {
		one := lab.servers
		one.ZK = []string{lab.servers.ZK[i%len(lab.servers.ZK)]}
		one.Etcd = []string{lab.servers.Etcd[i%len(lab.servers.Etcd)]}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c, err := DialZK(dctx, one.ZK, contenderTTL)
		cancel()
		if err != nil {
			return nil, err
		}
		zks = append(zks, c)
		cli, err := one.DialEtcd(ctx)
		if err != nil {
			return nil, err
		}
		clis = append(clis, cli)
	}
	if err := EnsureZKPath(lab.zk, lab.path(SystemZK, "throughput")); err != nil {
		return nil, err
	}
	for i := range throughputKeys {
		if _, err := lab.zk.Create(zkKey(i), val, 0, openACL); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return nil, fmt.Errorf("create %s: %w", zkKey(i), err)
		}
		if _, err := lab.etcd.Put(ctx, etcdKey(i), string(val)); err != nil {
			return nil, fmt.Errorf("put %s: %w", etcdKey(i), err)
		}
	}

	type cell struct {
		system, op string
		do         func(ctx context.Context, w, i int) error
	}
	cells := []cell{
		{SystemZK, OpWrite, func(_ context.Context, w, i int) error {
			_, err := zks[w%len(zks)].Set(zkKey(i), val, -1)
			return err
		}},
		{SystemEtcd, OpWrite, func(ctx context.Context, w, i int) error {
			_, err := clis[w%len(clis)].Put(ctx, etcdKey(i), string(val))
			return err
		}},
		{SystemZK, OpRead, func(_ context.Context, w, i int) error {
			_, _, err := zks[w%len(zks)].Get(zkKey(i))
			return err
		}},
		{SystemEtcd, OpReadLinearizable, func(ctx context.Context, w, i int) error {
			_, err := clis[w%len(clis)].Get(ctx, etcdKey(i))
			return err
		}},
		{SystemEtcd, OpReadSerializable, func(ctx context.Context, w, i int) error {
			_, err := clis[w%len(clis)].Get(ctx, etcdKey(i), clientv3.WithSerializable())
			return err
		}},
	}
	// A second of each cell's operations first, unrecorded: the JVMs'
	// JIT compilers and both servers' caches warm up.
	progress("throughput: warming up ...")
	for _, c := range cells {
		MeasureThroughput(ctx, c.system, c.op, inFlight, maxOps, time.Second, c.do)
	}
	var out []ThroughputResult
	for _, c := range cells {
		for _, n := range []int{1, inFlight} {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			r := MeasureThroughput(ctx, c.system, c.op, n, maxOps, cellDur, c.do)
			progress(fmt.Sprintf("throughput %s %s, %d in flight: %.0f ops/s (%d ops, %d errors)", c.system, c.op, n, r.OpsPerSec, r.Ops, r.Errors))
			out = append(out, r)
		}
	}
	return out, nil
}

// ServerInfo describes the servers at the time of the run.
func (lab *Lab) ServerInfo(ctx context.Context) []string {
	var out []string
	for _, addr := range lab.servers.ZK {
		version, mode, err := zkSrvr(ctx, addr)
		if err != nil {
			out = append(out, fmt.Sprintf("ZooKeeper %s: %v", addr, err))
			continue
		}
		out = append(out, fmt.Sprintf("ZooKeeper %s: %s, %s", addr, version, mode))
	}
	for _, ep := range lab.servers.Etcd {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := lab.etcd.Status(sctx, ep)
		cancel()
		if err != nil {
			out = append(out, fmt.Sprintf("etcd %s: %v", ep, err))
			continue
		}
		role := "follower"
		if st.Leader == st.Header.MemberId {
			role = "leader"
		}
		out = append(out, fmt.Sprintf("etcd %s: %s, %s", ep, st.Version, role))
	}
	return out
}

// zkSrvr asks the ZooKeeper server at addr for its version and mode with
// the srvr four-letter word. (go-zookeeper's FLWSrvr cannot parse 3.9's
// answer.)
func zkSrvr(ctx context.Context, addr string) (version, mode string, err error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("srvr")); err != nil {
		return "", "", err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Zookeeper version: "); ok {
			version, _, _ = strings.Cut(v, ",")
		}
		if m, ok := strings.CutPrefix(line, "Mode: "); ok {
			mode = m
		}
	}
	if mode == "" {
		return "", "", fmt.Errorf("srvr: %q", strings.TrimSpace(string(b)))
	}
	return version, mode, nil
}

// Run measures cfg.Sections and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	progress := func(s string) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "%s  %s\n", time.Now().Format("15:04:05"), s)
		}
	}
	r := &Report{RunInfo: labkit.Start(), Settings: settingsOf(cfg)}
	lab, err := NewLab(ctx, cfg.Servers, cfg.Holder, cfg.Root)
	if err != nil {
		return nil, err
	}
	defer lab.Close(ctx)
	r.Servers = lab.ServerInfo(ctx)
	for _, s := range r.Servers {
		progress(s)
	}
	on := func(s string) bool { return slices.Contains(cfg.Sections, s) }

	if on(SectionHandoff) {
		for _, n := range cfg.Contenders {
			for _, rec := range lab.LockRecipes(fmt.Sprintf("c%d", n)) {
				if err := ctx.Err(); err != nil {
					return r, err
				}
				progress(fmt.Sprintf("hand-off: %s, %d contenders ...", rec.Name, n))
				h := MeasureHandoffs(ctx, rec, n, cfg.MaxHandoffs, cfg.Hold, cfg.HandoffDuration)
				progress(fmt.Sprintf("  %d hand-offs, p50 %.2f ms, p99 %.2f ms, %.2f watch events/hand-off%s", h.Handoffs, h.P50Ms, h.P99Ms, h.EventsPerHandoff, errSuffix(h.Error)))
				r.Handoffs = append(r.Handoffs, h)
			}
		}
	}
	if on(SectionThroughput) {
		tp, err := lab.MeasureThroughputs(ctx, cfg.InFlight, cfg.MaxOps, cfg.CellDuration, progress)
		r.Throughput = tp
		if err != nil {
			r.Notes = append(r.Notes, "throughput: "+err.Error())
		}
	}
	if on(SectionFailover) {
		// The cells run at once: each mostly waits out a timeout, and
		// one after another they would take minutes.
		progress(fmt.Sprintf("failover: %d trials each of %d cells, at once ...", cfg.FailoverTrials, 4*len(cfg.TTLs)))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, system := range []string{SystemZK, SystemEtcd} {
			for _, recipe := range []string{RecipeLock, RecipeElection} {
				for _, ttl := range cfg.TTLs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						f := lab.MeasureFailover(ctx, system, recipe, ttl, cfg.FailoverTrials)
						progress(fmt.Sprintf("  failover %s %s, ttl %v: median %.0f ms%s", system, recipe, ttl, f.MedianMs, errSuffix(f.Error)))
						mu.Lock()
						r.Failovers = append(r.Failovers, f)
						mu.Unlock()
					}()
				}
			}
		}
		wg.Wait()
		slices.SortFunc(r.Failovers, func(a, b FailoverResult) int {
			return strings.Compare(fmt.Sprintf("%s %s %09.3f", a.System, a.Recipe, a.TTLSeconds), fmt.Sprintf("%s %s %09.3f", b.System, b.Recipe, b.TTLSeconds))
		})
	}
	if on(SectionFencing) {
		progress(fmt.Sprintf("fencing: %d trials on each system, ttl %v, the systems at once ...", cfg.FencingTrials, cfg.FencingTTL))
		r.Fencing = make([]FencingResult, 2)
		var wg sync.WaitGroup
		for i, system := range []string{SystemZK, SystemEtcd} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f := lab.FencingDrill(ctx, system, cfg.FencingTTL, cfg.FencingTrials)
				accepted, rejected := 0, 0
				for _, t := range f.Trials {
					if t.StaleWrite.Unfenced.Accepted {
						accepted++
					}
					if !t.StaleWrite.Fenced.Accepted {
						rejected++
					}
				}
				progress(fmt.Sprintf("  fencing %s: stale write accepted without the check %d/%d, rejected with it %d/%d%s", system, accepted, len(f.Trials), rejected, len(f.Trials), errSuffix(f.Error)))
				r.Fencing[i] = f
			}()
		}
		wg.Wait()
	}
	r.Finish()
	return r, ctx.Err()
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (error: " + e + ")"
}
