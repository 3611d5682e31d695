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
func banner(n *node.Node, cfg *allinone.Config) {
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
`, n.Addr(), metrics)
	if addr := n.HTTPAddr(); addr != "" {
		fmt.Fprintf(os.Stderr, `The HTTP/JSON API and the web console are on http://%[1]s/ (open it in a browser).
Over HTTP, with a token signed by the development key in %[2]s:
  TOKEN=$(bin/feedctl --data %[2]s token bob)
  curl -H "Authorization: Bearer $TOKEN" http://%[1]s/v1/users/bob/home
`, addr, cfg.DataDir)
	}
	if cfg.Demo {
		fmt.Fprintf(os.Stderr, "The demo is being seeded: %d users; sign in to the console as %s, and as %s to post past the threshold.\n",
			allinone.DemoUsers+1, allinone.DemoUser(0), allinone.DemoCelebrity)
	}
	fmt.Fprintln(os.Stderr, "Press Ctrl-C to stop.")
	fmt.Fprintln(os.Stderr)
}
