// Package allinone runs all four Herald services in one process, on one
// gRPC address, over embedded etcd, embedded NATS JetStream, the Pebble
// store and the in-process cache (or, for benchmarks, Cassandra and
// Redis). It is what `make run` starts, and what the in-process system
// tests start. It alone links the embedded servers.
//
// One runtime (package node) and four apps share one combined Config, in
// which each setting appears once: the fan-out policy, for instance, is
// one pair of flags that the fan-out and timeline apps both read.
package allinone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	fanout "github.com/herald-feed/herald/services/fanout/app"
	graph "github.com/herald-feed/herald/services/graph/app"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/embedded"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/guard"
	"github.com/herald-feed/herald/services/platform/health"
	"github.com/herald-feed/herald/services/platform/memcache"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/pebblestore"
	"github.com/herald-feed/herald/services/herald/console"
	post "github.com/herald-feed/herald/services/post/app"
	timeline "github.com/herald-feed/herald/services/timeline/app"
)

// Defaults of the all-in-one's own settings.
const (
	DefaultAddr        = "localhost:7070"
	DefaultMetricsAddr = "localhost:9470"
	// DefaultHTTPAddr serves the HTTP/JSON API and the web console.
	DefaultHTTPAddr = "localhost:7080"
	DefaultDataDir     = ".herald"
)

// Services are the services an all-in-one runs, in start order.
var Services = []string{"graph", "post", "fanout", "timeline"}

// Config is the whole all-in-one's configuration.
type Config struct {
	// Node is the runtime's configuration. Its etcd endpoints and NATS
	// connection are the embedded servers'.
	Node node.Config
	// DataDir holds the embedded servers' data and the Pebble store. One
	// process at a time holds it, through a lock file.
	DataDir string
	// NATSListen makes the embedded NATS server also listen on this
	// host:port, for tools such as feedctl's dead-letter commands. Empty:
	// in-process connections only.
	NATSListen string

	// Store is "pebble" (under DataDir) or "cassandra".
	Store backend.StoreConfig
	// Cache is "memory" or "redis", with the timelines' settings.
	Cache backend.CacheConfig
	// CacheClock, for tests, is the clock of the in-process cache, so a
	// test can step past the active window. Nil: time.Now.
	CacheClock func() time.Time

	Policy   backend.Policy
	Graph    graph.Config
	Post     post.Config
	Fanout   fanout.Config
	Timeline timeline.Config

	// Services limits the services started, for tests of one service
	// alone. Empty: all of Services.
	Services []string

	// Demo seeds the demo (see seedDemo) once the system serves, and
	// lowers the celebrity threshold to DemoThreshold unless one is set.
	Demo bool
}

// Bind defines the all-in-one's flags (the runtime's are node's).
func Bind(fs *flagenv.Set) *Config {
	c := &Config{}
	fs.String(&c.DataDir, "data", "HERALD_DATA", DefaultDataDir, "data directory for the embedded servers and the Pebble store")
	fs.String(&c.NATSListen, "nats-listen", "HERALD_NATS_LISTEN", "", "also serve the embedded NATS on this host:port, for tools such as feedctl deadletters")
	fs.Bool(&c.Demo, "demo", "HERALD_DEMO", false, fmt.Sprintf("seed a demo graph (%d users, heavy-tailed follows, one celebrity) for the console, with the celebrity threshold at %d unless -celebrity-threshold says otherwise", DemoUsers, DemoThreshold))
	backend.BindStore(fs, &c.Store, "pebble")
	backend.BindCache(fs, &c.Cache, "memory")
	backend.BindPolicy(fs, &c.Policy)
	graph.BindFlags(fs, &c.Graph)
	post.BindFlags(fs, &c.Post)
	fanout.BindFlags(fs, &c.Fanout)
	timeline.BindFlags(fs, &c.Timeline)
	return c
}

// Check reports a setting the all-in-one cannot run with.
func (c *Config) Check() error {
	var errs []error
	switch c.Store.Kind {
	case "", "pebble":
	case "cassandra":
		if len(c.Store.Hosts) == 0 {
			errs = append(errs, errors.New("-store cassandra needs -cassandra (or HERALD_CASSANDRA_HOSTS)"))
		}
	default:
		errs = append(errs, fmt.Errorf("-store %q: want pebble or cassandra", c.Store.Kind))
	}
	switch c.Cache.Kind {
	case "", "memory":
	case "redis":
		if len(c.Cache.Addrs) == 0 {
			errs = append(errs, errors.New("-cache redis needs -redis (or HERALD_REDIS_ADDR)"))
		}
	default:
		errs = append(errs, fmt.Errorf("-cache %q: want memory or redis", c.Cache.Kind))
	}
	if c.Demo && (c.Policy.Threshold == 0 || c.Policy.Threshold == feed.DefaultCelebrityThreshold) {
		c.Policy.Threshold = DemoThreshold
	}
	c.Fanout.Policy = &c.Policy
	errs = append(errs, c.Cache.CheckTimelines(), c.Graph.Check(), c.Post.Check(), c.Fanout.Check(), c.Timeline.Check())
	return errors.Join(errs...)
}

