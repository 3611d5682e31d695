// Command fanout runs Herald's fan-out service: it consumes post and graph
// events and writes home timelines.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/herald-feed/herald/services/fanout/app"
	"github.com/herald-feed/herald/services/platform/node"
)

func main() {
	// Chunk size and workers are node flags (-fanout-chunk-size,
	// -fanout-workers), shared with the all-in-one.
	node.Main(node.Config{Name: "fanout", ListenAddr: "localhost:7073"}, os.Args[1:], os.Getenv,
		func(*flag.FlagSet) {},
		func(_ context.Context, n *node.Node) error { return app.Register(n, app.Config{}) })
}
