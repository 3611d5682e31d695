// Package app is the post service as a unit: New opens what the service
// needs (unless the all-in-one hands it its adapters), adds its gRPC API,
// its leased worker ID and the outbox relay to a node, and Close releases
// what New opened.
package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/idgen"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/post/internal/posts"
	"github.com/herald-feed/herald/services/post/internal/rpc"
)

// Defaults of the post service's settings.
const (
	// DefaultRelayTimeout is how long a post may stay unpublished before
	// the relay republishes it: the longest a publish is waited for.
	DefaultRelayTimeout = posts.PublishTimeout
	// DefaultRelayInterval is how often the relay scans the outbox.
	DefaultRelayInterval = time.Second
	// DefaultAddr is the split binary's gRPC address.
	DefaultAddr = "localhost:7071"
)

// Config configures the post service.
type Config struct {
	// RelayTimeout is how long a post may stay unpublished before the
	// outbox relay republishes it.
	RelayTimeout time.Duration
	// RelayInterval is how often the relay scans.
	RelayInterval time.Duration

	// Backends, if set, are the adapters to run on: the all-in-one's.
	// Otherwise New opens Store and Cache.
	Backends *backend.Set
	Store    *backend.StoreConfig
	Cache    *backend.CacheConfig
}

// BindFlags defines the post service's own flags, into c.
func BindFlags(fs *flagenv.Set, c *Config) {
	fs.Duration(&c.RelayTimeout, "relay-timeout", "HERALD_RELAY_TIMEOUT", DefaultRelayTimeout, "republish posts left unpublished this long")
	fs.Duration(&c.RelayInterval, "relay-interval", "HERALD_RELAY_INTERVAL", DefaultRelayInterval, "how often the outbox relay scans for unpublished posts")
}

// Check fills in the defaults of settings left zero, and reports one out
// of range.
func (c *Config) Check() error {
	if c.RelayTimeout == 0 {
		c.RelayTimeout = DefaultRelayTimeout
	}
	if c.RelayInterval == 0 {
		c.RelayInterval = DefaultRelayInterval
	}
	if c.RelayTimeout < time.Second || c.RelayInterval <= 0 {
		return fmt.Errorf("-relay-timeout %v and -relay-interval %v: want at least 1s and a positive interval", c.RelayTimeout, c.RelayInterval)
	}
	return nil
}

// Program is the split post binary: the service on Cassandra and Redis.
func Program() node.Program {
	return node.ServiceProgram("post", DefaultAddr, func(fs *flagenv.Set) (func() error, func(context.Context, *node.Node) (func(), error)) {
		c := &Config{Store: &backend.StoreConfig{}, Cache: &backend.CacheConfig{}}
		BindFlags(fs, c)
		backend.BindStore(fs, c.Store, "cassandra")
		backend.BindCache(fs, c.Cache, "redis")
		check := func() error { return errors.Join(c.Check(), c.Store.Check("post"), c.Cache.Check("post")) }
		return check, node.Attach(func(ctx context.Context, n *node.Node) (*App, error) { return New(ctx, *c, n) })
	})
}

// App is a running post service.
type App struct{ backends *backend.Opened }

// Close releases the adapters New opened.
func (a *App) Close() {
	a.backends.Close()
}

// New adds the post service to n: its gRPC API, a worker ID leased from
// etcd for post IDs, and the outbox relay, which runs on whichever post
// instance wins the etcd election.
func New(ctx context.Context, cfg Config, n *node.Node) (a *App, err error) {
	if cfg.RelayTimeout == 0 {
		cfg.RelayTimeout = DefaultRelayTimeout
	}
	if cfg.RelayInterval == 0 {
		cfg.RelayInterval = DefaultRelayInterval
	}
	b, opened, err := backend.Use(ctx, cfg.Backends, cfg.Store, cfg.Cache, n.Namespace(), n.Log)
	if err != nil {
		return nil, err
	}
	n.Health.Add(b.Probes...)
	if b.RateLimits != nil {
		n.Guard.UseLimiter(b.RateLimits)
	}
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()
	a = &App{backends: opened}

	host, _ := os.Hostname()
	ids := &leasedIDs{}
	owner := fmt.Sprintf("%s/%d", host, os.Getpid())
	if err := n.OnLease(ctx, func(ctx context.Context, l *node.Lease) error {
		worker, err := discovery.AcquireWorkerID(ctx, l.Session, n.Namespace(), idgen.MaxWorker, owner)
		if err != nil {
			return err
		}
		ids.use(worker, l)
		n.Log.Info("post ids", "worker", worker)
		return nil
	}); err != nil {
		return nil, err
	}

	svc := posts.New(b.Posts, b.PostCache, b.Recent, n.Bus, ids, n.Tokens, n.Log.With("service", "post"))
	feedv1.RegisterPostServiceServer(n.GRPC, rpc.New(svc))
	n.Announce("post", feedv1.PostService_ServiceDesc.ServiceName)

	relay := &posts.Relay{Outbox: b.Posts, Service: svc, Timeout: cfg.RelayTimeout, Interval: cfg.RelayInterval, Log: n.Log.With("service", "outbox-relay")}
	n.Go(func(ctx context.Context) error { return lead(ctx, n, "outbox-relay", relay.Run) })
	return a, nil
}