// Program is the herald binary.
func Program(banner func(n *node.Node, cfg *Config)) node.Program {
	return node.Program{
		Name:     "herald",
		Defaults: node.Config{ListenAddr: DefaultAddr, MetricsAddr: DefaultMetricsAddr, HTTPAddr: DefaultHTTPAddr},
		Embedded: true,
		Bind: func(fs *flagenv.Set) node.Start {
			c := Bind(fs)
			return func(rt *node.Config) (node.Hooks, error) {
				if err := c.Check(); err != nil {
					return node.Hooks{}, err
				}
				s := &System{cfg: *c}
				return node.Hooks{
					Before: func(ctx context.Context, rt *node.Config) (func(), error) {
						s.cfg.Node = *rt
						if err := s.before(ctx); err != nil {
							s.Close()
							return nil, err
						}
						*rt = s.cfg.Node
						return s.closeBackends, nil
					},
					Attach: func(ctx context.Context, n *node.Node) (func(), error) {
						s.Node = n
						if err := s.attach(ctx); err != nil {
							return s.closeApps, err
						}
						if banner != nil {
							banner(n, &s.cfg)
						}
						return s.closeApps, nil
					},
				}, nil
			}
		},
	}
}

// System is a running all-in-one.
type System struct {
	cfg  Config
	Node *node.Node
	// Backends are the adapters every service runs on.
	Backends backend.Set

	backendClosers []func()
	appClosers     []func()
	// devSigner signs with the development key in the data dir; nil with
	// -auth=off.
	devSigner *auth.Signer
}

