// Package compare runs one seeded workload against Herald under each
// fan-out strategy in turn, each on a fresh all-in-one server with its own
// namespace and keyspace over the same backing servers, and tabulates the
// results side by side.
package compare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"

	"github.com/herald-feed/herald/loadtest/internal/graph"
	"github.com/herald-feed/herald/loadtest/internal/load"
	"github.com/herald-feed/herald/loadtest/internal/report"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/node"
)

// Config is a comparison.
type Config struct {
	// Herald is the all-in-one binary to start for each strategy.
	Herald     string
	Strategies []string
	// CelebrityThreshold is passed to every server; only hybrid uses it.
	CelebrityThreshold int
	// Cache is memory or redis; Store is pebble or cassandra.
	Cache, Store string
	Redis        string
	Cassandra    string
	// RedisLogin and CassandraLogin log in to the real servers, the
	// servers started for each strategy and this package's own clients.
	RedisLogin, CassandraLogin node.Login
	// LocalDir is deploy/local's state directory; the backing servers'
	// pidfiles there let the comparison count their CPU too. Empty: Herald
	// only.
	LocalDir string
	// Keep leaves each strategy's Redis keys and keyspace in place.
	Keep   bool
	OutDir string
	// Settle is a pause between the graph build and the run, so the
	// follow backfills drain before anything is measured.
	Settle time.Duration

	Graph graph.Params
	Setup load.SetupConfig
	Run   load.RunConfig

	Progress io.Writer
}

// Result is one strategy's outcome.
type Result struct {
	Strategy  string `json:"strategy"`
	Namespace string `json:"namespace"`
	Error     string `json:"error,omitempty"`
	// Report is the run's feedload report (setup included).
	Report *report.Report `json:"-"`
	Posts  int64          `json:"posts"`
	// CPU seconds used during the run (not the graph build).
	HeraldCPU    float64            `json:"herald_cpu_s"`
	BackendCPU   map[string]float64 `json:"backend_cpu_s,omitempty"`
	MachineBusyS float64            `json:"machine_busy_cpu_s"`
	RunSeconds   float64            `json:"run_s"`
	// RedisBytes is MEMORY USAGE summed over the namespace's keys at the
	// end of the run, by kind (tl, recent, post, ...).
	RedisBytes map[string]int64 `json:"redis_bytes,omitempty"`
	RedisKeys  map[string]int64 `json:"redis_keys,omitempty"`
	// FanoutLagP50 and FanoutLagP99 are NaN when no post was pushed, so
	// the JSON carries them as FanoutLagMs instead.
	FanoutLagP50 float64            `json:"-"`
	FanoutLagP99 float64            `json:"-"`
	FanoutLagMs  map[string]float64 `json:"fanout_lag_ms,omitempty"`
	Deliveries   float64            `json:"fanout_deliveries"`
	FanoutPushed float64            `json:"fanout_posts_pushed"`
	FanoutPulled float64            `json:"fanout_posts_pulled"`
	MetricsCPU   float64            `json:"process_cpu_seconds_total_delta"`
}

func (c *Config) logf(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, format+"\n", args...)
	}
}

// Run compares the strategies one after another. It returns the results
// so far if ctx ends.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if _, err := os.Stat(cfg.Herald); err != nil {
		return nil, fmt.Errorf("herald binary: %w (run make build)", err)
	}
	if cfg.Cache == "redis" && cfg.Redis == "" || cfg.Store == "cassandra" && cfg.Cassandra == "" {
		return nil, errors.New("-cache redis needs --redis and -store cassandra needs --cassandra")
	}
	g, err := graph.Generate(cfg.Graph)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	stamp := strconv.FormatInt(time.Now().Unix(), 36)
	var results []Result
	for i, s := range cfg.Strategies {
		if ctx.Err() != nil {
			break
		}
		cfg.logf("\n== strategy %s (%d of %d) ==", s, i+1, len(cfg.Strategies))
		res := cfg.one(ctx, g, s, "fl"+stamp+"_"+s)
		if res.Error != "" {
			cfg.logf("strategy %s: %s", s, res.Error)
		}
		results = append(results, res)
	}
	return results, nil
}

