// Command herald runs the whole of Herald in one process: the post, graph,
// fan-out and timeline services on one gRPC address, over embedded etcd,
// embedded NATS JetStream, a Pebble store and an in-memory timeline cache.
// Data lives under -data (default ./.herald) and survives a restart.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/platform/node"
)

func main() {
	var cfg allinone.Config
	node.Main(node.Config{Name: "herald", ListenAddr: "localhost:7070", Embedded: true, DataDir: ".herald", MetricsAddr: "localhost:9470"},
		os.Args[1:], os.Getenv,
		func(fs *flag.FlagSet) {
			fs.IntVar(&cfg.Fanout.ChunkSize, "chunk-size", 1000, "followers per batched timeline write")
		},
		func(ctx context.Context, n *node.Node) error {
			if err := allinone.Register(ctx, n, cfg); err != nil {
				return err
			}
			metrics := "off"
			if n.MetricsAddr() != "" {
				metrics = "http://" + n.MetricsAddr() + "/metrics"
			}
			fmt.Fprintf(os.Stderr, `
Herald is up: gRPC on %[1]s, metrics %[2]s.
Try, in another terminal:
  bin/feedctl follow bob alice
  bin/feedctl post alice "hello, world"
  bin/feedctl timeline bob
  bin/feedctl watch bob
Press Ctrl-C to stop.

`, n.Addr(), metrics)
			return nil
		})
}
