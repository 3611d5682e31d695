package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/herald-feed/herald/loadtest/internal/compare"
	"github.com/herald-feed/herald/loadtest/internal/graph"
	"github.com/herald-feed/herald/loadtest/internal/load"
	"github.com/herald-feed/herald/loadtest/internal/report"
	"github.com/herald-feed/herald/loadtest/internal/stats"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/tlsconfig"
)

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "feedload",
		Short:         "Load-test a Herald deployment: graph build, open-loop posts and reads, post→visible lag",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())
	})
	root.AddCommand(runCmd(stdout, stderr), compareCmd(stdout, stderr))
	return root
}

// workload holds the flags run and compare share.
type workload struct {
	g      graph.Params
	setup  load.SetupConfig
	run    load.RunConfig
	settle time.Duration
	out    string
}

func (w *workload) bind(fs *pflag.FlagSet) {
	fs.IntVar(&w.g.Users, "users", 1000, "accounts in the graph, celebrities included")
	fs.Float64Var(&w.g.MeanFollows, "mean-follows", 10, "mean number of ordinary accounts each user follows (geometric law)")
	fs.IntVar(&w.g.Celebrities, "celebrities", 3, "celebrity accounts")
	fs.Float64Var(&w.g.CelebrityReach, "celebrity-reach", 0.3, "fraction of users following each celebrity")
	fs.Float64Var(&w.g.Zipf, "zipf", 1.1, "popularity exponent among ordinary accounts (0 = uniform)")
	fs.Uint64Var(&w.g.Seed, "seed", 1, "seed of the graph and of every request's choices")
	fs.StringVar(&w.g.Prefix, "user-prefix", "fl_", "prefix of every user ID ([a-z0-9_])")
	fs.IntVar(&w.setup.Concurrency, "setup-concurrency", 16, "follows in flight while building the graph")
	fs.IntVar(&w.setup.Retries, "setup-retries", 5, "retries of a follow that fails with a retryable code")
	fs.DurationVar(&w.settle, "settle", 3*time.Second, "pause between the graph build and the run, for the follow backfills to drain")

	fs.DurationVar(&w.run.Warmup, "warmup", 0, "run the workload this long before measuring (requests made, not recorded)")
	fs.DurationVar(&w.run.Duration, "duration", 30*time.Second, "how long to issue measured requests (at most 2h)")
	fs.Float64Var(&w.run.PostRate, "post-rate", 20, "CreatePost calls per second, open loop")
	fs.Float64Var(&w.run.ReadRate, "read-rate", 100, "GetHomeTimeline calls per second, open loop")
	fs.IntVar(&w.run.PageSize, "page-size", 20, "page size of the workload's reads")
	fs.Float64Var(&w.run.CelebrityPostShare, "celebrity-post-share", 0.05, "fraction of posts written by celebrities")
	fs.IntVar(&w.run.MaxInFlight, "max-in-flight", 512, "most requests in flight per schedule; waiting for a slot counts as latency")
	fs.DurationVar(&w.run.Timeout, "timeout", 5*time.Second, "deadline of each call")
	fs.StringVar(&w.run.LagMode, "lag", load.LagPoll, "how followers observe posts: poll (read the home timeline), stream (StreamHomeTimeline) or off")
	fs.IntVar(&w.run.LagFollowers, "lag-followers", 2, "poll mode: followers that watch each sampled post")
	fs.Float64Var(&w.run.LagSample, "lag-sample", 1, "poll mode: fraction of posts watched")
	fs.IntVar(&w.run.MaxWatchers, "lag-max-watchers", 64, "poll mode: most followers polling at once; further posts go unwatched (and are counted)")
	fs.IntVar(&w.run.Observers, "observers", 50, "stream mode: users that keep a stream open")
	fs.DurationVar(&w.run.LagTimeout, "lag-timeout", 10*time.Second, "how long a post may take to become visible before it counts as not seen")
}

func (w *workload) validate() error {
	if err := w.g.Validate(); err != nil {
		return err
	}
	if w.setup.Concurrency < 1 || w.setup.Concurrency > 1024 {
		return fmt.Errorf("--setup-concurrency must be between 1 and 1024")
	}
	return w.run.Validate()
}

// authFlags say how run's calls authenticate. Herald lets a call act
// only as the user whose token it carries, so the load, which acts as
// every user of its graph, signs each user's token itself: with the
// all-in-one's development key, or with a key the servers trust.
type authFlags struct {
	mode       string
	data       string
	signingKey string
}