// freePort returns a loopback address nothing listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

type server struct {
	cmd     *exec.Cmd
	addr    string
	metrics string
	exited  chan error
}

func (cfg *Config) start(ctx context.Context, strategy, ns, dataDir, logPath string) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	maddr, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"-strategy", strategy, "-celebrity-threshold", strconv.Itoa(cfg.CelebrityThreshold),
		"-namespace", ns, "-addr", addr, "-metrics", maddr, "-http-addr", "", "-data", dataDir, "-log-level", "warn",
		"-cache", cfg.Cache, "-store", cfg.Store}
	// The comparison measures the strategies, not the per-user rate
	// limits: at a bench's rates a celebrity posts, and a lag observer
	// reads, faster than the defaults allow one user. Authentication stays
	// on, as in a deployment.
	for _, class := range []string{"posts", "deletes", "follows", "reads"} {
		args = append(args, "-rate-"+class, "off")
	}
	if cfg.Cache == "redis" {
		args = append(args, "-redis", cfg.Redis)
		if cfg.RedisLogin.User != "" {
			args = append(args, "-redis-user", cfg.RedisLogin.User, "-redis-password-file", cfg.RedisLogin.PasswordFile)
		}
	}
	if cfg.Store == "cassandra" {
		args = append(args, "-cassandra", cfg.Cassandra, "-cassandra-keyspace", ns)
		if cfg.CassandraLogin.User != "" {
			args = append(args, "-cassandra-user", cfg.CassandraLogin.User, "-cassandra-password-file", cfg.CassandraLogin.PasswordFile)
		}
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Herald, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server must not read HERALD_* settings meant for something else.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	detach(cmd)
	cfg.logf("starting %s %s", cfg.Herald, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &server{cmd: cmd, addr: addr, metrics: "http://" + maddr + "/metrics", exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait(); logf.Close() }()
	return s, nil
}

// stop sends SIGTERM to the server feedload started, and SIGKILL if it has
// not exited within 30s.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		return err
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		return fmt.Errorf("herald (pid %d) did not stop within 30s of SIGTERM; killed", s.cmd.Process.Pid)
	}
}

// backendPIDs reads the pidfiles deploy/local keeps for the servers whose
// CPU counts.
func (cfg *Config) backendPIDs() map[string]int {
	out := make(map[string]int)
	if cfg.LocalDir == "" {
		return out
	}
	var names []string
	if cfg.Cache == "redis" {
		names = append(names, "redis")
	}
	if cfg.Store == "cassandra" {
		names = append(names, "cassandra")
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(cfg.LocalDir, "run", n+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if _, err := ProcCPU(pid); err == nil {
				out[n] = pid
			}
		}
	}
	return out
}

// machineBusy returns the CPU seconds all cores spent not idle, from
// /proc/stat: a gauge of how much else ran during the measurement.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	busy := 0.0
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += x
	}
	return busy / clockTicks
}

