// Command graph runs Herald's graph service: feed.v1.GraphService.
package main

import (
	"context"
	"os"

	"github.com/herald-feed/herald/services/graph/app"
	"github.com/herald-feed/herald/services/platform/node"
)

func main() {
	node.Main(node.Config{Name: "graph", ListenAddr: "localhost:7072"}, os.Args[1:], os.Getenv, nil,
		func(_ context.Context, n *node.Node) error { app.Register(n); return nil })
}