func (a *authFlags) bind(fs *pflag.FlagSet) {
	data := os.Getenv("HERALD_DATA")
	if data == "" {
		data = ".herald" // the all-in-one's default
	}
	fs.StringVar(&a.mode, "auth", "on", "on: each call carries a token of the user it acts as, signed with --signing-key or --data's development key; off: no tokens, for a server run with -auth=off")
	fs.StringVar(&a.data, "data", data, "the all-in-one's data dir, whose development key ("+auth.DevKeyFile+") signs the tokens (HERALD_DATA)")
	fs.StringVar(&a.signingKey, "signing-key", os.Getenv("HERALD_AUTH_SIGNING_KEY"), "Ed25519 private key (PEM, mode 0600) that signs the tokens instead of --data's: one whose public key the servers trust (-auth-keys) (HERALD_AUTH_SIGNING_KEY)")
}

// signer returns the Signer of the calls' tokens, or nil with --auth=off.
func (a *authFlags) signer() (*auth.Signer, error) {
	switch a.mode {
	case "off":
		return nil, nil
	case "on":
	default:
		return nil, fmt.Errorf("--auth %q: want on or off", a.mode)
	}
	if a.signingKey != "" {
		k, err := auth.LoadPrivateKey(a.signingKey)
		if err != nil {
			return nil, fmt.Errorf("--signing-key: %w", err)
		}
		return auth.NewSigner(k), nil
	}
	s, err := auth.DevSigner(a.data)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no signing key at %s: give --data the all-in-one's data dir (herald -data; it creates the key at first start), "+
			"or --signing-key FILE with a private key the servers trust, or --auth=off for a server run with -auth=off", filepath.Join(a.data, auth.DevKeyFile))
	}
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	return s, nil
}

// rateLimitNote says what the calls refused by the server's rate limits
// mean, or "" if there were none.
func rateLimitNote(r *report.Report) string {
	n := r.RateLimited()
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d calls were refused by the server's per-user rate limits (RESOURCE_EXHAUSTED); they are counted as rate limited, not as errors, and add no latency. "+
		"For a load heavier than the limits allow one user, raise them on the server: herald -rate-posts 1000:5000 -rate-reads 10000:50000 -rate-follows 1000:5000, or off", n)
}

func runCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		w           workload
		addr, etcd  string
		ns, name    string
		allowRemote bool
		skipSetup   bool
		setupOnly   bool
		tlsOn       bool
		tls         tlsconfig.Files
		af          authFlags
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Build the graph, run the workload against one deployment, and write the report",
		Long: `run builds the seeded follow graph through the API (skip with --skip-setup if it
is already there), then issues CreatePost and GetHomeTimeline calls on fixed
open-loop schedules for --duration. Sampled followers record how long each post
takes to become visible. The report goes to --out as NAME.json, NAME.md and
NAME.png; Ctrl-C stops early and still writes it.

Each call carries a token of the user it acts as, signed with the development
key in the all-in-one's data dir (--data), or with --signing-key; --auth=off
sends none. Calls the server's per-user rate limits refuse are counted as rate
limited, apart from errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := w.validate(); err != nil {
				return err
			}
			w.setup.Seed, w.setup.Timeout, w.setup.Progress = w.g.Seed, w.run.Timeout, stderr
			w.run.Seed, w.run.Progress = w.g.Seed, stderr
			w.run.RunID = strconv.FormatInt(time.Now().Unix(), 36)
			ctx := cmd.Context()
			signer, err := af.signer()
			if err != nil {
				return err
			}
			dc := load.DialConfig{Addr: addr, Namespace: ns, AllowRemote: allowRemote, Signer: signer}
			if tlsOn || tls != (tlsconfig.Files{}) {
				dc.TLS = &tls
			}
			if etcd != "" {
				dc.Etcd = strings.Split(etcd, ",")
			}
			t, err := load.Dial(ctx, dc)
			if err != nil {
				return err
			}
			defer t.Close()
			g, err := graph.Generate(w.g)
			if err != nil {
				return err
			}
			gs := g.Stats()
			fmt.Fprintf(stderr, "feedload: target %s; graph %d users, %d follows (celebrities' followers %v, max ordinary %d)\n",
				t.Desc, gs.Users, gs.Follows, gs.CelebrityFollowers, gs.MaxFollowers)

			setupRec := stats.NewRecorder(time.Now())
			setup := report.Setup{Skipped: true, Follows: gs.Follows}
			var runErr error
			if !skipSetup {
				setup, runErr = load.Build(ctx, t, g, w.setup, setupRec)
			}
			rep := &report.Report{Tool: "feedload", Target: t.Desc, Started: time.Now(), Workload: report.Workload{LagMode: w.run.LagMode, Seed: w.g.Seed}}
			if runErr == nil && ctx.Err() == nil && !setupOnly {
				if !skipSetup {
					fmt.Fprintf(stderr, "feedload: graph built (%d follows, %.0f/s); settling %s\n", setup.Done, setup.RatePerS, w.settle)
					select {
					case <-ctx.Done():
					case <-time.After(w.settle):
					}
				}
				if ctx.Err() == nil {
					rep, runErr = load.Run(ctx, t, g, w.run)
					if rep == nil {
						return runErr
					}
				}
			}
			rep.Interrupted = ctx.Err() != nil
			if runErr != nil {
				rep.Error = runErr.Error()
			}
			if rep.Ended.IsZero() {
				rep.Ended = time.Now()
			}
			rep.GraphParams, rep.Graph, rep.Setup = w.g, gs, setup
			if !skipSetup {
				rep.Methods = append(rep.Methods, setupRec.Summary(report.Follow, false))
			}
			limited := rateLimitNote(rep)
			if limited != "" {
				rep.Notes = append(rep.Notes, limited)
			}
			files, err := rep.WriteFiles(w.out, name)
			if err != nil {
				return fmt.Errorf("writing the report: %w", err)
			}
			if !setupOnly {
				fmt.Fprintf(stdout, "\n%s\n", summaryTable(rep))
			}
			fmt.Fprintf(stderr, "feedload: wrote %s\n", strings.Join(files, ", "))
			if limited != "" {
				fmt.Fprintf(stderr, "feedload: warning: %s\n", limited)
			}
			if runErr != nil {
				return runErr
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&addr, "addr", "127.0.0.1:7070", "gRPC address of a Herald process serving all three APIs (the all-in-one)")
	fs.StringVar(&etcd, "etcd", "", "etcd endpoints; if set, find each service through etcd instead of --addr")
	fs.StringVar(&ns, "namespace", "herald", "deployment name, for --etcd discovery")
	fs.BoolVar(&allowRemote, "allow-remote", false, "allow a target outside 127.0.0.0/8 and ::1 (only a deployment you own)")
	fs.BoolVar(&tlsOn, "tls", false, "call over TLS, trusting the system's CAs (implied by --tls-ca, --tls-cert and --tls-key)")
	fs.StringVar(&tls.CA, "tls-ca", "", "PEM CA bundle: call over TLS, trusting only these CAs")
	fs.StringVar(&tls.Cert, "tls-cert", "", "PEM client certificate, for a deployment with mutual TLS")
	fs.StringVar(&tls.Key, "tls-key", "", "PEM private key of --tls-cert")
	af.bind(fs)
	fs.BoolVar(&skipSetup, "skip-setup", false, "do not build the graph (an earlier run with the same graph flags built it)")
	fs.BoolVar(&setupOnly, "setup-only", false, "build the graph and stop")
	fs.StringVar(&w.out, "out", "feedload-report", "directory for the report files")
	fs.StringVar(&name, "name", "report", "base name of the report files")
	w.bind(fs)
	return cmd
}

// summaryTable is the few lines printed at the end of a run.
func summaryTable(r *report.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-32s %8s %7s %8s %9s %9s %9s\n", "", "ok", "errors", "limited", "p50 ms", "p99 ms", "max ms")
	for _, m := range append(r.Methods, r.Lag) {
		if m.Count+m.Errors+m.RateLimited == 0 {
			continue
		}
		fmt.Fprintf(&b, "%-32s %8d %7d %8d %9.2f %9.2f %9.2f\n", m.Name, m.Count, m.Errors, m.RateLimited, m.P50Ms, m.P99Ms, m.MaxMs)
	}
	return b.String()
}

func compareCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		w   workload
		cfg compare.Config
		s   string
	)
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Run the same seeded workload against push, pull and hybrid, one after another, and tabulate them",
		Long: `compare starts a fresh all-in-one server (--herald) for each strategy in turn,
