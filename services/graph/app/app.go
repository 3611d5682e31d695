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
		c := &Config{Store: &backend.StoreConfig{}}
		BindFlags(fs, c)
		backend.BindStore(fs, c.Store, "cassandra")
		check := func() error { return errors.Join(c.Check(), c.Store.Check("graph")) }
		return check, node.Attach(func(ctx context.Context, n *node.Node) (*App, error) { return New(ctx, *c, n) })
	})
}

// App is a running graph service.
type App struct{ backends *backend.Opened }

// Close releases the store New opened.
func (a *App) Close() {
	a.backends.Close()
}

// New adds the graph service's gRPC API to n.
func New(ctx context.Context, cfg Config, n *node.Node) (*App, error) {
	b, opened, err := backend.Use(ctx, cfg.Backends, cfg.Store, nil, n.Namespace(), n.Log)
	if err != nil {
		return nil, err
	}
	a := &App{backends: opened}
	svc := graph.New(b.Graph, n.Bus, n.Tokens, cfg.MaxFollowing)
	feedv1.RegisterGraphServiceServer(n.GRPC, rpc.New(svc))
	n.Announce("graph", feedv1.GraphService_ServiceDesc.ServiceName)
	return a, nil
}
