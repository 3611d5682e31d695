// Package app wires the graph service into a Herald node.
package app

import (
	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/graph/internal/graph"
	"github.com/herald-feed/herald/services/graph/internal/rpc"
	"github.com/herald-feed/herald/services/platform/node"
)

// Register adds the graph service's gRPC API to n.
func Register(n *node.Node) {
	svc := graph.New(n.Graph, n.Bus, n.Tokens)
	feedv1.RegisterGraphServiceServer(n.GRPC, rpc.New(svc))
	n.Serve("graph", feedv1.GraphService_ServiceDesc.ServiceName)
}