with its own namespace and Cassandra keyspace on the same backing servers (with
authentication on and the per-user rate limits off), builds
the same seeded graph, runs the same workload, measures Herald's CPU (and the
backing servers', from deploy/local's pidfiles in --local-dir), Redis memory over
the namespace's keys, and prints one table. Per-strategy reports and
compare.md/.json/.png go to --out. Each server is stopped, and its Redis keys and
keyspace removed (unless --keep), before the next starts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := w.validate(); err != nil {
				return err
			}
			for _, st := range strings.Split(s, ",") {
				switch st = strings.TrimSpace(st); st {
				case "push", "pull", "hybrid":
					cfg.Strategies = append(cfg.Strategies, st)
				default:
					return fmt.Errorf("--strategies: unknown strategy %q (want push, pull, hybrid)", st)
				}
			}
			for _, a := range append(strings.Split(cfg.Redis, ","), strings.Split(cfg.Cassandra, ",")...) {
				if a != "" && !isLoopback(a) {
					return fmt.Errorf("%s is not a loopback address: compare only runs against servers on this machine", a)
				}
			}
			w.setup.Seed, w.setup.Timeout, w.setup.Progress = w.g.Seed, w.run.Timeout, stderr
			w.run.Seed, w.run.Progress = w.g.Seed, stderr
			cfg.Graph, cfg.Setup, cfg.Run, cfg.Settle, cfg.OutDir, cfg.Progress = w.g, w.setup, w.run, w.settle, w.out, stderr
			fmt.Fprintf(stderr, "feedload compare: %s\n", compare.Header(cfg))
			results, err := compare.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			command := "feedload " + strings.Join(os.Args[1:], " ")
			files, werr := compare.WriteFiles(cfg, command, results)
			fmt.Fprintf(stdout, "\n%s\n%s", compare.Table(cfg, results), compare.Details(results))
			if werr != nil {
				return fmt.Errorf("writing the comparison: %w", werr)
			}
			fmt.Fprintf(stderr, "feedload compare: wrote %s\n", strings.Join(files, ", "))
			for _, r := range results {
				if r.Error != "" {
					return fmt.Errorf("strategy %s: %s", r.Strategy, r.Error)
				}
			}
			if cmd.Context().Err() != nil {
				return cmd.Context().Err()
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Herald, "herald", "bin/herald", "the all-in-one binary to start for each strategy")
	fs.StringVar(&s, "strategies", "push,pull,hybrid", "strategies to compare, in order")
	fs.IntVar(&cfg.CelebrityThreshold, "celebrity-threshold", 100, "hybrid's follower threshold; keep it between ordinary and celebrity follower counts")
	fs.StringVar(&cfg.Cache, "cache", "redis", "server timeline cache: redis or memory")
	fs.StringVar(&cfg.Store, "store", "cassandra", "server durable store: cassandra or pebble")
	fs.StringVar(&cfg.Redis, "redis", "127.0.0.1:6390", "Redis address for -cache redis")
	fs.StringVar(&cfg.Cassandra, "cassandra", "127.0.0.1:9043", "Cassandra hosts for -store cassandra")
	fs.StringVar(&cfg.RedisLogin.User, "redis-user", os.Getenv("HERALD_REDIS_USER"), "user to log in to Redis as (HERALD_REDIS_USER)")
	fs.StringVar(&cfg.RedisLogin.PasswordFile, "redis-password-file", os.Getenv("HERALD_REDIS_PASSWORD_FILE"), "file holding --redis-user's password (HERALD_REDIS_PASSWORD_FILE)")
	fs.StringVar(&cfg.CassandraLogin.User, "cassandra-user", os.Getenv("HERALD_CASSANDRA_USER"), "user to log in to Cassandra as (HERALD_CASSANDRA_USER)")
	fs.StringVar(&cfg.CassandraLogin.PasswordFile, "cassandra-password-file", os.Getenv("HERALD_CASSANDRA_PASSWORD_FILE"), "file holding --cassandra-user's password (HERALD_CASSANDRA_PASSWORD_FILE)")
	fs.StringVar(&cfg.LocalDir, "local-dir", ".local", "deploy/local's state directory, whose pidfiles give the backing servers' CPU; empty for Herald's only")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep each strategy's Redis keys and Cassandra keyspace")
	fs.StringVar(&w.out, "out", "bench-strategies", "directory for the reports and the comparison")
	w.bind(fs)
	// Each strategy starts a cold server; its first seconds measure JIT,
	// connection set-up and cold caches, not the strategy.
	w.run.Warmup = 10 * time.Second
	fs.Lookup("warmup").DefValue = "10s"
	return cmd
}
