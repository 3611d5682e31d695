// Package app is the graph service as a unit: New opens the durable store
// (unless the all-in-one hands it its adapters) and adds the service's gRPC
// API to a node; Close releases what New opened.
package app

import (
	"context"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/graph/internal/graph"
	"github.com/herald-feed/herald/services/graph/internal/rpc"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/flagenv"
	"github.com/herald-feed/herald/services/platform/node"
)

// DefaultAddr is the split binary's gRPC address.
const DefaultAddr = "localhost:7072"

// Config configures the graph service.
type Config struct {
	// Backends, if set, are the adapters to run on: the all-in-one's.
	// Otherwise New opens Store.
	Backends *backend.Set
	Store    *backend.StoreConfig
}

// Program is the split graph binary: the service on Cassandra.
func Program() node.Program {
	return node.ServiceProgram("graph", DefaultAddr, func(fs *flagenv.Set) (func() error, func(context.Context, *node.Node) (func(), error)) {
		c := &Config{Store: &backend.StoreConfig{}}
		backend.BindStore(fs, c.Store, "cassandra")
		return func() error { return c.Store.Check("graph") }, node.Attach(func(ctx context.Context, n *node.Node) (*App, error) { return New(ctx, *c, n) })
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
	svc := graph.New(b.Graph, n.Bus, n.Tokens)
	feedv1.RegisterGraphServiceServer(n.GRPC, rpc.New(svc))
	n.Announce("graph", feedv1.GraphService_ServiceDesc.ServiceName)
	return a, nil
}
