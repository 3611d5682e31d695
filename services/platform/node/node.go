// Package node is the runtime every Herald process shares: it connects to
// (or embeds) etcd and NATS, opens the durable store and the cache, serves
// gRPC and Prometheus metrics, registers the process's services in etcd
// under a lease, and shuts all of it down in order.
//
// A service adds itself with its package's Register function, which
// registers its gRPC API on Node.GRPC and its background workers with
// Node.Go. One process may hold one service (cmd/post, ...) or all four
// (the all-in-one herald binary).
package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-feed/herald/services/platform/bus"
	"github.com/herald-feed/herald/services/platform/cache"
	"github.com/herald-feed/herald/services/platform/cassandrastore"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/embedded"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/grpcserver"
	"github.com/herald-feed/herald/services/platform/memcache"
	"github.com/herald-feed/herald/services/platform/pagetoken"
	"github.com/herald-feed/herald/services/platform/pebblestore"
	"github.com/herald-feed/herald/services/platform/rediscache"
	"github.com/herald-feed/herald/services/platform/store"
)

// Config configures a Node. The zero value of each field has a sensible
// default; see defaults.
type Config struct {
	// Name names this process in logs.
	Name string
	// Namespace names the deployment, so several can share the same etcd,
	// NATS and Redis: it prefixes etcd keys, NATS subjects and Redis keys.
	// Default "herald".
	Namespace string
	// ListenAddr is the gRPC listen address. Default "localhost:7070".
	ListenAddr string
	// AdvertiseAddr is the address registered in etcd for other processes
	// to dial. Default: the address actually listened on.
	AdvertiseAddr string
	// MetricsAddr serves /metrics over HTTP; empty disables it.
	MetricsAddr string
	// DataDir holds the embedded servers' data and the Pebble store.
	DataDir string

	// Embedded starts etcd and NATS inside this process, ignoring
	// EtcdEndpoints and NATSURL.
	Embedded bool
	// EtcdEndpoints are the etcd client endpoints (host:port).
	EtcdEndpoints []string
	// NATSURL is the NATS server URL.
	NATSURL string
	// EmbeddedNATSAddr, with Embedded, makes the embedded NATS server also
	// listen on this host:port, for tools such as feedctl's dead-letter
	// commands. Empty: in-process connections only.
	EmbeddedNATSAddr string

	// Store picks the durable store: "pebble" (default) or "cassandra".
	Store string
	// CassandraHosts are the Cassandra contact points (host or host:port).
	CassandraHosts []string
	// CassandraKeyspace holds Herald's tables; Open creates and migrates
	// it. Default "herald".
	CassandraKeyspace string
	// CassandraConsistency is the consistency level of every store read and
	// write. Default LOCAL_QUORUM.
	CassandraConsistency string
	// CassandraReplication is the CQL replication map for a keyspace that
	// does not exist yet. Default SimpleStrategy with one replica.
	CassandraReplication string
	// Cache picks the timeline and post cache: "memory" (default) or
	// "redis".
	Cache string
	// RedisAddrs are the Redis addresses (host:port): one for a single
	// node, several for a Redis Cluster.
	RedisAddrs []string
	// TimelineCap is the most entries a cached timeline keeps. Default 800.
	TimelineCap int
	// Strategy is the fan-out strategy: push, pull or hybrid (default).
	// The fan-out and timeline services of a deployment must agree on it.
	Strategy feed.Strategy
	// CelebrityThreshold is the follower count from which hybrid pulls an
	// author instead of pushing. Default 10,000.
	CelebrityThreshold int64
	// ActiveWindow is how recently a user must have read their home
	// timeline to get fan-out writes; an inactive user's timeline expires
	// and is rebuilt on the next read. Default 7 days.
	ActiveWindow time.Duration
	// CacheClock, for tests, is the clock of the in-process cache (Cache
	// "memory"), so a test can step past ActiveWindow. Nil: time.Now.
	CacheClock func() time.Time
	// FanoutChunkSize is how many followers one fan-out chunk covers: a
	// post with more followers is split into chunk messages that every
	// fan-out instance shares. Default 1000.
	FanoutChunkSize int
	// FanoutWorkers is how many events one fan-out instance handles at
	// once. Default 8.
	FanoutWorkers int

	// LeaseTTL is the etcd lease TTL behind registrations and worker IDs:
	// how long a dead instance stays in rotation. Default 10s.
	LeaseTTL time.Duration
	// ShutdownTimeout bounds the graceful drain of RPCs. Default 10s.
	ShutdownTimeout time.Duration

	Log *slog.Logger
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = "herald"
	}
	if c.Namespace == "" {
		c.Namespace = "herald"
	}
	if c.ListenAddr == "" {
		c.ListenAddr = "localhost:7070"
	}
	if c.DataDir == "" {
		c.DataDir = ".herald"
	}
	if c.Store == "" {
		c.Store = "pebble"
	}
	if c.Cache == "" {
		c.Cache = "memory"
	}
	if c.TimelineCap == 0 {
		c.TimelineCap = 800
	}
	if c.Strategy == "" {
		c.Strategy = feed.Hybrid
	}
	if c.CelebrityThreshold == 0 {
		c.CelebrityThreshold = feed.DefaultCelebrityThreshold
	}
	if c.ActiveWindow == 0 {
		c.ActiveWindow = 7 * 24 * time.Hour
	}
	if c.FanoutChunkSize == 0 {
		c.FanoutChunkSize = 1000
	}
	if c.FanoutWorkers == 0 {
		c.FanoutWorkers = 8
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Node is one running Herald process.
type Node struct {
	cfg Config
	Log *slog.Logger

	Etcd    *clientv3.Client
	Session *concurrency.Session
	NATS    *nats.Conn
	Bus     *bus.Bus

	Posts     store.Posts
	Graph     store.Graph
	Timelines cache.Timelines
	// Recent holds each author's recent posts, in the same shape as a
	// timeline: pulled into readers' timelines at read time.
	Recent    cache.Timelines
	PostCache cache.Posts
	// Celebrities is the sticky set of authors the hybrid strategy pulls.
	Celebrities cache.Celebrities
	Unfollows   cache.Unfollows

	// Tokens signs page tokens with a key shared by every process of the
	// deployment through etcd.
	Tokens  *pagetoken.Codec
	Metrics *prometheus.Registry
	GRPC    *grpcserver.Server

	lis      net.Listener
	services []string
	workers  []func(context.Context) error

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn

	closers []func() // run in reverse order by Close
}

// New connects everything and listens, but serves nothing until Run.
func New(ctx context.Context, cfg Config) (n *Node, err error) {
	cfg.defaults()
	if err := feed.ValidateUserID("namespace", cfg.Namespace); err != nil {
		return nil, err
	}
	n = &Node{cfg: cfg, Log: cfg.Log.With("node", cfg.Name), conns: make(map[string]*grpc.ClientConn)}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	etcdEndpoints, natsURL := cfg.EtcdEndpoints, cfg.NATSURL
	var ns *embedded.NATS
	if cfg.Embedded {
		e, err := embedded.StartEtcd(cfg.DataDir, "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		n.onClose(e.Close)
		etcdEndpoints = []string{e.Endpoint()}
		if ns, err = embedded.StartNATS(cfg.DataDir, cfg.EmbeddedNATSAddr); err != nil {
			return nil, err
		}
		n.onClose(ns.Close)
	}
	if len(etcdEndpoints) == 0 {
		return nil, errors.New("no etcd endpoints configured")
	}

	n.Etcd, err = clientv3.New(clientv3.Config{
		Endpoints:   etcdEndpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zapNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", etcdEndpoints, err)
	}
	n.onClose(func() { n.Etcd.Close() })
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// The session's keep-alives run on ctx, which lives as long as the
	// process.
	if n.Session, err = discovery.NewSession(ctx, n.Etcd, cfg.LeaseTTL); err != nil {
		return nil, fmt.Errorf("etcd %v: %w", etcdEndpoints, err)
	}
	n.onClose(func() {
		// Session.Close waits up to the lease TTL for etcd; with etcd
		// away that holds a shutdown for the whole TTL. Revoke with a
		// short bound instead: if etcd is away the lease expires anyway.
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n.Session.Orphan()
		n.Etcd.Revoke(rctx, n.Session.Lease())
	})
	key, err := sharedTokenKey(sctx, n.Etcd, cfg.Namespace+"/config/page-token-key")
	if err != nil {
		return nil, err
	}
	n.Tokens = pagetoken.New(key)

	natsOpts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond)}
	if ns != nil {
		n.NATS, err = ns.Connect(natsOpts...)
	} else {
		n.NATS, err = nats.Connect(natsURL, natsOpts...)
	}
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", natsURL, err)
	}
	n.onClose(func() { n.NATS.Close() })
	n.Metrics = prometheus.NewRegistry()
	n.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if n.Bus, err = bus.New(sctx, n.NATS, bus.Config{Namespace: cfg.Namespace, Metrics: n.Metrics}, n.Log); err != nil {
		return nil, err
	}

	if err := n.openStore(sctx); err != nil {
		return nil, err
	}
	if err := n.openCache(sctx); err != nil {
		return nil, err
	}

	n.GRPC = grpcserver.New(n.Log, n.Metrics)

	if n.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.ListenAddr, err)
	}
	n.onClose(func() { n.lis.Close() })
	return n, nil
}

