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
	var cfg app.Config
	node.Main(node.Config{Name: "fanout", ListenAddr: "localhost:7073"}, os.Args[1:], os.Getenv,
		func(fs *flag.FlagSet) {
			fs.IntVar(&cfg.ChunkSize, "chunk-size", 1000, "followers per batched timeline write")
		},
		func(_ context.Context, n *node.Node) error { return app.Register(n, cfg) })
}