func (cfg *Config) one(ctx context.Context, g *graph.Graph, strategy, ns string) (res Result) {
	res = Result{Strategy: strategy, Namespace: ns, BackendCPU: map[string]float64{}}
	dataDir, err := os.MkdirTemp("", "feedload-"+ns+"-")
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer os.RemoveAll(dataDir)
	srv, err := cfg.start(ctx, strategy, ns, dataDir, filepath.Join(cfg.OutDir, strategy+"-herald.log"))
	if err != nil {
		res.Error = "start herald: " + err.Error()
		return res
	}
	defer func() {
		if err := srv.stop(); err != nil && !isSignalExit(err) {
			cfg.logf("herald %s: %v", strategy, err)
		}
		if !cfg.Keep {
			cfg.cleanup(ns)
		}
	}()

	// A fresh keyspace takes Cassandra a few seconds to create.
	var t *load.Target
	deadline := time.Now().Add(120 * time.Second)
	for {
		// The server writes its development key at start; the load signs
		// each user's token with it.
		var signer *auth.Signer
		if signer, err = auth.DevSigner(dataDir); err == nil {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			t, err = load.Dial(dctx, load.DialConfig{Addr: srv.addr, Signer: signer})
			cancel()
			if err == nil {
				break
			}
		}
		select {
		case e := <-srv.exited:
			srv.exited <- e
			res.Error = fmt.Sprintf("herald exited at start (%v); see %s", e, filepath.Join(cfg.OutDir, strategy+"-herald.log"))
			return res
		default:
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			res.Error = "herald not serving: " + err.Error()
			return res
		}
		time.Sleep(500 * time.Millisecond)
	}
	defer t.Close()
	t.Desc = fmt.Sprintf("all-in-one %s (-strategy %s, -cache %s, -store %s, pid %d)", srv.addr, strategy, cfg.Cache, cfg.Store, srv.cmd.Process.Pid)
	cfg.logf("herald up at %s (pid %d), namespace and keyspace %s", srv.addr, srv.cmd.Process.Pid, ns)

	setupRec := newRecorder()
	setup, err := load.Build(ctx, t, g, cfg.Setup, setupRec)
	if err != nil {
		res.Error = "graph build: " + err.Error()
		return res
	}
	if ctx.Err() != nil {
		res.Error = "interrupted during the graph build"
		return res
	}
	cfg.logf("graph built: %d follows in %.1fs (%.0f/s); settling %s", setup.Done, setup.Seconds, setup.RatePerS, cfg.Settle)
	select {
	case <-ctx.Done():
		res.Error = "interrupted"
		return res
	case <-time.After(cfg.Settle):
	}

	pids := cfg.backendPIDs()
	hpid := srv.cmd.Process.Pid
	type sample struct {
		at      time.Time
		herald  float64
		backend map[string]float64
		busy    float64
		metrics Metrics
	}
	take := func() sample {
		s := sample{at: time.Now(), backend: map[string]float64{}, busy: machineBusy()}
		s.herald, _ = ProcCPU(hpid)
		for n, p := range pids {
			s.backend[n], _ = ProcCPU(p)
		}
		var err error
		if s.metrics, err = Scrape(ctx, srv.metrics); err != nil {
			cfg.logf("metrics scrape: %v", err)
		}
		return s
	}
	var s0, s1 sample
	run := cfg.Run
	run.RunID = ns
	run.OnMeasure = func(end bool) {
		if end {
			s1 = take()
		} else {
			s0 = take()
		}
	}
	rep, err := load.Run(ctx, t, g, run)
	if err != nil {
		res.Error = "run: " + err.Error()
		return res
	}
	if s0.at.IsZero() || s1.at.IsZero() {
		res.Error = "interrupted before the measured window ended"
		return res
	}
	res.RunSeconds = s1.at.Sub(s0.at).Seconds()
	res.HeraldCPU = s1.herald - s0.herald
	for n := range pids {
		res.BackendCPU[n] = s1.backend[n] - s0.backend[n]
	}
	res.MachineBusyS = s1.busy - s0.busy
	if s0.metrics != nil && s1.metrics != nil {
		d := Delta(s0.metrics, s1.metrics)
		res.MetricsCPU = d.Sum("process_cpu_seconds_total")
		res.FanoutLagP50 = d.Quantile("herald_fanout_lag_seconds", 0.5)
		res.FanoutLagP99 = d.Quantile("herald_fanout_lag_seconds", 0.99)
		if !math.IsNaN(res.FanoutLagP50) {
			res.FanoutLagMs = map[string]float64{"p50": res.FanoutLagP50 * 1000, "p99": res.FanoutLagP99 * 1000}
		}
		res.Deliveries = d.Sum("herald_fanout_deliveries_total")
		res.FanoutPushed = d.Sum(`herald_fanout_posts_total{mode="push"}`)
		res.FanoutPulled = d.Sum(`herald_fanout_posts_total{mode="pull"}`)
	}
	if cfg.Cache == "redis" {
		res.RedisBytes, res.RedisKeys, err = cfg.redisUsage(context.WithoutCancel(ctx), ns+":")
		if err != nil {
			cfg.logf("redis memory: %v", err)
		}
	}

	rep.Label = strategy
	rep.GraphParams, rep.Graph, rep.Setup = cfg.Graph, g.Stats(), setup
	rep.Methods = append(rep.Methods, setupRec.Summary(report.Follow, false))
	res.Report = rep
	res.Posts = rep.Method(report.CreatePost).Count
	if files, err := rep.WriteFiles(cfg.OutDir, strategy); err != nil {
		cfg.logf("report %s: %v", strategy, err)
	} else {
		cfg.logf("wrote %s", strings.Join(files, ", "))
	}
	return res
}