func (n *Node) openStore(ctx context.Context) error {
	switch n.cfg.Store {
	case "pebble":
		s, err := pebblestore.Open(filepath.Join(n.cfg.DataDir, "store"), pebblestore.Options{})
		if err != nil {
			return fmt.Errorf("open pebble store: %w", err)
		}
		n.onClose(func() { s.Close() })
		n.Posts, n.Graph = s, s
		return nil
	case "cassandra":
		if len(n.cfg.CassandraHosts) == 0 {
			return errors.New("store cassandra needs Cassandra hosts (-cassandra)")
		}
		s, err := cassandrastore.Open(ctx, cassandrastore.Config{
			Hosts:       n.cfg.CassandraHosts,
			Keyspace:    n.cfg.CassandraKeyspace,
			Consistency: n.cfg.CassandraConsistency,
			Replication: n.cfg.CassandraReplication,
			Log:         n.Log,
		})
		if err != nil {
			return fmt.Errorf("open cassandra store: %w", err)
		}
		n.onClose(s.Close)
		n.Posts, n.Graph = s, s
		return nil
	}
	return fmt.Errorf("unknown store %q (want pebble or cassandra)", n.cfg.Store)
}

func (n *Node) openCache(ctx context.Context) error {
	switch n.cfg.Cache {
	case "memory":
		c := memcache.NewActiveClock(n.cfg.TimelineCap, n.cfg.ActiveWindow, n.cfg.CacheClock)
		n.Timelines, n.PostCache = c, c
		n.Recent = memcache.New(n.cfg.TimelineCap)
		n.Celebrities = memcache.NewCelebs()
		n.Unfollows = memcache.NewUnfollows()
		return nil
	case "redis":
		if len(n.cfg.RedisAddrs) == 0 {
			return errors.New("cache redis needs Redis addresses (-redis)")
		}
		// RESP2: Herald uses no RESP3 feature, and go-redis skips its
		// push-notification check on every reply under RESP2.
		rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: n.cfg.RedisAddrs, Protocol: 2})
		n.onClose(func() { rdb.Close() })
		if err := rdb.Ping(ctx).Err(); err != nil {
			// Not fatal: Redis is a cache, and reads fall back to the
			// store while it is away.
			n.Log.Warn("redis not reachable at start", "addrs", n.cfg.RedisAddrs, "err", err)
		}
		prefix := ""
		if n.cfg.Namespace != "herald" {
			prefix = n.cfg.Namespace + ":"
		}
		c := rediscache.New(rdb, rediscache.Options{Cap: n.cfg.TimelineCap, Prefix: prefix, ActiveWindow: n.cfg.ActiveWindow})
		n.Timelines, n.PostCache, n.Celebrities, n.Unfollows = c, c, c, c
		n.Recent = rediscache.New(rdb, rediscache.Options{Cap: n.cfg.TimelineCap, Prefix: prefix, Kind: "recent"})
		return nil
	}
	return fmt.Errorf("unknown cache %q (want memory or redis)", n.cfg.Cache)
}