// Open starts an all-in-one: it locks the data dir, starts the embedded
// servers, opens the store and cache, builds the runtime and adds the
// services. Run serves; Close releases everything. Tests start Herald this
// way; the herald binary goes through node.Main with the same steps.
func Open(ctx context.Context, cfg Config) (s *System, err error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	s = &System{cfg: cfg}
	// A failed Open returns nil, which the deferred call must not close:
	// it closes the half-built system it captured here.
	built := s
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	if err := s.before(ctx); err != nil {
		return nil, err
	}
	if s.Node, err = node.New(ctx, s.cfg.Node); err != nil {
		return nil, err
	}
	if err := s.attach(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Run serves until ctx ends, then drains (see node.Node.Run).
func (s *System) Run(ctx context.Context) error { return s.Node.Run(ctx) }

// Close releases what Open opened, the services first.
func (s *System) Close() {
	s.closeApps()
	if s.Node != nil {
		s.Node.Close()
	}
	s.closeBackends()
}

func (s *System) closeApps() {
	for i := len(s.appClosers) - 1; i >= 0; i-- {
		s.appClosers[i]()
	}
	s.appClosers = nil
}

func (s *System) closeBackends() {
	for i := len(s.backendClosers) - 1; i >= 0; i-- {
		s.backendClosers[i]()
	}
	s.backendClosers = nil
}

func (s *System) onClose(f func()) { s.backendClosers = append(s.backendClosers, f) }

// before runs ahead of the runtime: the data dir's lock, the embedded
// servers, the store and the cache.
func (s *System) before(ctx context.Context) error {
	cfg := &s.cfg
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Node.Log == nil {
		cfg.Node.Log = slog.Default()
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	s.onClose(unlock)
	if s.devSigner, err = useDevKeys(cfg.DataDir, &cfg.Node.Guard); err != nil {
		return err
	}

	sock, err := filepath.Abs(filepath.Join(cfg.DataDir, "etcd.sock"))
	if err != nil {
		return err
	}
	e, err := embedded.StartEtcd(cfg.DataDir, "unix://"+sock)
	if err != nil {
		return fmt.Errorf("embedded etcd in %s: %w", cfg.DataDir, err)
	}
	s.onClose(e.Close)
	cfg.Node.EtcdEndpoints = []string{e.Endpoint()}
	// On -bus kafka the event log is an external Kafka, and no NATS runs.
	if cfg.Node.Bus != node.BusKafka {
		ns, err := embedded.StartNATS(cfg.DataDir, cfg.NATSListen)
		if err != nil {
			return fmt.Errorf("embedded NATS in %s: %w", cfg.DataDir, err)
		}
		s.onClose(ns.Close)
		cfg.Node.NATSURL = ns.ClientURL()
		cfg.Node.ConnectNATS = ns.Connect
	}

	b := &s.Backends
	switch cfg.Store.Kind {
	case "cassandra":
		st, err := backend.OpenStore(ctx, &cfg.Store, cfg.Node.Log)
		if err != nil {
			return err
		}
		s.onClose(func() { st.Close() })
		b.Posts, b.Graph = st, st
		b.Probes = append(b.Probes, health.Probe{Dependency: "store", Server: "cassandra", Check: st.Ping})
	default:
		dir := filepath.Join(cfg.DataDir, "store")
		st, err := pebblestore.Open(dir, pebblestore.Options{})
		if err != nil {
			return fmt.Errorf("pebble store in %s: %w", dir, err)
		}
		s.onClose(func() { st.Close() })
		b.Posts, b.Graph = st, st
		b.Probes = append(b.Probes, health.Probe{Dependency: "store", Server: "pebble", Check: st.Ping})
	}
	switch cfg.Cache.Kind {
	case "redis":
		ns := cfg.Node.Namespace
		if ns == "" {
			ns = node.DefaultNamespace
		}
		c, err := backend.OpenCache(ctx, &cfg.Cache, ns, cfg.Node.Log)
		if err != nil {
			return err
		}
		s.onClose(func() { c.Close() })
		c.Fill(b)
	default:
		c := memcache.NewActiveClock(cfg.Cache.Cap, cfg.Cache.ActiveWindow, cfg.CacheClock)
		b.Timelines, b.PostCache = c, c
		b.Recent = memcache.NewRecentClock(cfg.Cache.Cap, memcache.DefaultRecentTTL, cfg.CacheClock)
		b.Celebrities = memcache.NewCelebs()
		b.Unfollows = memcache.NewUnfollows()
		// The in-process cache has no server to lose: it answers while
		// the process runs, which is what its series says.
		b.Probes = append(b.Probes, health.Probe{Dependency: "cache", Server: "memory", Check: func(context.Context) error { return nil }})
	}
	return nil
}

// attach adds the services to the node, every one on the shared adapters.
func (s *System) attach(ctx context.Context) error {
	cfg := &s.cfg
	services := cfg.Services
	if len(services) == 0 {
		services = Services
	}
	b := &s.Backends
	for _, name := range Services {
		if !slices.Contains(services, name) {
			continue
		}
		var closeApp func()
		switch name {
		case "graph":
			gc := cfg.Graph
			gc.Backends = b
			a, err := graph.New(ctx, gc, s.Node)
			if err != nil {
				return err
			}
			closeApp = a.Close
		case "post":
			pc := cfg.Post
			pc.Backends = b
			a, err := post.New(ctx, pc, s.Node)
			if err != nil {
				return err
			}
			closeApp = a.Close
		case "fanout":
			fc := cfg.Fanout
			fc.Backends, fc.Policy = b, &cfg.Policy
			a, err := fanout.New(ctx, fc, s.Node)
			if err != nil {
				return err
			}
			closeApp = a.Close
		case "timeline":
			tc := cfg.Timeline
			tc.Backends, tc.Policy = b, &cfg.Policy
			a, err := timeline.New(ctx, tc, s.Node)
			if err != nil {
				return err
			}
			closeApp = a.Close
		}
		s.appClosers = append(s.appClosers, closeApp)
	}
	if cfg.Demo {
		n := s.Node
		n.Go(func(ctx context.Context) error {
			if s.devSigner == nil {
				n.Log.Warn("demo: not seeded: it signs its calls with the development key, and authentication is off")
				return nil
			}
			if err := seedDemo(ctx, b.Graph, n.Addr(), s.devSigner, n.Log); err != nil && ctx.Err() == nil {
				n.Log.Warn("demo: seeding stopped", "err", err)
			}
			return nil
		})
	}
	if s.Node.HTTP != nil {
		console.Register(s.Node.HTTP, console.Deps{Backends: b, Policy: &cfg.Policy, Metrics: s.Node.Metrics, Signer: s.devSigner})
	}
	return nil
}

// useDevKeys makes the all-in-one trust the development key in its data
// dir, creating it (mode 0600) at first start, and sign the calls between
// its services with a second key there. -auth=off needs neither.
func useDevKeys(dir string, g *guard.Settings) (*auth.Signer, error) {
	if g.Auth == "off" {
		return nil, nil
	}
	dev, err := auth.LoadOrCreateKey(filepath.Join(dir, auth.DevKeyFile))
	if err != nil {
		return nil, fmt.Errorf("development signing key: %w", err)
	}
	signer := auth.NewSigner(dev)
	g.Keys = append(g.Keys, signer.Key())
	if g.ServiceKey == nil && g.ServiceKeyFile == "" {
		if g.ServiceKey, err = auth.LoadOrCreateKey(filepath.Join(dir, auth.ServiceKeyFile)); err != nil {
			return nil, fmt.Errorf("service signing key: %w", err)
		}
	}
	return signer, nil
}

// lockDataDir creates dir if need be and takes its lock file, so that a
// second all-in-one on the same data fails at once with a clear error,
// instead of waiting forever on the embedded etcd's own lock. The lock is
// the kernel's (flock): it goes with the process, however it ends.
func lockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// Only Herald's user may enter the data dir: it holds the signing
	// keys and the socket of the embedded etcd, which has no
	// authentication of its own.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "herald.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another herald process"
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				who += " (pid " + pid + ")"
			}
			return nil, fmt.Errorf("data dir %s is in use by %s; stop it, or give this one another -data", dir, who)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
