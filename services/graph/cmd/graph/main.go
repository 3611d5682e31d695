// Command graph runs Herald's graph service: feed.v1.GraphService, on
// Cassandra, etcd and NATS.
package main

import (
	"os"

	"github.com/herald-feed/herald/services/graph/app"
	"github.com/herald-feed/herald/services/platform/node"
)

func main() { os.Exit(node.Main(app.Program(), os.Args[1:], os.Getenv, os.Stderr)) }