// Addr returns the address other processes should dial.
func (n *Node) Addr() string {
	if n.cfg.AdvertiseAddr != "" {
		return n.cfg.AdvertiseAddr
	}
	return n.lis.Addr().String()
}

// Serve announces that this process serves the named service ("post",
// "graph", "fanout", "timeline") with the given gRPC service names for
// health checks. Call it before Run.
func (n *Node) Serve(service string, grpcServices ...string) {
	n.services = append(n.services, service)
	for _, s := range grpcServices {
		n.GRPC.Health.SetServingStatus(s, healthpb.HealthCheckResponse_SERVING)
	}
}

// Go adds a background worker. Run starts it and cancels its context on
// shutdown; a worker that returns an error stops the process.
func (n *Node) Go(worker func(ctx context.Context) error) {
	n.workers = append(n.workers, worker)
}

// Dial returns a shared client connection to a Herald service, found
// through etcd.
func (n *Node) Dial(service string) (*grpc.ClientConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.conns[service]; ok {
		return c, nil
	}
	c, err := discovery.Dial(n.Etcd, n.cfg.Namespace, service)
	if err != nil {
		return nil, err
	}
	n.conns[service] = c
	return c, nil
}

// Run serves until ctx ends, then shuts down gracefully: it marks itself
// not serving, leaves etcd, drains in-flight RPCs (up to ShutdownTimeout),
// and stops the workers, which finish or nack their in-flight messages.
func (n *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()

	serveErr := make(chan error, 1)
	go func() { serveErr <- n.GRPC.Serve(n.lis) }()

	if n.cfg.MetricsAddr != "" {
		srv := &http.Server{Addr: n.cfg.MetricsAddr, Handler: n.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.Log.Error("metrics server", "addr", n.cfg.MetricsAddr, "err", err)
			}
		}()
		defer srv.Close()
	}

	for _, s := range n.services {
		if err := discovery.Register(ctx, n.Session, n.cfg.Namespace, s, n.Addr()); err != nil {
			n.GRPC.Stop()
			return err
		}
	}
	n.GRPC.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	n.Log.Info("serving", "addr", n.Addr(), "services", n.services, "metrics", n.cfg.MetricsAddr)

	for _, w := range n.workers {
		g.Go(func() error { return w(wctx) })
	}
	// The worker group's own context ends when any worker fails.
	var fatal error
	select {
	case <-ctx.Done():
	case <-gctx.Done():
		fatal = errors.New("a background worker failed")
	case err := <-serveErr:
		fatal = fmt.Errorf("grpc server: %w", err)
	case <-n.Session.Done():
		fatal = errors.New("etcd lease lost")
	}

	n.Log.Info("shutting down")
	n.GRPC.Health.Shutdown()
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	for _, s := range n.services {
		if err := discovery.Deregister(dctx, n.Etcd, n.cfg.Namespace, s, n.Addr()); err != nil {
			n.Log.Warn("deregister", "service", s, "err", err)
		}
	}
	cancel()
	stopped := make(chan struct{})
	go func() { n.GRPC.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(n.cfg.ShutdownTimeout):
		n.Log.Warn("drain timed out; closing remaining RPCs")
		n.GRPC.Stop()
	}
	stopWorkers()
	if err := g.Wait(); err != nil {
		return errors.Join(fatal, err)
	}
	return fatal
}

