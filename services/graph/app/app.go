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
	return node.Program{
		Name:     "graph",
		Defaults: node.Config{ListenAddr: DefaultAddr},
		Bind: func(fs *flagenv.Set) node.Start {
			c := &Config{Store: &backend.StoreConfig{}}
			backend.BindStore(fs, c.Store, "cassandra")
			return func(*node.Config) (node.Hooks, error) {
				if err := c.Store.Check("graph"); err != nil {
					return node.Hooks{}, err
				}
				return node.Hooks{Attach: func(ctx context.Context, n *node.Node) (func(), error) {
					a, err := New(ctx, *c, n)
					if err != nil {
						return nil, err
					}
					return a.Close, nil
				}}, nil
			}
		},
	}
}

// App is a running graph service.
type App struct{ close func() }

// Close releases the store New opened.
func (a *App) Close() {
	if a.close != nil {
		a.close()
		a.close = nil
	}
}

// New adds the graph service's gRPC API to n.
func New(ctx context.Context, cfg Config, n *node.Node) (*App, error) {
	a := &App{}
	b := cfg.Backends
	if b == nil {
		s, err := backend.OpenStore(ctx, cfg.Store, n.Log)
		if err != nil {
			return nil, err
		}
		a.close = func() { s.Close() }
		b = &backend.Set{Graph: s}
	}
	svc := graph.New(b.Graph, n.Bus, n.Tokens)
	feedv1.RegisterGraphServiceServer(n.GRPC, rpc.New(svc))
	n.Announce("graph", feedv1.GraphService_ServiceDesc.ServiceName)
	return a, nil
}