func isSignalExit(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && !ee.Exited()
}

// redisUsage sums MEMORY USAGE over every key under prefix, by the key's
// kind: the part of its name after the prefix, up to ':' or '{'.
func (cfg *Config) redisUsage(ctx context.Context, prefix string) (bytes, keys map[string]int64, err error) {
	rdb, err := cfg.redisClient()
	if err != nil {
		return nil, nil, err
	}
	defer rdb.Close()
	bytes, keys = map[string]int64{}, map[string]int64{}
	var cursor uint64
	for {
		ks, next, err := rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return bytes, keys, err
		}
		pipe := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(ks))
		for i, k := range ks {
			cmds[i] = pipe.MemoryUsage(ctx, k, 0)
		}
		if len(ks) > 0 {
			pipe.Exec(ctx) // per-key errors (a key expired meanwhile) are in cmds
		}
		for i, k := range ks {
			n, err := cmds[i].Result()
			if err != nil {
				continue
			}
			kind := strings.TrimPrefix(k, prefix)
			if j := strings.IndexAny(kind, ":{"); j >= 0 {
				kind = kind[:j]
			}
			bytes[kind] += n
			keys[kind]++
		}
		cursor = next
		if cursor == 0 {
			return bytes, keys, nil
		}
	}
}

// redisClient returns a client of the Redis the strategies run on, with
// the login.
func (cfg *Config) redisClient() (*redis.Client, error) {
	user, password, err := cfg.RedisLogin.Read("redis")
	if err != nil {
		return nil, err
	}
	return redis.NewClient(&redis.Options{Addr: cfg.Redis, Username: user, Password: password}), nil
}

// cleanup deletes the namespace's Redis keys and drops its keyspace.
func (cfg *Config) cleanup(ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if cfg.Cache == "redis" {
		rdb, err := cfg.redisClient()
		if err != nil {
			cfg.logf("cleanup redis: %v", err)
			return
		}
		var cursor uint64
		n := 0
		for {
			ks, next, err := rdb.Scan(ctx, cursor, ns+":*", 1000).Result()
			if err != nil {
				cfg.logf("cleanup redis: %v", err)
				break
			}
			if len(ks) > 0 {
				rdb.Unlink(ctx, ks...)
				n += len(ks)
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		rdb.Close()
		cfg.logf("cleanup: deleted %d Redis keys under %s:", n, ns)
	}
	if cfg.Store == "cassandra" {
		cl := gocql.NewCluster(strings.Split(cfg.Cassandra, ",")...)
		user, password, err := cfg.CassandraLogin.Read("cassandra")
		if err != nil {
			cfg.logf("cleanup cassandra: %v", err)
			return
		}
		if user != "" {
			cl.Authenticator = gocql.PasswordAuthenticator{Username: user, Password: password}
		}
		cl.Timeout = 30 * time.Second
		cl.ConnectTimeout = 10 * time.Second
		s, err := cl.CreateSession()
		if err != nil {
			cfg.logf("cleanup cassandra: %v", err)
			return
		}
		defer s.Close()
		if err := s.Query("DROP KEYSPACE IF EXISTS " + ns).WithContext(ctx).Exec(); err != nil {
			cfg.logf("cleanup cassandra: drop keyspace %s: %v", ns, err)
			return
		}
		cfg.logf("cleanup: dropped keyspace %s", ns)
	}
}
