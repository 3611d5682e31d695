// Command fanout runs Herald's fan-out service: it consumes post and graph
// events and writes home timelines, on Cassandra, Redis, etcd and NATS.
package main

import (
	"os"

	"github.com/herald-feed/herald/services/fanout/app"
	"github.com/herald-feed/herald/services/platform/node"
)

func main() { os.Exit(node.Main(app.Program(), os.Args[1:], os.Getenv, os.Stderr)) }
