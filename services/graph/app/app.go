// Package app is the graph service as a unit: New opens the durable store
// (unless the all-in-one hands it its adapters) and adds the service's gRPC
// API to a node; Close releases what New opened.
package app

import (
	"context"
	"errors"
	"fmt"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/graph/internal/graph"
	"github.com/herald-feed/herald/services/graph/internal/rpc"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/node"
)

// DefaultAddr is the split binary's gRPC address.
const DefaultAddr = "localhost:7072"

// Config configures the graph service.
type Config struct {
	// MaxFollowing is how many accounts one user may follow
	// (-max-following): a Follow past it fails with FAILED_PRECONDITION.
	// Zero means feed.DefaultMaxFollowing. Lowering it keeps the edges of
	// users already past it; they cannot follow more until they are
	// under it.
	MaxFollowing int64

	// Backends, if set, are the adapters to run on: the all-in-one's.
	// Otherwise New opens Store.
	Backends *backend.Set
	Store    *backend.StoreConfig
	// RateLimits is the Redis of the rate-limit buckets of Follow and
	// Unfollow, shared by every graph instance; with no address each
	// instance keeps its own.
	RateLimits *backend.CacheConfig
}

// BindFlags defines the graph service's own flags, into c.
func BindFlags(fs *flagenv.Set, c *Config) {
	fs.Int64(&c.MaxFollowing, "max-following", "HERALD_MAX_FOLLOWING", feed.DefaultMaxFollowing,
		"how many accounts one user may follow; a follow past it fails with FAILED_PRECONDITION")
}

// Check fills in the defaults of settings left zero, and reports one out
// of range.
func (c *Config) Check() error {
	if c.MaxFollowing == 0 {
		c.MaxFollowing = feed.DefaultMaxFollowing
	}
	if c.MaxFollowing < 0 {
		return fmt.Errorf("-max-following %d: want at least 1", c.MaxFollowing)
	}
	return nil
}

// Program is the split graph binary: the service on Cassandra.
func Program() node.Program {
	return node.ServiceProgram("graph", DefaultAddr, func(fs *flagenv.Set) (func() error, func(context.Context, *node.Node) (func(), error)) {
		c := &Config{Store: &backend.StoreConfig{}, RateLimits: &backend.CacheConfig{}}
		BindFlags(fs, c)
		backend.BindStore(fs, c.Store, "cassandra")
		backend.BindRateLimits(fs, c.RateLimits)
		check := func() error { return errors.Join(c.Check(), c.Store.Check("graph")) }
		return check, node.Attach(func(ctx context.Context, n *node.Node) (*App, error) { return New(ctx, *c, n) })
	})
}

// App is a running graph service.
type App struct {
	backends *backend.Opened
	limits   *backend.Caches
}

// Close releases the store and the Redis client New opened.
func (a *App) Close() {
	if a.limits != nil {
		a.limits.Close()
	}
	a.backends.Close()
}

// New adds the graph service's gRPC API to n.
func New(ctx context.Context, cfg Config, n *node.Node) (*App, error) {
	b, opened, err := backend.Use(ctx, cfg.Backends, cfg.Store, nil, n.Namespace(), n.Log)
	if err != nil {
		return nil, err
	}
	n.Health.Add(b.Probes...)
	var limits *backend.Caches
	switch {
	case b.RateLimits != nil:
		n.Guard.UseLimiter(b.RateLimits)
	case cfg.RateLimits != nil && len(cfg.RateLimits.Addrs) > 0:
		if limits, err = backend.OpenCache(ctx, cfg.RateLimits, n.Namespace(), n.Log); err != nil {
			opened.Close()
			return nil, err
		}
		n.Guard.UseLimiter(limits.RateLimits)
		n.Health.Add(limits.Probe())
	case cfg.Backends == nil:
		n.Log.Warn("no -redis: the rate limits of Follow and Unfollow are this instance's own, not shared with the other graph instances")
	}
	a := &App{backends: opened, limits: limits}
	svc := graph.New(b.Graph, n.Bus, n.Tokens, cfg.MaxFollowing)
	feedv1.RegisterGraphServiceServer(n.GRPC, rpc.New(svc))
	n.Announce("graph", feedv1.GraphService_ServiceDesc.ServiceName)
	return a, nil
}