func (n *Node) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.Metrics, promhttp.HandlerOpts{Registry: n.Metrics}))
	return mux
}

// Close releases everything New opened, in reverse order.
func (n *Node) Close() {
	n.mu.Lock()
	for _, c := range n.conns {
		c.Close()
	}
	n.conns = nil
	n.mu.Unlock()
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
	n.closers = nil
}

func (n *Node) onClose(f func()) { n.closers = append(n.closers, f) }

// sharedTokenKey returns the deployment's page-token key from etcd,
// creating it on first use, so every instance signs and checks tokens with
// the same key and a token survives a hop between instances or a restart.
func sharedTokenKey(ctx context.Context, cli *clientv3.Client, tokenKeyName string) ([]byte, error) {
	fresh := make([]byte, 32)
	rand.Read(fresh)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(tokenKeyName), "=", 0)).
		Then(clientv3.OpPut(tokenKeyName, string(fresh))).
		Else(clientv3.OpGet(tokenKeyName)).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("page token key: %w", err)
	}
	if resp.Succeeded {
		return fresh, nil
	}
	return resp.Responses[0].GetResponseRange().Kvs[0].Value, nil
}

// Strategy returns the deployment's fan-out strategy and celebrity
// threshold.
func (n *Node) Strategy() (feed.Strategy, int64) { return n.cfg.Strategy, n.cfg.CelebrityThreshold }

// Fanout returns the fan-out's chunk size and per-instance concurrency.
func (n *Node) Fanout() (chunkSize, workers int) { return n.cfg.FanoutChunkSize, n.cfg.FanoutWorkers }

// Namespace returns the deployment's namespace.
func (n *Node) Namespace() string { return n.cfg.Namespace }

// MetricsAddr returns the address serving /metrics, or "".
func (n *Node) MetricsAddr() string { return n.cfg.MetricsAddr }