// lead runs job while this process holds leadership of name; exactly one
// live process in the deployment does. If the leader dies, its lease
// expires and another candidate's Campaign returns. If this process loses
// its lease, the job stops and the process campaigns again under its next
// one.
func lead(ctx context.Context, n *node.Node, name string, job func(context.Context) error) error {
	for l := n.Lease(); ; {
		if err := leadUnder(ctx, n, l, name, job); err != nil || ctx.Err() != nil {
			return err
		}
		var err error
		if l, err = n.NextLease(ctx, l); err != nil {
			return nil
		}
	}
}

// leadUnder is lead for one lease: it returns nil once the lease is lost
// or ctx ends, and the job's error if it fails.
func leadUnder(ctx context.Context, n *node.Node, l *node.Lease, name string, job func(context.Context) error) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.Done():
			cancel()
		case <-lctx.Done():
		}
	}()
	e := concurrency.NewElection(l.Session, n.Namespace()+"/election/"+name)
	// A campaign that fails under a live lease (etcd changing leader or
	// without a quorum for a while, an auth token a restarted member no
	// longer knows) is tried again: it is a passing state of etcd, not a
	// reason to stop the process.
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := e.Campaign(lctx, n.Addr())
		if err == nil {
			break
		}
		if lctx.Err() != nil || l.Lost() {
			return nil
		}
		n.Log.Warn("campaign failed; trying again", "job", name, "in", wait, "err", err)
		select {
		case <-lctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	n.Log.Info("elected", "job", name)
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		e.Resign(rctx)
	}()
	return job(lctx)
}

// leasedIDs mints IDs only while the etcd lease behind the worker ID
// certainly lives: once it may be gone, another process may hold the same
// worker ID. The session's Done channel says so only once the client has
// noticed, which a process paused past its TTL does too late; the lease
// clock says so by this process's own clock, at the last renewal plus the
// TTL less a margin (discovery.LeaseClock). A lease that lapsed by the
// clock alone comes back with the next renewal; one that etcd has expired
// does not: past the bound, Next renews the lease before it hands out the
// ID. An ID minted and then refused is never used: the generator moves on.
// Once the process has a new lease (node.Lease), the worker ID claimed
// under it takes over (use).
type leasedIDs struct {
	cur atomic.Pointer[leasedWorker]
}

// leasedWorker is a worker ID claimed under one lease, and its generator.
type leasedWorker struct {
	worker int
	gen    *idgen.Generator
	lease  *node.Lease
}

// use mints from now on with worker, claimed under l. A worker ID claimed
// again under a new lease keeps its generator, whose IDs only grow.
func (l *leasedIDs) use(worker int, lease *node.Lease) {
	old := l.cur.Load()
	var gen *idgen.Generator
	if old != nil && old.worker == worker {
		gen = old.gen
	} else {
		var err error
		if gen, err = idgen.New(worker, nil); err != nil {
			panic(err) // AcquireWorkerID returns IDs in [0, idgen.MaxWorker]
		}
	}
	l.cur.Store(&leasedWorker{worker: worker, gen: gen, lease: lease})
}

func (l *leasedIDs) Next() (feed.PostID, error) {
	w := l.cur.Load()
	if w.lease.Lost() {
		return 0, feed.Unavailable("etcd", fmt.Errorf("worker id lease lost; waiting for a new one"))
	}
	// Mint first, then check: an ID whose minting ended before the bound
	// was minted while no other process could hold the worker ID. (A check
	// before minting would let a pause between the two mint after it.)
	id := w.gen.Next()
	clock := w.lease.Clock
	if ok, _ := clock.Valid(); ok {
		return id, nil
	}
	// Past the bound, by a pause or a slow etcd: renew now, and use the ID
	// only if etcd still had the lease. A lease that expired cannot be
	// renewed, so one that renews was alive when the ID was minted.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := clock.Renew(ctx)
	if ok, until := clock.Valid(); err != nil || !ok {
		return 0, feed.Unavailable("etcd", fmt.Errorf("worker id lease certain only until %s, and renewing it failed (%v): it may have expired", until.Format(time.RFC3339Nano), err))
	}
	return id, nil
}
