// Command herald runs the whole of Herald in one process: the post, graph,
// fan-out and timeline services on one gRPC address, over embedded etcd,
// embedded NATS JetStream, a Pebble store and an in-memory timeline cache.
// Data lives under -data (default ./.herald) and survives a restart.
package main

import (
	"fmt"
	"os"

	"github.com/herald-feed/herald/services/herald/allinone"
	"github.com/herald-feed/herald/services/platform/node"
)

func main() {
	os.Exit(node.Main(allinone.Program(banner), os.Args[1:], os.Getenv, os.Stderr))
}

// banner tells a newcomer what to try once the all-in-one serves.
func banner(n *node.Node, _ *allinone.Config) {
	metrics := "off"
	if addr := n.MetricsAddr(); addr != "" {
		metrics = "http://" + addr + "/metrics"
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
}
